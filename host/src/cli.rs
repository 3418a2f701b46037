//! The offline and client commands: `check`, `models` and `chat`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::router::SystemClock;

async fn build(path: &Path) -> Result<(crate::config::LoadedConfig, Gateway, Vec<String>), String> {
    let loaded = crate::config::load(path).map_err(|e| e.to_string())?;
    let client = crate::server::http_client()?;
    let (gateway, warnings) = Gateway::build(&loaded, client, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    Ok((loaded, gateway, warnings))
}

/// Validates a config; prints what it serves and every warning.
pub async fn check(path: &Path) -> Result<(), String> {
    let (loaded, gateway, warnings) = build(path).await?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "config: {}  (ok)", path.display());
    let _ = writeln!(out, "\nmodel groups:");
    for group in gateway.router.groups() {
        let _ = writeln!(out, "  {}", group.name);
        for d in &group.deployments {
            let _ = writeln!(
                out,
                "    - {}  provider={} model={}",
                d.id,
                d.target.provider(),
                d.target.upstream_model()
            );
        }
    }
    for (alias, target) in gateway.router.aliases() {
        let _ = writeln!(out, "  {alias} -> {target} (alias)");
    }
    let mut profiles: Vec<_> = gateway.strategies.profiles().values().collect();
    profiles.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
    if !profiles.is_empty() {
        let _ = writeln!(out, "\nprofiles:");
        for p in profiles {
            let status = match &p.strategy {
                Some(s) => format!("{} ({}, {})", p.plan.strategy, s.source, s.hash),
                None => format!(
                    "{} (not in this build: requests are refused)",
                    p.plan.strategy
                ),
            };
            let _ = writeln!(out, "  {}: {status}", p.plan.name);
        }
    }
    let mut public: Vec<_> = gateway.strategies.public_names().collect();
    public.sort();
    if !public.is_empty() {
        let _ = writeln!(
            out,
            "\ncomposite models: {}",
            public
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(composite) = &loaded.config.general_settings.composite_llm
        && !composite.providers.is_empty()
    {
        let _ = writeln!(out, "\nprovider bundles:");
        for name in composite.providers.keys() {
            let _ = writeln!(out, "  {name}");
        }
    }
    let mut providers: Vec<&str> = gateway
        .router
        .groups()
        .iter()
        .flat_map(|g| g.deployments.iter().map(|d| d.target.provider()))
        .collect();
    providers.sort();
    providers.dedup();
    let _ = writeln!(out, "\nproviders: {}", providers.join(", "));
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    Ok(())
}

/// Prints the public model names, one per line.
pub async fn models(path: &Path) -> Result<(), String> {
    let (_, gateway, _) = build(path).await?;
    let mut out = std::io::stdout().lock();
    for name in &gateway.model_names {
        let _ = writeln!(out, "{name}");
    }
    Ok(())
}

/// Arguments of `conclave chat`.
pub struct ChatArgs {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub show_reasoning: bool,
    pub stream: bool,
    pub prompt: String,
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Sends one chat request and prints the answer as it arrives; reasoning
/// (a composite's stage trace) is printed dimmed before the answer.
pub async fn chat(args: ChatArgs) -> Result<(), String> {
    let client = crate::server::http_client()?;
    let url = format!(
        "{}/v1/chat/completions",
        args.base_url.trim_end_matches('/')
    );
    let mut request = client.post(&url).json(&json!({
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "stream": args.stream,
    }));
    if let Some(key) = &args.api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(format!("{status}: {message}"));
    }
    let mut out = std::io::stdout().lock();
    if !args.stream {
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        let message = &body["choices"][0]["message"];
        if args.show_reasoning
            && let Some(r) = message["reasoning_content"].as_str()
        {
            let _ = writeln!(out, "{DIM}{r}{RESET}");
        }
        let _ = writeln!(out, "{}", message["content"].as_str().unwrap_or_default());
        return Ok(());
    }
    let mut bytes = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut in_reasoning = false;
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| format!("stream broke: {e}"))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..pos + 2).collect();
            let text = String::from_utf8_lossy(&event);
            for line in text.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    if in_reasoning {
                        let _ = write!(out, "{RESET}");
                    }
                    let _ = writeln!(out);
                    return Ok(());
                }
                let v: Value = serde_json::from_str(data).map_err(|e| format!("bad chunk: {e}"))?;
                if let Some(err) = v.get("error") {
                    let _ = writeln!(out, "{RESET}");
                    return Err(format!(
                        "stream error: {}",
                        err["message"].as_str().unwrap_or("unknown")
                    ));
                }
                let delta = &v["choices"][0]["delta"];
                if let Some(r) = delta["reasoning_content"].as_str()
                    && args.show_reasoning
                {
                    if !in_reasoning {
                        let _ = write!(out, "{DIM}");
                        in_reasoning = true;
                    }
                    let _ = write!(out, "{r}");
                }
                if let Some(c) = delta["content"].as_str() {
                    if in_reasoning && !c.is_empty() {
                        let _ = write!(out, "{RESET}\n\n");
                        in_reasoning = false;
                    }
                    let _ = write!(out, "{c}");
                }
                let _ = out.flush();
            }
        }
    }
    Err("the stream ended without [DONE]".into())
}

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
    let client = crate::server::http_client()?;
    let url = format!("{}/v1/chat/completions", base_url.trim_end_matches('/'));
    let calls = models.iter().map(|model| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let started = std::time::Instant::now();
            let mut request = client.post(&url).json(&json!({
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
                model: model.clone(),
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
    });
    let rows = futures_util::future::join_all(calls).await;
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
    for r in &rows {
        let tokens = r.tokens.map_or("-".to_owned(), |t| t.to_string());
        let line = crate::strategy::trace::preview_chars(&r.last_line, 80);
        let _ = writeln!(
            out,
            "{:<width$}  {:>6}  {:>8.2}  {:>7}  {line}",
            r.model, r.status, r.seconds, tokens
        );
    }
    if rows.iter().all(|r| r.status == "200") {
        Ok(())
    } else {
        Err("some models failed".into())
    }
}
