//! The ordered command queue to the shared state's Redis. Every command an
//! instance sends about limits goes through one queue and one task, which
//! sends whatever has queued up as one pipeline on the one multiplexed
//! connection: commands reach Redis in the order they were queued (a
//! call's charge is counted before the same instance's next admission),
//! and under load many requests share one round trip.
//!
//! Scripts are sent as `EVALSHA`: each is loaded with `SCRIPT LOAD` before
//! its first use (which also tells its hash), and again when Redis answers
//! that it does not know it (after a restart), so a script's text crosses
//! the network once per Redis lifetime.
//!
//! A failure never waits long: a caller waits at most the budget, a Redis
//! that failed is left alone for [`DOWN_FOR`] (callers are told at once),
//! and failures are counted and logged at most once a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};
use tokio::sync::{mpsc, oneshot};

use super::Connection;
use crate::logging::Throttle;

/// Commands waiting for the driver before new ones are refused.
const QUEUE: usize = 16_384;
/// Most commands sent in one pipeline.
const MAX_BATCH: usize = 512;
/// How long a Redis that failed is left alone before it is tried again.
pub const DOWN_FOR: Duration = Duration::from_secs(1);
/// At most one warning per this long.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Why a command did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// Redis failed within the last [`DOWN_FOR`]; not tried.
    #[error("redis failed moments ago; not retried yet")]
    Down,
    #[error("not connected")]
    NotConnected,
    #[error("too many commands waiting")]
    Busy,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(String),
}

impl Failure {
    /// Whether the command may have run in Redis although its answer did
    /// not come: it was sent, or queued to be, when the wait ended.
    pub fn may_have_run(&self) -> bool {
        matches!(
            self,
            Failure::Timeout(_) | Failure::NotConnected | Failure::Redis(_)
        )
    }
}

/// Run when a command sent without waiting did not complete.
pub type OnFailure = Box<dyn FnOnce() + Send + Sync>;

/// Where a command's answer goes.
enum Reply {
    Wait(oneshot::Sender<Result<Value, Failure>>),
    Forget(Option<OnFailure>),
}

impl Reply {
    fn fail(self, failure: Failure) {
        match self {
            Reply::Wait(tx) => {
                let _ = tx.send(Err(failure));
            }
            Reply::Forget(Some(on_failure)) => on_failure(),
            Reply::Forget(None) => {}
        }
    }

    fn answer(self, result: Result<Value, Failure>) {
        match (self, result) {
            (Reply::Wait(tx), result) => {
                let _ = tx.send(result);
            }
            (reply @ Reply::Forget(_), Err(failure)) => reply.fail(failure),
            (Reply::Forget(_), Ok(_)) => {}
        }
    }
}

/// A Lua script Redis keeps, known by the hash `SCRIPT LOAD` answered.
pub struct Script {
    code: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    /// The script `code` (loaded into Redis at its first use).
    pub const fn new(code: &'static str) -> Self {
        Self {
            code,
            sha: OnceLock::new(),
        }
    }
}

/// What a queued command is.
enum Command {
    /// `EVALSHA` of a script on keys with arguments.
    Script {
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<String>,
    },
    Plain(Cmd),
}

impl Command {
    /// The command to send (`None`: a script whose hash is not known).
    fn cmd(&self) -> Option<Cmd> {
        match self {
            Command::Plain(cmd) => Some(cmd.clone()),
            Command::Script { script, keys, args } => {
                let sha = script.sha.get()?;
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(sha).arg(keys.len()).arg(keys).arg(args);
                Some(cmd)
            }
        }
    }

    fn script(&self) -> Option<&'static Script> {
        match self {
            Command::Script { script, .. } => Some(script),
            Command::Plain(_) => None,
        }
    }
}

/// One queued command and where its answer goes.
struct Op {
    command: Command,
    reply: Reply,
}

/// The queue's handle; clones share it.
#[derive(Clone)]
pub struct Link(Arc<Inner>);

struct Inner {
    tx: mpsc::Sender<Op>,
    conn: Connection,
    budget: Duration,
    health: Arc<Health>,
}

