//! `conclave compare`: one prompt to several models of a running proxy at
//! once, summarized in a table.

use std::io::Write;

use serde_json::{Value, json};

/// One row of `conclave compare`.
struct CompareRow {
    model: String,
    status: String,
    seconds: f64,
    tokens: Option<u64>,
    last_line: String,
}

/// Sends `prompt` to every model at once and prints model, status, seconds,
/// tokens and the answer's last line, so a composite shows beside its members.
pub async fn compare(
    base_url: &str,
    models: &[String],
    api_key: Option<&str>,
    prompt: &str,
) -> Result<(), String> {
    let client = conclave::server::http_client(&Default::default())?;
    let url = format!("{}/v1/chat/completions", base_url.trim_end_matches('/'));
    let calls = models
        .iter()
        .map(|model| ask(&client, &url, model, api_key, prompt));
    let rows = futures_util::future::join_all(calls).await;
    print_table(&rows);
    if rows.iter().all(|r| r.status == "200") {
        Ok(())
    } else {
        Err("some models failed".into())
    }
}

/// Asks one model; a failure becomes the row's status and last line.
async fn ask(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    api_key: Option<&str>,
    prompt: &str,
) -> CompareRow {
    let started = std::time::Instant::now();
    let mut request = client.post(url).json(&json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
    }));
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let (status, body) = match request.send().await {
        Ok(r) => {
            let status = r.status();
            (
                status.as_u16().to_string(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
        Err(e) => (format!("error: {e}"), Value::Null),
    };
    let seconds = started.elapsed().as_secs_f64();
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            body["error"]["message"]
                .as_str()
                .map(|m| format!("error: {m}"))
        })
        .unwrap_or_default();
    CompareRow {
        model: model.to_owned(),
        status,
        seconds,
        tokens: body["usage"]["total_tokens"].as_u64(),
        last_line: text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned(),
    }
}

/// Prints the rows under a header, the model column as wide as its longest name.
fn print_table(rows: &[CompareRow]) {
    let width = rows
        .iter()
        .map(|r| r.model.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<width$}  {:>6}  {:>8}  {:>7}  last line of the answer",
        "model", "status", "seconds", "tokens"
    );
    for r in rows {
        let tokens = r.tokens.map_or("-".to_owned(), |t| t.to_string());
        let line = conclave::strategy::trace::preview_chars(&r.last_line, 80);
        let _ = writeln!(
            out,
            "{:<width$}  {:>6}  {:>8.2}  {:>7}  {line}",
            r.model, r.status, r.seconds, tokens
        );
    }
}
