//! The steady plain load that runs beside the attacks: [`RATE`] requests a
//! second, open loop (one every 20 ms whatever the answers do), every fifth
//! one streamed, every answer checked in full.
//!
//! The client behaves like the official OpenAI SDKs: a 503 that says the
//! gateway is at its parallel limit (`gateway_busy`, with `Retry-After`) is
//! retried after the hint, at most [`BUSY_RETRIES`] times. Those retries
//! are counted and reported; anything else that is not the expected answer
//! is a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

/// Requests per second.
pub const RATE: u64 = 50;
/// Longest a plain request may take, its retries included.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(30);
/// Retries of a `gateway_busy` 503.
pub const BUSY_RETRIES: usize = 3;
/// Failure messages kept for the report.
const KEPT_FAILURES: usize = 20;

/// What the plain load saw.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Requests answered `gateway_busy` at first and served on a retry.
    pub served_after_busy: u64,
    pub max_latency: Duration,
    pub failures: Vec<String>,
}

/// The running load; [`PlainLoad::finish`] stops it and waits for the
/// requests in flight.
pub struct PlainLoad {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<LoadStats>,
}

/// One request's result: `Ok(busy retries)` or what was wrong.
type Outcome = Result<usize, String>;

impl PlainLoad {
    /// Starts sending to `base` with `key`.
    pub fn start(base: String, key: String, stream_chunks: usize) -> PlainLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(drive(base, key, stream_chunks, stop.clone()));
        PlainLoad { stop, task }
    }

    /// Stops sending and returns the figures once every request has ended.
    pub async fn finish(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_else(|e| LoadStats {
            failed: 1,
            failures: vec![format!("the load task ended abnormally: {e}")],
            ..LoadStats::default()
        })
    }
}

async fn drive(base: String, key: String, chunks: usize, stop: Arc<AtomicBool>) -> LoadStats {
    // Idle connections are dropped before the gateway's header timeout
    // (2 s) could close them under a request.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_default();
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 / RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: JoinSet<(Outcome, Duration)> = JoinSet::new();
    let mut stats = LoadStats::default();
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        let stream = i % 5 == 4;
        running.spawn(async move {
            let started = Instant::now();
            let outcome =
                tokio::time::timeout(REQUEST_LIMIT, one(&client, &base, &key, stream, chunks))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_LIMIT:?}")));
            (outcome, started.elapsed())
        });
        stats.sent += 1;
        i += 1;
        while let Some(done) = running.try_join_next() {
            record(&mut stats, done);
        }
    }
    while let Some(done) = running.join_next().await {
        record(&mut stats, done);
    }
    stats
}

fn record(stats: &mut LoadStats, done: Result<(Outcome, Duration), tokio::task::JoinError>) {
    let (outcome, took) =
        done.unwrap_or_else(|e| (Err(format!("request task: {e}")), Duration::ZERO));
    stats.max_latency = stats.max_latency.max(took);
    match outcome {
        Ok(retries) => {
            stats.ok += 1;
            if retries > 0 {
                stats.served_after_busy += 1;
            }
        }
        Err(why) => {
            stats.failed += 1;
            if stats.failures.len() < KEPT_FAILURES {
                stats.failures.push(why);
            }
        }
    }
}

/// Sends one plain request (with `gateway_busy` retries) and checks it.
async fn one(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    stream: bool,
    chunks: usize,
) -> Outcome {
    let model = if stream { "plain-stream" } else { "plain" };
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "a steady plain request"}],
        "stream": stream,
    });
    let mut retries = 0;
    loop {
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{model}: send: {e}"))?;
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let text = r.text().await.map_err(|e| format!("{model}: body: {e}"))?;
        if status == 503 && text.contains("gateway_busy") && retries < BUSY_RETRIES {
            let Some(wait) = retry_after else {
                return Err(format!("{model}: gateway_busy without Retry-After"));
            };
            retries += 1;
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 3))).await;
            continue;
        }
        if status != 200 {
            return Err(format!("{model}: status {status}: {}", cut(&text)));
        }
        let checked = if stream {
            check_stream(&text, chunks)
        } else {
            check_json(&text)
        };
        return checked
            .map(|()| retries)
            .map_err(|e| format!("{model}: {e}"));
    }
}

fn check_json(text: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|_| format!("not JSON: {}", cut(text)))?;
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    if content.starts_with("Designing Data-Intensive Applications") {
        Ok(())
    } else {
        Err(format!("unexpected answer: {}", cut(text)))
    }
}

fn check_stream(text: &str, chunks: usize) -> Result<(), String> {
    let payloads: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    if payloads.last() != Some(&"[DONE]") {
        return Err(format!("stream without [DONE]: {}", cut(text)));
    }
    let mut content = 0;
    for p in &payloads[..payloads.len() - 1] {
        let v: Value = serde_json::from_str(p).map_err(|_| format!("bad event {}", cut(p)))?;
        if v.get("error").is_some() {
            return Err(format!("error event {}", cut(p)));
        }
        if v["choices"][0]["delta"]["content"].is_string() {
            content += 1;
        }
    }
    if content == chunks {
        Ok(())
    } else {
        Err(format!("{content} content chunks, expected {chunks}"))
    }
}

/// The start of `text`, for messages.
pub fn cut(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