/// Failures: counted, warned about at most once a minute, and the time
/// until which Redis is left alone.
pub struct Health {
    origin: Instant,
    /// Milliseconds since `origin` until which Redis is not tried.
    down_until_ms: AtomicU64,
    failures: AtomicU64,
    warnings: Throttle,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            warnings: Throttle::new(WARN_INTERVAL),
        }
    }
}

impl Health {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether Redis failed within the last [`DOWN_FOR`].
    pub fn is_down(&self) -> bool {
        self.now_ms() < self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Counts a failure, warns at most once a minute and, when Redis itself
    /// failed (`down`), leaves it alone for [`DOWN_FOR`].
    pub fn failed(&self, what: &str, error: &dyn std::fmt::Display, down: bool) {
        let total = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if down {
            let until = self.now_ms() + u64::try_from(DOWN_FOR.as_millis()).unwrap_or(1000);
            self.down_until_ms.store(until, Ordering::Relaxed);
        }
        if self.warnings.allow() {
            tracing::warn!(
                %error,
                failures = total,
                "shared state: redis {what} failed; limits are counted in this instance until it answers again (logged once a minute)"
            );
        }
    }
}

impl Link {
    /// The queue and its driver over `conn`; callers wait at most `budget`.
    pub fn start(conn: Connection, budget: Duration, health: Arc<Health>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(drive(rx, conn.clone(), budget, health.clone()));
        Self(Arc::new(Inner {
            tx,
            conn,
            budget,
            health,
        }))
    }

    /// The connection, for commands off the request path.
    pub fn connection(&self) -> &Connection {
        &self.0.conn
    }

    /// Calls that failed or timed out since start: while they fail, each
    /// instance counts limits on its own, which an operator must be able
    /// to see (`/metrics`).
    pub fn failures(&self) -> u64 {
        self.0.health.failures.load(Ordering::Relaxed)
    }

    /// Runs `script` on `keys` with `args` after every command queued
    /// before it, and waits for its answer at most the budget.
    pub async fn call_script(
        &self,
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, Failure> {
        self.call(Command::Script { script, keys, args }).await
    }

    /// Runs `script` on `keys` with `args` after every command queued
    /// before it, without waiting; `on_failure` runs if it does not complete.
    pub fn send_script(
        &self,
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<String>,
        on_failure: Option<OnFailure>,
    ) {
        self.send(Command::Script { script, keys, args }, on_failure);
    }

    /// Sends `cmd` after every command queued before it and waits for its
    /// answer at most the budget.
    pub async fn call_command(&self, cmd: Cmd) -> Result<Value, Failure> {
        self.call(Command::Plain(cmd)).await
    }

    async fn call(&self, command: Command) -> Result<Value, Failure> {
        if self.0.health.is_down() {
            return Err(Failure::Down);
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(Op {
            command,
            reply: Reply::Wait(tx),
        })?;
        match tokio::time::timeout(self.0.budget, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Failure::NotConnected),
            Err(_) => {
                let failure = Failure::Timeout(self.0.budget);
                self.0.health.failed("command", &failure, true);
                Err(failure)
            }
        }
    }

    fn send(&self, command: Command, on_failure: Option<OnFailure>) {
        if self.0.health.is_down() {
            Reply::Forget(on_failure).fail(Failure::Down);
            return;
        }
        let _ = self.enqueue(Op {
            command,
            reply: Reply::Forget(on_failure),
        });
    }

    fn enqueue(&self, op: Op) -> Result<(), Failure> {
        match self.0.tx.try_send(op) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(op) | mpsc::error::TrySendError::Closed(op)) => {
                self.0.health.failed("queue", &Failure::Busy, false);
                op.reply.fail(Failure::Busy);
                Err(Failure::Busy)
            }
        }
    }
}

/// The driver: sends what has queued as one pipeline, then the next.
async fn drive(
    mut rx: mpsc::Receiver<Op>,
    conn: Connection,
    budget: Duration,
    health: Arc<Health>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let ops = std::mem::take(&mut batch);
        if health.is_down() {
            ops.into_iter().for_each(|op| op.reply.fail(Failure::Down));
            continue;
        }
        match conn.get() {
            Some(mut c) => run_batch(&mut c, ops, budget, &health).await,
            None => {
                health.failed("connection", &Failure::NotConnected, true);
                ops.into_iter()
                    .for_each(|op| op.reply.fail(Failure::NotConnected));
            }
        }
    }
}

