//! Attacks of hostile clients: bodies that are costly to parse, slow or
//! trickled requests, floods of connections and of parallel requests, and
//! model names chosen to reach where they should not.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::{
    CLIENT_TIMEOUT_S, HIDDEN_MODEL, MAX_CONNECTIONS, MAX_PARALLEL, MEMBER_MS, SLOW_MS,
};
use super::ctx::{Check, Ctx, chat};

/// A body of `n` distinct top-level keys around `model` and `messages`.
fn many_keys(n: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"model":"plain","messages":[{"role":"user","content":"hi"}]"#);
    for i in 0..n {
        body.push_str(&format!(",\"k{i:06}\":\"abcd\""));
    }
    body.push('}');
    body.into_bytes()
}

/// 60 000 keys (1 MiB) beside a normal request: 400 naming the 1024 limit
/// in milliseconds, and the normal request is served.
pub async fn sixty_thousand_keys(ctx: &Ctx) -> Check {
    let client = ctx.client();
    let started = Instant::now();
    let key = Some(ctx.secrets.master_key.as_str());
    let normal = chat("plain", "meanwhile");
    let (hostile, normal) = tokio::join!(
        ctx.post_raw(&client, "/v1/chat/completions", key, many_keys(60_000)),
        ctx.chat(&client, &normal)
    );
    let took = started.elapsed();
    hostile?.expect_error(400, Some("invalid_request_error"), "1024")?;
    normal?.expect_status(200)?;
    if took > Duration::from_secs(2) {
        return Err(format!("took {took:?}"));
    }
    Ok(format!(
        "400 naming 1024 in {} ms; the concurrent request 200",
        took.as_millis()
    ))
}

/// 200 000 levels of nesting, arrays and objects: 400 naming the depth
/// limit (128), no crash.
pub async fn deep_nesting(ctx: &Ctx) -> Check {
    let client = ctx.client();
    let depth = 200_000;
    let arrays = format!(
        r#"{{"model":"plain","messages":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let objects = format!(
        r#"{{"model":"plain","messages":[],"metadata":{}1{}}}"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    );
    let key = Some(ctx.secrets.master_key.as_str());
    for body in [arrays, objects] {
        let started = Instant::now();
        let a = ctx
            .post_raw(&client, "/v1/chat/completions", key, body.into_bytes())
            .await?;
        a.expect_error(400, Some("invalid_request_error"), "128")?;
        if started.elapsed() > Duration::from_secs(2) {
            return Err(format!("took {:?}", started.elapsed()));
        }
    }
    Ok("400 naming 128 for 200k nested arrays and objects".into())
}

/// Headers promising 1000 bytes, then 15 of them and silence: 408 after
/// `request_body_timeout`.
pub async fn trickled_body(ctx: &Ctx) -> Check {
    let mut tcp = TcpStream::connect(&ctx.addr)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\": \"plain\", ",
        ctx.addr, ctx.secrets.master_key
    );
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let limit = Duration::from_secs(CLIENT_TIMEOUT_S + 5);
    let n = tokio::time::timeout(limit, tcp.read(&mut answer))
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer[..n]);
    if !text.starts_with("HTTP/1.1 408") || !text.contains("request_body_timeout") {
        return Err(format!("answer: {}", super::load::cut(&text)));
    }
    Ok(format!(
        "408 naming request_body_timeout after {} ms",
        started.elapsed().as_millis()
    ))
}

/// Reads until the server closes the connection or `limit` passes; the
/// time it took, if closed.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// 50 connections that send half a request head (and 50 that send
/// nothing): each is closed after `header_read_timeout`.
pub async fn slow_headers(ctx: &Ctx) -> Check {
    let mut conns = Vec::new();
    for i in 0..100 {
        let mut tcp = TcpStream::connect(&ctx.addr)
            .await
            .map_err(|e| e.to_string())?;
        if i % 2 == 0 {
            tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: conclave\r\ncontent-")
                .await
                .map_err(|e| e.to_string())?;
        }
        conns.push(tcp);
    }
    let limit = Duration::from_secs(CLIENT_TIMEOUT_S + 4);
    let closed = join_all(conns.iter_mut().map(|c| closed_within(c, limit))).await;
    let open = closed.iter().filter(|c| c.is_none()).count();
    if open > 0 {
        return Err(format!(
            "{open} of 100 slow connections still open after {limit:?}"
        ));
    }
    let longest = closed.iter().flatten().max().copied().unwrap_or_default();
    Ok(format!(
        "100 slow connections all closed, the last after {} ms",
        longest.as_millis()
    ))
}

/// `MAX_CONNECTIONS + 200` idle connections at once, opened together:
/// the gateway reaches its limit (it logs so), stays up, and a new client
/// is served once the idle ones are cut by the header timeout or leave.
pub async fn connection_flood(ctx: &Ctx) -> Check {
    let count = MAX_CONNECTIONS + 200;
    let started = Instant::now();
    let opened = join_all(
        (0..count)
            .map(|_| tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&ctx.addr))),
    )
    .await;
    let held: Vec<TcpStream> = opened.into_iter().flatten().flatten().collect();
    let opening = started.elapsed();
    let asked = Instant::now();
    // A new client during the flood waits in the backlog, then is served.
    let during = ctx
        .chat(&ctx.client(), &chat("plain", "during the flood"))
        .await?;
    during.expect_status(200)?;
    let waited = asked.elapsed();
    let open = held.len();
    drop(held);
    let after = ctx
        .chat(&ctx.client(), &chat("plain", "after the flood"))
        .await?;
    after.expect_status(200)?;
    let log = std::fs::read_to_string(&ctx.log).unwrap_or_default();
    if !log.contains("max_connections reached") {
        return Err(format!(
            "{open} connections opened; the limit was never reached"
        ));
    }
    Ok(format!(
        "{open} of {count} connections opened in {} ms, max_connections reached; \
         a new client served after {} ms, and after the release",
        opening.as_millis(),
        waited.as_millis()
    ))
}

