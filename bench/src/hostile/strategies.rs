//! Attacks of a hostile strategy (the `hostile` test component, its mode
//! chosen per request with `composite_settings`): floods of the host's
//! memory and checks of what it returns. Each ends in a 500 with the
//! strategy error code, naming the profile and the limit or field.

use std::time::Instant;

use serde_json::{Value, json};

use super::ctx::{Check, Ctx, chat};

/// Runs `model` with `settings` and expects a 500 `code` whose message
/// names `profile` and contains `needle`.
async fn refused(ctx: &Ctx, model: &str, settings: Value, code: &str, needle: &str) -> Check {
    let mut body = chat(model, "go");
    body["composite_settings"] = settings;
    let started = Instant::now();
    let a = ctx.chat(&ctx.client(), &body).await?;
    let took = started.elapsed();
    a.expect_status(500)?;
    let message = a.error_field("message");
    let profile = model.replace('-', "_");
    if a.error_field("code") != code
        || !message.contains(&format!("\"{profile}\""))
        || !message.contains(needle)
    {
        return Err(format!("expected {code} naming {needle}: {}", a.text));
    }
    Ok(format!(
        "500 {code} naming {needle} in {} ms",
        took.as_millis()
    ))
}

/// 100 000 trace events of 1 MiB: stopped at `max_trace_bytes`.
pub async fn trace_flood(ctx: &Ctx) -> Check {
    let settings = json!({"mode": "trace-flood"});
    refused(
        ctx,
        "hostile",
        settings,
        "strategy_limit_exceeded",
        "max_trace_bytes",
    )
    .await
}

/// A 9 MiB model call: refused at `max_call_bytes` before any upstream.
pub async fn oversized_call(ctx: &Ctx) -> Check {
    let settings = json!({"mode": "huge-request", "model": "plain"});
    refused(
        ctx,
        "hostile",
        settings,
        "strategy_limit_exceeded",
        "max_call_bytes",
    )
    .await
}

/// A guest that keeps sending refused calls: stopped at `max_run_bytes`.
pub async fn run_byte_limit(ctx: &Ctx) -> Check {
    let settings = json!({"mode": "request-flood", "model": "plain", "size": 100_000});
    refused(
        ctx,
        "hostile-tight",
        settings,
        "strategy_limit_exceeded",
        "max_run_bytes",
    )
    .await
}

/// Tool calls that are not an OpenAI array, a `tool_calls` finish without
/// calls, and an answer over `max_answer_bytes`: each a 500
/// `strategy_invalid_response` naming the field.
pub async fn invalid_answers(ctx: &Ctx) -> Check {
    let code = "strategy_invalid_response";
    let mut seen = Vec::new();
    for (model, settings, needle) in [
        (
            "hostile",
            json!({"mode": "bad-tool-calls"}),
            "tool-calls-json",
        ),
        (
            "hostile",
            json!({"mode": "tool-calls-without-calls"}),
            "finish-reason",
        ),
        (
            "hostile-tight",
            json!({"mode": "huge-answer", "size": 200_000}),
            "max_answer_bytes",
        ),
    ] {
        refused(ctx, model, settings, code, needle).await?;
        seen.push(needle);
    }
    Ok(format!("500 {code} naming {}", seen.join(", ")))
}
