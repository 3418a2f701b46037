//! A load generator for what oha cannot do: every request carries the next
//! bearer key of a list, so a load spreads over many virtual keys. It runs
//! in this process on its own runtime (as many worker threads as oha gets),
//! over HTTP/1.1 keep-alive connections (hyper), and reports the same
//! [`LoadResult`] as oha so the figures sit in the same tables.
//!
//! Fixed-rate runs are open loop: request `i` is due at `start + i / rate`.
//! A connection that is idle when its request is due sends it then, and the
//! latency counts from the send (so the timer's granularity is not charged
//! to the server); a connection still busy with an earlier answer sends late,
//! and the latency counts from when the request was due, so a stall is
//! charged to every request it held back (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::client::REQUEST_LIMIT;
use crate::oha::LoadResult;
use crate::stats::percentile;
use crate::{Result, fail};

/// Latencies one connection keeps at most (a bound on memory, far above
/// what a phase of a minute at saturation produces per connection).
const MAX_SAMPLES_PER_CONNECTION: usize = 2_000_000;

/// One load run.
pub struct KeyedLoad {
    pub addr: SocketAddr,
    pub path: &'static str,
    pub body: Bytes,
    /// `Authorization` values, used in turn; empty: no such header.
    pub keys: Arc<Vec<HeaderValue>>,
    pub connections: usize,
    pub duration: Duration,
    /// Requests per second; `None` for as fast as the connections go.
    pub rate: Option<f64>,
    /// Worker threads of the generator's runtime.
    pub threads: usize,
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    failures: u64,
}

/// Runs `load` to its end: no request starts after `duration`; those in
/// flight then finish and count.
pub fn run(load: KeyedLoad) -> Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(drive(Arc::new(load)))
}

async fn drive(load: Arc<KeyedLoad>) -> Result<LoadResult> {
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..load.connections.max(1))
        .map(|_| tokio::spawn(connection(load.clone(), tickets.clone(), started)))
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        let t = task
            .await
            .map_err(|e| fail(format!("a load task failed: {e}")))??;
        tally.latencies_ms.extend(t.latencies_ms);
        tally.failures += t.failures;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(summarize(tally, elapsed))
}

fn summarize(mut tally: Tally, elapsed_s: f64) -> LoadResult {
    tally.latencies_ms.sort_by(f64::total_cmp);
    let ok = tally.latencies_ms.len() as f64;
    let requests = ok + tally.failures as f64;
    let p = |q: f64| percentile(&tally.latencies_ms, q);
    LoadResult {
        requests,
        rps: if elapsed_s > 0.0 {
            requests / elapsed_s
        } else {
            0.0
        },
        success_rate: if requests > 0.0 { ok / requests } else { 0.0 },
        p50_ms: p(50.0),
        p90_ms: p(90.0),
        p99_ms: p(99.0),
        max_ms: tally.latencies_ms.last().copied().unwrap_or(f64::NAN),
        failures: tally.failures as f64,
    }
}

/// One keep-alive connection taking tickets until the phase ends; it
/// reconnects after a transport error.
async fn connection(
    load: Arc<KeyedLoad>,
    tickets: Arc<AtomicU64>,
    started: Instant,
) -> Result<Tally> {
    let deadline = started + load.duration;
    let mut tally = Tally::default();
    let mut sender = connect(load.addr).await?;
    loop {
        let i = tickets.fetch_add(1, Ordering::Relaxed);
        let free_at = Instant::now();
        let due = match load.rate {
            Some(rate) => started + Duration::from_secs_f64(i as f64 / rate),
            None => free_at,
        };
        if due >= deadline || free_at >= deadline {
            return Ok(tally);
        }
        if due > free_at {
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = Instant::now();
        let from = if free_at > due { due } else { sent };
        match send(&mut sender, &load, i).await {
            Ok(StatusCode::OK) => {
                if tally.latencies_ms.len() < MAX_SAMPLES_PER_CONNECTION {
                    tally
                        .latencies_ms
                        .push(from.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Ok(_) => tally.failures += 1,
            Err(_) => {
                tally.failures += 1;
                sender = connect(load.addr).await?;
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(REQUEST_LIMIT, TcpStream::connect(addr))
        .await
        .map_err(|_| fail(format!("connecting to {addr} timed out")))??;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends request `i` (with key `i mod keys`) and reads the whole answer.
async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    load: &KeyedLoad,
    i: u64,
) -> Result<StatusCode> {
    let mut request = Request::post(load.path)
        .header(header::HOST, load.addr.to_string())
        .header(header::CONTENT_TYPE, "application/json");
    if !load.keys.is_empty() {
        let at = usize::try_from(i % load.keys.len() as u64).unwrap_or(0);
        request = request.header(header::AUTHORIZATION, load.keys[at].clone());
    }
    let request = request.body(Full::new(load.body.clone()))?;
    let exchange = async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok::<_, crate::BoxError>(status)
    };
    tokio::time::timeout(REQUEST_LIMIT, exchange)
        .await
        .map_err(|_| {
            fail(format!(
                "POST {} took longer than {REQUEST_LIMIT:?}",
                load.path
            ))
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_failures_and_reads_percentiles() {
        let tally = Tally {
            latencies_ms: (1..=100).rev().map(f64::from).collect(),
            failures: 25,
        };
        let r = summarize(tally, 2.0);
        assert_eq!(r.requests, 125.0);
        assert_eq!(r.rps, 62.5);
        assert_eq!(r.success_rate, 0.8);
        assert_eq!(r.max_ms, 100.0);
        assert!((49.0..=51.0).contains(&r.p50_ms), "{}", r.p50_ms);
    }
}
