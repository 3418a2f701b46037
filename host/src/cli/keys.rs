//! `conclave keys` and `conclave spend`: the management API of a running
//! gateway from the command line, for people who would rather not write
//! curl. Every command is one HTTP call with the master key (or an admin
//! user's key); answers are printed as the API returns them, lists as a
//! table.

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

/// Where the gateway is and the key that manages it.
#[derive(Args, Clone)]
pub struct Connection {
    /// The gateway's address.
    #[arg(
        long,
        global = true,
        default_value = "http://localhost:4000",
        env = "CONCLAVE_BASE_URL"
    )]
    pub base_url: String,
    /// The master key (or the key of a proxy_admin user); LiteLLM's
    /// `LITELLM_MASTER_KEY` when neither this nor `CONCLAVE_MASTER_KEY` is set.
    #[arg(
        long,
        global = true,
        env = "CONCLAVE_MASTER_KEY",
        hide_env_values = true
    )]
    pub master_key: Option<String>,
}

/// The limits and ownership a key can be given.
#[derive(Args, Clone, Default)]
pub struct KeyFields {
    /// A unique name for the key.
    #[arg(long)]
    pub alias: Option<String>,
    /// The user the key belongs to (created when missing).
    #[arg(long)]
    pub user: Option<String>,
    /// The team the key belongs to (must exist).
    #[arg(long)]
    pub team: Option<String>,
    /// Models (or access groups) the key may call, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// The only routes the key may call (paths, `/prefix*`, or LiteLLM's
    /// route groups), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub allowed_routes: Option<Vec<String>>,
    /// Spend allowed per budget period, in USD.
    #[arg(long)]
    pub max_budget: Option<f64>,
    /// The budget period: 30s, 1h, 1d, 30d.
    #[arg(long)]
    pub budget_duration: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// How long until the key expires: 1h, 30d.
    #[arg(long)]
    pub duration: Option<String>,
}

impl KeyFields {
    /// The fields that were given, with LiteLLM's names.
    fn body(&self) -> Map<String, Value> {
        let mut b = Map::new();
        let mut put = |name: &str, v: Option<Value>| {
            if let Some(v) = v {
                b.insert(name.into(), v);
            }
        };
        put("key_alias", self.alias.clone().map(Value::from));
        put("user_id", self.user.clone().map(Value::from));
        put("team_id", self.team.clone().map(Value::from));
        put("models", self.models.clone().map(|m| json!(m)));
        put(
            "allowed_routes",
            self.allowed_routes.clone().map(|r| json!(r)),
        );
        put("max_budget", self.max_budget.map(|v| json!(v)));
        put(
            "budget_duration",
            self.budget_duration.clone().map(Value::from),
        );
        put("rpm_limit", self.rpm.map(Value::from));
        put("tpm_limit", self.tpm.map(Value::from));
        put("max_parallel_requests", self.max_parallel.map(Value::from));
        put("duration", self.duration.clone().map(Value::from));
        b
    }
}

/// `conclave keys ...`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; the full key is printed this once.
    New {
        #[command(flatten)]
        fields: KeyFields,
    },
    /// List keys (hash, alias, name, owner, spend).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 50)]
        size: u32,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one key (its value or its hash).
    Info { key: String },
    /// Change the given fields of a key.
    Update {
        key: String,
        #[command(flatten)]
        fields: KeyFields,
    },
    /// Block a key (refused until unblocked), or unblock it.
    Block {
        key: String,
        #[arg(long)]
        unblock: bool,
    },
    /// Delete keys by value or hash (or by alias with --alias).
    Delete {
        #[arg(required = true)]
        keys: Vec<String>,
        /// The arguments are key aliases.
        #[arg(long)]
        alias: bool,
    },
}

/// `conclave spend`: spend-log rows, or the daily report.
#[derive(Args)]
pub struct SpendArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only this key's rows (its value or hash).
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
    /// A request and its composite sub-calls.
    #[arg(long)]
    pub request_id: Option<String>,
    /// From this day (YYYY-MM-DD).
    #[arg(long)]
    pub start: Option<String>,
    /// Up to and including this day (YYYY-MM-DD).
    #[arg(long)]
    pub end: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Spend per day and model group instead of rows.
    #[arg(long)]
    pub report: bool,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One management call; a non-2xx answer is an error quoting its message.
/// `LITELLM_MASTER_KEY`, which gateways set up the LiteLLM way already have.
fn litellm_master_key() -> Option<String> {
    std::env::var("LITELLM_MASTER_KEY")
        .ok()
        .filter(|k| !k.is_empty())
}

