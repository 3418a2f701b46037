//! Attacks of hostile or broken upstreams: stalled bodies, absurd retry
//! hints, oversized answers and events, and odd SSE framing.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::config::{RETRY_HINTS, UPSTREAM_TIMEOUT_S};
use super::ctx::{Check, Ctx, error_field, sse_payloads};

/// A 500 whose body never arrives, asked for `stream` or not: 504
/// `timeout_error` at the deployment's timeout, and the upstream
/// connection is closed.
async fn stall(ctx: &Ctx, model: &str, stream: bool) -> Check {
    let closed = ctx.hostile.closed_stalls();
    let started = Instant::now();
    let a = ctx.ask(model, stream).await?;
    let took = started.elapsed();
    a.expect_error(504, Some("timeout_error"), "")?;
    if took > Duration::from_secs(UPSTREAM_TIMEOUT_S + 2) {
        return Err(format!("took {took:?}"));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while ctx.hostile.closed_stalls() <= closed {
        if Instant::now() > deadline {
            return Err("the stalled upstream response was never closed".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(format!(
        "504 timeout_error after {} ms; upstream closed",
        took.as_millis()
    ))
}

pub async fn stalled_json(ctx: &Ctx) -> Check {
    stall(ctx, "stall", false).await
}

pub async fn stalled_stream(ctx: &Ctx) -> Check {
    stall(ctx, "stall-stream", true).await
}

/// 429s with `retry-after` of 1e300, inf, NaN, negative and huge values:
/// each is a 429 in milliseconds with a sane hint, and the deployment
/// cools for at most 300 s.
pub async fn absurd_retry_after(ctx: &Ctx) -> Check {
    let mut longest = Duration::ZERO;
    for (i, (kind, value)) in RETRY_HINTS.iter().enumerate() {
        let what = format!("{kind} {value}");
        let started = Instant::now();
        let a = ctx.ask(&format!("ra-{i}"), false).await?;
        let took = started.elapsed();
        longest = longest.max(took);
        a.expect_error(429, Some("rate_limit_error"), "")
            .map_err(|e| format!("{what}: {e}"))?;
        if took > Duration::from_secs(5) {
            return Err(format!("{what}: took {took:?}"));
        }
        if a.headers.contains_key("retry-after") && a.retry_after().is_none_or(|s| s > 300) {
            return Err(format!(
                "{what}: passed on retry-after {:?}",
                a.headers.get("retry-after")
            ));
        }
        let again = ctx.ask(&format!("ra-{i}"), false).await?;
        again
            .expect_status(503)
            .map_err(|e| format!("{what}: {e}"))?;
        let wait = again.retry_after().unwrap_or(0);
        if !(1..=300).contains(&wait) {
            return Err(format!("{what}: cooling says retry in {wait} s"));
        }
    }
    Ok(format!(
        "7 lying hints: each 429 (slowest {} ms), then 503 with Retry-After in 1..=300 s",
        longest.as_millis()
    ))
}

/// A 96 MiB JSON answer: 502 naming `max_response_size_mb` (64 MiB default).
pub async fn oversized_body(ctx: &Ctx) -> Check {
    let started = Instant::now();
    let a = ctx.ask("giant", false).await?;
    a.expect_error(502, Some("upstream_error"), "max_response_size_mb")?;
    Ok(format!(
        "502 naming max_response_size_mb in {} ms",
        started.elapsed().as_millis()
    ))
}

/// One SSE event that never ends: cut at the size limit with a 502.
pub async fn endless_event(ctx: &Ctx) -> Check {
    let started = Instant::now();
    let a = ctx.ask("endless", true).await?;
    a.expect_error(502, None, "larger than the limit")?;
    Ok(format!(
        "502 event larger than the limit in {} ms",
        started.elapsed().as_millis()
    ))
}

/// Events of several `data:` lines: valid SSE to the client, JSON on one line.
pub async fn multi_line_sse(ctx: &Ctx) -> Check {
    let a = ctx.ask("multiline", true).await?;
    a.expect_status(200)?;
    let payloads = sse_payloads(&a.text)?;
    let content = serde_json::from_str::<Value>(payloads.first().map_or("", String::as_str))
        .ok()
        .and_then(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        });
    let ok = payloads.len() == 3
        && !payloads[0].contains('\n')
        && content.as_deref() == Some("multi")
        && payloads[1] == "plain text,\non two lines"
        && payloads[2] == "[DONE]";
    if !ok {
        return Err(format!("payloads {payloads:?}"));
    }
    Ok("200, valid SSE: one-line JSON, the text event re-prefixed, [DONE]".into())
}

/// A rate-limit error event after the first chunk: one error event of
/// type `rate_limit_error`, nothing after it.
pub async fn error_event_mid_stream(ctx: &Ctx) -> Check {
    let a = ctx.ask("midstream", true).await?;
    a.expect_status(200)?;
    let payloads = sse_payloads(&a.text)?;
    let errors: Vec<Value> = payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter(|v| v.get("error").is_some())
        .collect();
    let [error] = errors.as_slice() else {
        return Err(format!("{} error events in {payloads:?}", errors.len()));
    };
    if payloads.len() != 2 || error_field(error, "type") != "rate_limit_error" {
        return Err(format!("payloads {payloads:?}"));
    }
    Ok("200, one chunk then exactly one rate_limit_error event".into())
}