/// `MAX_PARALLEL + 80` parallel requests to a slow model: those past the
/// limit get 503 `gateway_busy` with `Retry-After` at once, the rest 200.
pub async fn over_parallel(ctx: &Ctx) -> Check {
    let count = MAX_PARALLEL + 80;
    let client = ctx.client();
    let answers = join_all((0..count).map(|i| {
        let client = &client;
        async move {
            let started = Instant::now();
            let a = ctx.chat(client, &chat("slow", &format!("q{i}"))).await;
            (a, started.elapsed())
        }
    }))
    .await;
    let (mut ok, mut busy, mut slowest_refusal) = (0, 0, Duration::ZERO);
    for (a, took) in answers {
        let a = a?;
        match a.status {
            200 => ok += 1,
            503 if a.error_field("code") == "gateway_busy" && a.retry_after().is_some() => {
                busy += 1;
                slowest_refusal = slowest_refusal.max(took);
            }
            _ => {
                return Err(format!(
                    "status {}: {}",
                    a.status,
                    super::load::cut(&a.text)
                ));
            }
        }
    }
    if busy < count - MAX_PARALLEL {
        return Err(format!(
            "only {busy} refused past the limit of {MAX_PARALLEL}"
        ));
    }
    if slowest_refusal >= Duration::from_millis(SLOW_MS) {
        return Err(format!("a refusal took {slowest_refusal:?}"));
    }
    Ok(format!(
        "{ok} served, {busy} refused 503 gateway_busy with Retry-After (slowest refusal {} ms)",
        slowest_refusal.as_millis()
    ))
}

/// 300 parallel composite runs (256 strategy instances): the ones past the
/// pool wait for a slot; every run ends 200.
pub async fn composite_burst(ctx: &Ctx) -> Check {
    let client = ctx.client();
    let started = Instant::now();
    let answers = join_all((0..300).map(|i| {
        let client = &client;
        async move { ctx.chat(client, &chat("slow-moa", &format!("q{i}"))).await }
    }))
    .await;
    let mut ok = 0;
    for a in answers {
        let a = a?;
        a.expect_status(200)?;
        ok += 1;
    }
    Ok(format!(
        "{ok} of 300 composite runs (members {MEMBER_MS} ms) 200 in {} ms",
        started.elapsed().as_millis()
    ))
}

/// Percent-decodes a path (for comparing what the upstream received).
fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Wildcard names that try to change the upstream path or query: each
/// stays one segment, and dot segments are refused with 400.
pub async fn wildcard_injection(ctx: &Ctx) -> Check {
    ctx.hostile.take_recorded();
    let client = ctx.client();
    for (model, segment) in [
        ("azure/x?y=1#z", "x?y=1#z"),
        ("azure/a/b", "a/b"),
        ("azure/a%2Fb c", "a%2Fb c"),
    ] {
        ctx.chat(&client, &chat(model, "hi"))
            .await?
            .expect_status(200)?;
        let recorded = ctx.hostile.take_recorded();
        let [one] = recorded.as_slice() else {
            return Err(format!("{model}: upstream saw {recorded:?}"));
        };
        let expected = format!("/wild/openai/deployments/{segment}/chat/completions");
        let raw_segment = one
            .path
            .strip_prefix("/wild/openai/deployments/")
            .and_then(|p| p.strip_suffix("/chat/completions"))
            .unwrap_or("/");
        if decode(&one.path) != expected
            || raw_segment.contains('/')
            || one.query.as_deref() != Some("api-version=2024-10-21")
        {
            return Err(format!("{model}: upstream saw {one:?}"));
        }
    }
    for model in [
        "azure/..",
        "azure/x/../../../other/v1/chat/completions",
        "azure/./x",
    ] {
        let a = ctx.chat(&client, &chat(model, "hi")).await?;
        a.expect_status(400).map_err(|e| format!("{model}: {e}"))?;
        if a.error_field("param") != "model" {
            return Err(format!("{model}: {}", a.text));
        }
    }
    let recorded = ctx.hostile.take_recorded();
    if !recorded.is_empty() {
        return Err(format!("dot segments reached the upstream: {recorded:?}"));
    }
    Ok("3 injected names stayed one encoded segment; 3 dot-segment names 400".into())
}

/// A client naming a deployment only a topology names (directly and as a
/// fallback): 404 / no call, the deployment is never reached.
pub async fn topology_only_names(ctx: &Ctx) -> Check {
    let client = ctx.client();
    let before = ctx.hostile.calls("hidden");
    let a = ctx.chat(&client, &chat(HIDDEN_MODEL, "sneak in")).await?;
    a.expect_status(404)?;
    if a.error_field("code") != "model_not_found" {
        return Err(a.text);
    }
    let mut fallback = chat("doomed", "sneak in by fallback");
    fallback["fallbacks"] = serde_json::json!([HIDDEN_MODEL]);
    let a = ctx.chat(&client, &fallback).await?;
    if a.status == 200 {
        return Err(format!(
            "the fallback to a hidden deployment answered: {}",
            a.text
        ));
    }
    let after = ctx.hostile.calls("hidden");
    if after != before {
        return Err(format!(
            "{} client calls reached the hidden deployment",
            after - before
        ));
    }
    Ok(format!(
        "404 model_not_found by name; as a fallback {} and never called",
        a.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_undoes_percent_encoding_only() {
        assert_eq!(decode("/a%2Fb%20c/%3F"), "/a/b c/?");
        assert_eq!(decode("/100%/x%zz"), "/100%/x%zz");
    }
}