/// One pipeline of `ops`, after loading the scripts not loaded yet; the
/// commands of scripts Redis has forgotten are sent once more after
/// loading them again.
async fn run_batch(c: &mut impl ConnectionLike, ops: Vec<Op>, budget: Duration, health: &Health) {
    for op in &ops {
        if let Some(script) = op.command.script()
            && script.sha.get().is_none()
        {
            load(c, script, budget, health).await;
        }
    }
    let mut sent = Vec::with_capacity(ops.len());
    let mut pipe = redis::pipe();
    for op in ops {
        match op.command.cmd() {
            Some(cmd) => {
                pipe.add_command(cmd);
                sent.push(op);
            }
            None => op
                .reply
                .fail(Failure::Redis("the script could not be loaded".into())),
        }
    }
    if sent.is_empty() {
        return;
    }
    let mut values = match send(c, &pipe, budget).await {
        Ok(values) => values,
        Err(failure) => {
            health.failed("pipeline", &failure, true);
            sent.into_iter()
                .for_each(|op| op.reply.fail(failure.clone()));
            return;
        }
    };
    let unknown: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| is_noscript(v))
        .map(|(i, _)| i)
        .collect();
    if !unknown.is_empty() {
        resend_with_scripts(c, &sent, &unknown, &mut values, budget, health).await;
    }
    for (op, value) in sent.into_iter().zip(values) {
        let result = match value {
            Value::ServerError(e) => {
                let failure =
                    Failure::Redis(format!("{}: {}", e.code(), e.details().unwrap_or("")));
                health.failed("script", &failure, false);
                Err(failure)
            }
            v => Ok(v),
        };
        op.reply.answer(result);
    }
}

/// `SCRIPT LOAD`s `script`, keeping the hash Redis answers.
async fn load(c: &mut impl ConnectionLike, script: &Script, budget: Duration, health: &Health) {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(script.code);
    let limit = budget.max(Duration::from_secs(1));
    match tokio::time::timeout(limit, cmd.query_async::<String>(c)).await {
        Ok(Ok(sha)) => {
            let _ = script.sha.set(sha);
        }
        Ok(Err(e)) => health.failed("script load", &e, false),
        Err(_) => health.failed("script load", &Failure::Timeout(limit), true),
    }
}

/// Loads the scripts of the commands at `unknown` again and sends those
/// commands once more, putting their answers in `values`.
async fn resend_with_scripts(
    c: &mut impl ConnectionLike,
    ops: &[Op],
    unknown: &[usize],
    values: &mut [Value],
    budget: Duration,
    health: &Health,
) {
    let mut loaded: Vec<&'static Script> = Vec::new();
    let mut again = redis::pipe();
    let mut resent = Vec::new();
    for &i in unknown {
        let Some(script) = ops[i].command.script() else {
            continue;
        };
        if !loaded.iter().any(|s| std::ptr::eq(*s, script)) {
            loaded.push(script);
            load(c, script, budget, health).await;
        }
        if let Some(cmd) = ops[i].command.cmd() {
            again.add_command(cmd);
            resent.push(i);
        }
    }
    if resent.is_empty() {
        return;
    }
    match send(c, &again, budget).await {
        Ok(answers) => {
            for (&i, v) in resent.iter().zip(answers) {
                values[i] = v;
            }
        }
        Err(failure) => health.failed("pipeline", &failure, true),
    }
}

async fn send(
    c: &mut impl ConnectionLike,
    pipe: &redis::Pipeline,
    budget: Duration,
) -> Result<Vec<Value>, Failure> {
    let n = pipe.len();
    match tokio::time::timeout(budget, c.req_packed_commands(pipe, 0, n)).await {
        Ok(Ok(values)) if values.len() == n => Ok(values),
        Ok(Ok(values)) => Err(Failure::Redis(format!(
            "{} answers to {n} commands",
            values.len()
        ))),
        Ok(Err(e)) => Err(Failure::Redis(e.to_string())),
        Err(_) => Err(Failure::Timeout(budget)),
    }
}

fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}
