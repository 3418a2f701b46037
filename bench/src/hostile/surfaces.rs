//! Attacks on the gateway's other surfaces: an exec program trying to read
//! the gateway's secrets from its environment, and the admin API and model
//! routes called without the master key or with a registration that names
//! the gateway's environment.

use serde_json::json;

use super::ctx::{Check, Ctx, chat};

/// Variables an exec program may see: the allowlist and what the shell adds.
const ALLOWED: [&str; 10] = [
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "USER", "PWD", "SHLVL", "_",
];

/// The `tool` deployment prints its environment: no secret of the
/// gateway's, nothing outside the allowlist.
pub async fn exec_env_leak(ctx: &Ctx) -> Check {
    let a = ctx.chat(&ctx.client(), &chat("tool", "print env")).await?;
    a.expect_status(200)?;
    let text = a.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for secret in ctx.secrets.all().into_iter().chain(["RUST_LOG"]) {
        if text.contains(secret) {
            return Err(format!(
                "the program saw {}",
                &secret[..secret.len().min(18)]
            ));
        }
    }
    if !text.contains("PATH=") {
        return Err(format!("no PATH in {}", super::load::cut(&text)));
    }
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
        .collect();
    if let Some(extra) = names.iter().find(|n| !ALLOWED.contains(n)) {
        return Err(format!("unexpected variable {extra}"));
    }
    Ok(format!(
        "200; the program saw {} allowlisted variables and no secret",
        names.len()
    ))
}

/// Admin and model routes without the key (from loopback), with a wrong
/// key, and a registration reading the gateway's environment.
pub async fn admin_without_key(ctx: &Ctx) -> Check {
    let client = ctx.client();
    let mut statuses = Vec::new();
    for (method, path) in [
        (reqwest::Method::GET, "/admin/models"),
        (reqwest::Method::GET, "/admin/status"),
        (reqwest::Method::POST, "/admin/reload"),
        (reqwest::Method::POST, "/admin/models"),
    ] {
        for key in [None, Some("sk-wrong")] {
            let mut r = client.request(method.clone(), format!("{}{path}", ctx.base));
            if let Some(key) = key {
                r = r.bearer_auth(key);
            }
            if method == reqwest::Method::POST {
                r = r.json(&json!({"model_name": "x", "api_base": "http://127.0.0.1:9/v1"}));
            }
            let status = r.send().await.map_err(|e| e.to_string())?.status().as_u16();
            if status != 401 {
                return Err(format!("{method} {path} with key {key:?}: {status}"));
            }
            statuses.push(status);
        }
    }
    let a = ctx
        .post_raw(
            &client,
            "/v1/chat/completions",
            None,
            chat("plain", "hi").to_string().into_bytes(),
        )
        .await?;
    a.expect_status(401)?;
    let body = json!({
        "model_name": "leak",
        "api_base": format!("{}/v1", ctx.hostile.base("hidden")),
        "api_key": "os.environ/OPENAI_API_KEY",
    });
    let a = ctx
        .post_raw(
            &client,
            "/admin/models",
            Some(&ctx.secrets.master_key),
            body.to_string().into_bytes(),
        )
        .await?;
    a.expect_error(400, None, "admin_env_allowlist")?;
    if ctx.secrets.all().iter().any(|s| a.text.contains(s)) {
        return Err("the refusal carried a secret".into());
    }
    Ok(format!(
        "{} admin calls without or with a wrong key 401; chat without key 401; os.environ registration 400",
        statuses.len()
    ))
}