async fn call(
    conn: &Connection,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<Value>,
) -> Result<Value, String> {
    let client = conclave::server::http_client(&Default::default())?;
    let url = format!("{}{path}", conn.base_url.trim_end_matches('/'));
    let mut request = client.request(method, &url).query(query);
    if let Some(key) = conn.master_key.clone().or_else(litellm_master_key) {
        request = request.bearer_auth(key);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        return Err(format!("{status}: {message}"));
    }
    Ok(value)
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs `conclave keys <command>`.
pub async fn run(conn: Connection, command: KeysCommand) -> Result<(), String> {
    use reqwest::Method;
    match command {
        KeysCommand::New { fields } => {
            let made = call(
                &conn,
                Method::POST,
                "/key/generate",
                &[],
                Some(Value::Object(fields.body())),
            )
            .await?;
            print_json(&made);
            eprintln!("The key is shown this once: store it now.");
            Ok(())
        }
        KeysCommand::List {
            user,
            team,
            page,
            size,
            json,
        } => {
            let mut query = vec![
                ("page", page.to_string()),
                ("size", size.to_string()),
                ("return_full_object", "true".to_string()),
            ];
            query.extend(user.map(|u| ("user_id", u)));
            query.extend(team.map(|t| ("team_id", t)));
            let listed = call(&conn, Method::GET, "/key/list", &query, None).await?;
            if json {
                print_json(&listed);
                return Ok(());
            }
            println!(
                "{:<16} {:<20} {:<12} {:<12} {:<12} {:>10} BLOCKED",
                "TOKEN", "ALIAS", "NAME", "USER", "TEAM", "SPEND"
            );
            for k in listed["keys"].as_array().into_iter().flatten() {
                let token = text(&k["token"]);
                println!(
                    "{:<16} {:<20} {:<12} {:<12} {:<12} {:>10.4} {}",
                    token.get(..12).unwrap_or(&token),
                    text(&k["key_alias"]),
                    text(&k["key_name"]),
                    text(&k["user_id"]),
                    text(&k["team_id"]),
                    k["spend"].as_f64().unwrap_or(0.0),
                    k["blocked"].as_bool().unwrap_or(false),
                );
            }
            println!(
                "page {} of {} ({} keys)",
                text(&listed["current_page"]),
                text(&listed["total_pages"]),
                text(&listed["total_count"])
            );
            Ok(())
        }
        KeysCommand::Info { key } => {
            print_json(&call(&conn, Method::GET, "/key/info", &[("key", key)], None).await?);
            Ok(())
        }
        KeysCommand::Update { key, fields } => {
            let mut body = fields.body();
            body.insert("key".into(), Value::String(key));
            print_json(
                &call(
                    &conn,
                    Method::POST,
                    "/key/update",
                    &[],
                    Some(Value::Object(body)),
                )
                .await?,
            );
            Ok(())
        }
        KeysCommand::Block { key, unblock } => {
            let path = if unblock {
                "/key/unblock"
            } else {
                "/key/block"
            };
            print_json(&call(&conn, Method::POST, path, &[], Some(json!({"key": key}))).await?);
            Ok(())
        }
        KeysCommand::Delete { keys, alias } => {
            let body = if alias {
                json!({"key_aliases": keys})
            } else {
                json!({"keys": keys})
            };
            print_json(&call(&conn, Method::POST, "/key/delete", &[], Some(body)).await?);
            Ok(())
        }
    }
}

/// Runs `conclave spend`.
pub async fn spend(args: SpendArgs) -> Result<(), String> {
    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(args.start.clone().map(|v| ("start_date", v)));
    query.extend(args.end.clone().map(|v| ("end_date", v)));
    if args.report {
        let report = call(
            &args.connection,
            reqwest::Method::GET,
            "/global/spend/report",
            &query,
            None,
        )
        .await?;
        if args.json {
            print_json(&report);
            return Ok(());
        }
        println!(
            "{:<12} {:<28} {:>10} {:>12} {:>12}",
            "DAY", "MODEL GROUP", "REQUESTS", "TOKENS", "SPEND"
        );
        for day in report.as_array().into_iter().flatten() {
            for m in day["models"].as_array().into_iter().flatten() {
                println!(
                    "{:<12} {:<28} {:>10} {:>12} {:>12.6}",
                    text(&day["group_by_day"]),
                    text(&m["model_group"]),
                    text(&m["api_requests"]),
                    text(&m["total_tokens"]),
                    m["spend"].as_f64().unwrap_or(0.0)
                );
            }
        }
        return Ok(());
    }
    query.push(("limit", args.limit.to_string()));
    query.extend(args.key.map(|v| ("api_key", v)));
    query.extend(args.user.map(|v| ("user_id", v)));
    query.extend(args.team.map(|v| ("team_id", v)));
    query.extend(args.request_id.map(|v| ("request_id", v)));
    let rows = call(
        &args.connection,
        reqwest::Method::GET,
        "/spend/logs",
        &query,
        None,
    )
    .await?;
    if args.json {
        print_json(&rows);
        return Ok(());
    }
    println!(
        "{:<25} {:<28} {:<20} {:>8} {:>12} STATUS",
        "START", "REQUEST", "MODEL", "TOKENS", "SPEND"
    );
    for r in rows.as_array().into_iter().flatten() {
        println!(
            "{:<25} {:<28} {:<20} {:>8} {:>12.6} {}",
            text(&r["startTime"]),
            text(&r["request_id"]),
            text(&r["model"]),
            text(&r["total_tokens"]),
            r["spend"].as_f64().unwrap_or(0.0),
            text(&r["status_code"])
        );
    }
    Ok(())
}
