//! The accept loop: hyper serves each connection (HTTP/1 with upgrades, or
//! HTTP/2) with the limits a public endpoint needs, and shutdown ends in
//! bounded time.
//!
//! - A connection with no request open for `header_read_timeout` is closed
//!   (see [`super::watchdog`]): a client that sends nothing, half a head or
//!   half of the HTTP/2 preface, an HTTP/1 client whose next head never
//!   completes, and an idle HTTP/1 keep-alive connection. An idle HTTP/2
//!   connection is sent a GOAWAY, and closed a timeout later if it is
//!   still there.
//! - A client that stops reading its answer for `client_write_timeout` is
//!   disconnected: over HTTP/1 its socket stalls (see
//!   [`super::write_timeout`]), over HTTP/2 its flow-control window does
//!   (see [`super::watchdog`]).
//! - At most `max_connections` connections are open: past it the loop stops
//!   accepting, and new connections wait in the kernel's listen backlog
//!   until one closes.
//! - Shutdown stops accepting, asks every connection to finish (HTTP/1 ends
//!   after its current answer, HTTP/2 sends GOAWAY), gives them
//!   `shutdown_grace`, then fires the [`StreamCutoff`] so open streams end
//!   with a shutdown error event, and returns once those are sent (or after
//!   [`FINAL_FLUSH`]).

use std::io;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::watchdog::{Activity, Check, Timeouts, Watched};
use super::write_timeout::WriteTimeout;
use crate::http::{App, StreamCutoff};

/// What bounds the server's connections and its shutdown.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a request head (`general_settings.header_read_timeout`).
    pub header_read_timeout: Duration,
    /// Time a write to a client may wait for it to read
    /// (`general_settings.client_write_timeout`).
    pub client_write_timeout: Duration,
    /// Connections open at once (`general_settings.max_connections`).
    pub max_connections: usize,
    /// Time open streams get after a shutdown signal (`--shutdown-grace`).
    pub shutdown_grace: Duration,
    /// Whether each request carries its connection's peer address
    /// ([`crate::http::client_ip::PeerIp`]), which
    /// `general_settings.allowed_ips` judges.
    pub peer_addresses: bool,
}

/// Default `general_settings.header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `general_settings.client_write_timeout`.
pub const DEFAULT_CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `general_settings.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `--shutdown-grace`: Kubernetes' default termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// After the cutoff: how long the streams' last events get to reach clients.
const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// How often reaching `max_connections` is logged while it lasts.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(60);
/// HTTP/2 pings an idle connection this often, and drops it when a ping is
/// not answered within the same time.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// HTTP/2 streams one connection may have open at once.
const H2_MAX_CONCURRENT_STREAMS: u32 = 200;

/// Serves `app` on `listener` until `shutdown` completes, then shuts down
/// as the module docs say.
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    cutoff: StreamCutoff,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(builder());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut warned: Option<Instant> = None;
    loop {
        let permit = tokio::select! {
            permit = acquire(&permits, &mut warned) => permit,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            drain: drain_rx.clone(),
            header_read_timeout: limits.header_read_timeout,
            client_write_timeout: limits.client_write_timeout,
            peer: limits.peer_addresses.then_some(peer.ip()),
            _permit: permit,
        };
        tokio::spawn(connection.run(tcp));
    }
    drop(listener);
    let _ = drain_tx.send(true);
    drain(&permits, &limits, &cutoff).await;
}

/// A free connection slot; when none is free, says that the limit holds new
/// connections back (at most once a minute), then waits.
async fn acquire(permits: &Arc<Semaphore>, warned: &mut Option<Instant>) -> OwnedSemaphorePermit {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return permit;
    }
    if warned.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
        *warned = Some(Instant::now());
        tracing::warn!(
            "max_connections reached; new connections wait in the listen backlog until one closes"
        );
    }
    match permits.clone().acquire_owned().await {
        Ok(permit) => permit,
        // The semaphore is never closed.
        Err(_) => std::future::pending().await,
    }
}

/// Waits for every connection to end: `shutdown_grace`, then the cutoff and
/// [`FINAL_FLUSH`].
async fn drain(permits: &Semaphore, limits: &Limits, cutoff: &StreamCutoff) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let open = || limits.max_connections - permits.available_permits();
    tracing::info!(
        connections = open(),
        "no longer accepting; draining connections"
    );
    if tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all))
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(
        connections = open(),
        grace_s = limits.shutdown_grace.as_secs_f64(),
        "shutdown grace period over; ending open streams"
    );
    cutoff.fire();
    if tokio::time::timeout(FINAL_FLUSH, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(connections = open(), "connections still open at exit");
    }
}

/// The hyper connection builder: HTTP/1 (with upgrades) and HTTP/2.
/// hyper's own per-head timer is off: the connection's watchdog does its
/// job with one timer per connection.
fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        // As axum does: the CONNECT protocol for HTTP/2 WebSockets.
        .enable_connect_protocol()
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    builder
}

/// As axum's listener does: a connection that failed before it was accepted
/// is skipped; anything else (e.g. out of file descriptors) is logged and
/// retried after a second.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One accepted connection and what it holds until it closes.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    app: App,
    drain: watch::Receiver<bool>,
    header_read_timeout: Duration,
    client_write_timeout: Duration,
    /// The peer's address, put on each request when it is judged.
    peer: Option<IpAddr>,
    /// Its slot under `max_connections`, freed when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream) {
        // Answers go out as soon as they are written: without TCP_NODELAY a
        // response written in two parts can wait for the client's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
        let activity = Activity::new();
        let service = Watched {
            inner: TowerToHyperService::new(self.app.clone()),
            activity: activity.clone(),
            peer: self.peer,
        };
        let mut conn = pin!(self.builder.serve_connection_with_upgrades(
            TokioIo::new(WriteTimeout::new(tcp, self.client_write_timeout)),
            service
        ));
        let timeouts = Timeouts {
            idle: self.header_read_timeout,
            write: self.client_write_timeout,
        };
        // The first look comes after the shorter timeout: an HTTP/2 answer
        // may already be waiting for its client by then.
        let first_look = timeouts.idle.min(timeouts.write);
        let mut watchdog = pin!(tokio::time::sleep(first_look));
        let mut draining = false;
        // An idle HTTP/2 connection was sent a GOAWAY; if it is still idle
        // a timeout later (its client never acknowledged), it is closed.
        let mut sent_away = false;
        loop {
            tokio::select! {
                // In this order, without drawing a random start on every
                // wake-up: the connection's own work comes first.
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = watchdog.as_mut() => {
                    match activity.check(Instant::now(), timeouts) {
                        Check::Close => {
                            tracing::debug!("no request head within header_read_timeout; closing the connection");
                            break;
                        }
                        Check::Stalled => {
                            tracing::debug!("an HTTP/2 client took no answer data for client_write_timeout; closing the connection");
                            break;
                        }
                        Check::Again(at) => watchdog.as_mut().reset(at.into()),
                        Check::GoAway if sent_away => {
                            tracing::debug!("an idle HTTP/2 connection did not end after its GOAWAY; closing it");
                            break;
                        }
                        Check::GoAway => {
                            tracing::debug!("no stream within header_read_timeout; ending the HTTP/2 connection");
                            conn.as_mut().graceful_shutdown();
                            draining = true;
                            sent_away = true;
                            watchdog
                                .as_mut()
                                .reset((Instant::now() + self.header_read_timeout).into());
                        }
                    }
                }
                _ = self.drain.changed(), if !draining => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}
