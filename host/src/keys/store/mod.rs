//! The one store interface over two backends: embedded SQLite (the default,
//! a file beside the config) and PostgreSQL. Both are reached through
//! sqlx's `Any` driver with queries written once in the SQL both accept
//! (`$n` placeholders, `ON CONFLICT`, `UPDATE ... FROM (VALUES ...)`), times
//! as epoch milliseconds and flags as integers, so the two backends cannot
//! drift apart. Nothing here runs on a request's path: the registry cache
//! and the background writer stand between requests and the store.

mod answers;
mod audit;
mod end_users;
mod migrations;
mod models;
mod principals;
mod responses;
mod rows;
mod spend;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use super::KeyError;
use crate::keys::time::to_ms;

pub use audit::{AuditFilter, AuditRow};

pub use principals::{KeyFilter, ListOrder, ListPage, Owner, TeamFilter, UserFilter};
pub use responses::ResponseRow;
pub use spend::{
    ActivityFilter, ActivityRow, EndedPeriods, ReportRow, SpendBy, SpendFilter, SpendOwner,
    SpendTotals, TagSpend,
};

/// A transaction of the store's pool.
type Transaction = sqlx::Transaction<'static, sqlx::Any>;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connected, migrated store. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// What the pool connects with, for a pool of another thread's own
    /// ([`Store::own_connections`]).
    options: AnyConnectOptions,
    /// Statements run since start (BEGIN and COMMIT included), shared by
    /// the clones: what `/metrics` shows, and how the benchmark proves that
    /// requests do not each cost a statement.
    statements: Arc<AtomicU64>,
    /// Spend rows this process wrote since it last indexed their answer
    /// ids ([`answers`]), shared by the clones.
    answers_waiting: Arc<AtomicU64>,
}

/// How long a statement may wait for a pooled connection before the store
/// counts as unreachable, by default.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store's pool, as the config sizes it (`None`: the defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolSettings {
    /// Most connections (10 for PostgreSQL, 4 for SQLite).
    pub max_connections: Option<u32>,
    /// How long a statement waits for a connection ([`ACQUIRE_TIMEOUT`]).
    pub acquire_timeout: Option<Duration>,
}

/// Every SQLite connection's settings: 16 KiB pages for a database it
/// creates (an existing file keeps its own; the size must be set before
/// the first write, so before the switch to WAL); write-ahead logging, so
/// readers go on beside the one writer; a wait for that writer instead of
/// an error; syncs at checkpoints only; a page cache of 16 MiB (the
/// default is 2) and reads through a mapping, since the spend-log indexes
/// outgrow 2 MiB within hours and every batch then re-read its pages with a
/// system call each.
///
/// The page size is for the spend writer: a batch appends thousands of
/// rows, and with the default 4 KiB pages it split, logged and checkpointed
/// four times as many pages, each logged frame a write of its own. 16 KiB
/// pages took about a fifth off the store thread's time a request.
async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in [
        "PRAGMA page_size = 16384",
        "PRAGMA journal_mode = WAL",
        "PRAGMA busy_timeout = 5000",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA cache_size = -16384",
        "PRAGMA mmap_size = 268435456",
    ] {
        conn.execute(pragma).await?;
    }
    Ok(())
}

/// An arbitrary, fixed number: the PostgreSQL advisory lock that makes
/// instances starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x636f_6e63_6c61_7665;

impl Store {
    /// Connects to `url` (`sqlite://...` or `postgres://...`), creating a
    /// SQLite file when missing, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, KeyError> {
        Self::connect_with(url, PoolSettings::default()).await
    }

    /// [`Store::connect`] with a pool sized by `pool`.
    pub async fn connect_with(url: &str, pool: PoolSettings) -> Result<Self, KeyError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(KeyError::Config(
                "database_url must start with sqlite:// or postgres://".into(),
            ));
        };
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| KeyError::Config(format!("database_url is not usable: {}", redact(e))))?;
        let pool_options =
            AnyPoolOptions::new().acquire_timeout(pool.acquire_timeout.unwrap_or(ACQUIRE_TIMEOUT));
        let pool_options = match backend {
            // One writer at a time is all SQLite allows; WAL lets readers
            // go on beside it.
            Backend::Sqlite => pool_options
                .max_connections(pool.max_connections.unwrap_or(4))
                .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn))),
            Backend::Postgres => pool_options.max_connections(pool.max_connections.unwrap_or(10)),
        };
        let pool = match pool_options.clone().connect_with(options.clone()).await {
            Ok(pool) => Ok(pool),
            Err(e) if backend == Backend::Postgres && names_missing_database(&e) => {
                create_database(url).await?;
                pool_options.connect_with(options.clone()).await
            }
            Err(e) => Err(e),
        };
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => return Err(KeyError::Store(open_error(url, &options, e).await)),
        };
        let store = Self {
            pool,
            backend,
            options,
            statements: Arc::default(),
            answers_waiting: Arc::default(),
        };
        store.migrate().await?;
        store.count_unindexed_answers().await?;
        Ok(store)
    }

    /// This store for a task that runs on a runtime of its own (the spend
    /// writer's thread), with a small pool of its own connected on first
    /// use from that thread. A PostgreSQL connection's socket belongs to
    /// the runtime that opened it, so no socket that key lookups use then
    /// waits on the writer's thread. A SQLite connection is a thread of its
    /// own, started by the thread that connects: the writer's one
    /// connection inherits the writer's lower priority, and its statement
    /// cache sees every batch, so each statement length is parsed once, not
    /// once per pooled connection. Statements are counted together.
    pub fn own_connections(&self) -> Self {
        let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let pool = match self.backend {
            Backend::Sqlite => options
                .max_connections(1)
                .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn))),
            Backend::Postgres => options.max_connections(2),
        }
        .connect_lazy_with(self.options.clone());
        Self {
            pool,
            ..self.clone()
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers a query naming every table a request
    /// reads now (`/health/readiness`): a database that answers but has
    /// lost its tables (dropped and made again) serves no key. `LIMIT 0`
    /// reads no row.
    pub async fn answers(&self) -> bool {
        sqlx::query(
            "SELECT 1 FROM keys, key_model_spend, users, teams, memberships, end_users, \
             budgets LIMIT 0",
        )
        .execute(self.pool())
        .await
        .is_ok()
    }

    /// Applies every migration not yet recorded, each in its own transaction.
    async fn migrate(&self) -> Result<(), KeyError> {
        let mut conn = self.pool.acquire().await.map_err(migration)?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(migration)?;
        }
        let applied = self.apply_pending(&mut conn).await;
        if self.backend == Backend::Postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
        }
        applied
    }

    async fn apply_pending(&self, conn: &mut sqlx::AnyConnection) -> Result<(), KeyError> {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS conclave_schema_version (
                version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(migration)?;
        let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM conclave_schema_version")
            .fetch_all(&mut *conn)
            .await
            .map_err(migration)?;
        let id = match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        // SQLite has no advisory lock: each migration takes the database's
        // write lock as it begins (`IMMEDIATE`), so instances sharing a file
        // and starting together apply it one at a time, and each checks
        // again under the lock whether another already has.
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        for (version, statements) in migrations::MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            let statements =
                if migrations::SQLITE_ONLY.contains(version) && self.backend != Backend::Sqlite {
                    &[][..]
                } else {
                    statements
                };
            conn.execute(begin).await.map_err(migration)?;
            match apply_one(conn, *version, statements, id).await {
                Ok(applied) => {
                    conn.execute("COMMIT").await.map_err(migration)?;
                    if applied {
                        tracing::info!(version, "key store schema migrated");
                    }
                }
                Err(e) => {
                    let _ = conn.execute("ROLLBACK").await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Statements run since start, BEGIN and COMMIT included (migrations
    /// not).
    pub fn statements_run(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The pool for one statement, or the BEGIN of a transaction: every
    /// query module reaches the database through here or [`Self::within`],
    /// so the count stays whole.
    fn pool(&self) -> &AnyPool {
        self.statements.fetch_add(1, Ordering::Relaxed);
        &self.pool
    }

    /// The connection of `tx` for one statement inside it, counted.
    fn within<'t>(&self, tx: &'t mut Transaction) -> &'t mut sqlx::AnyConnection {
        self.statements.fetch_add(1, Ordering::Relaxed);
        tx
    }

    /// Commits `tx`, counting the COMMIT.
    async fn commit(&self, tx: Transaction) -> Result<(), KeyError> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        tx.commit().await.map_err(store_error)
    }
}

/// A store error as the log and the API may show it.
pub(crate) fn store_error(e: sqlx::Error) -> KeyError {
    // 22021 (character_not_in_repertoire): a NUL in text. Asking again
    // never helps, so it is the caller's error, not the store's.
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("22021")
    {
        return KeyError::Unstorable;
    }
    KeyError::Store(redact(e))
}

fn migration(e: sqlx::Error) -> KeyError {
    KeyError::Migration(redact(e))
}

/// Whether a connection failed because the database it names does not
/// exist (PostgreSQL's SQLSTATE 3D000).
fn names_missing_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(e) if e.code().as_deref() == Some("3D000"))
}

/// Creates the PostgreSQL database `url` names, which the server said does
/// not exist, as LiteLLM's start-up migration does: pointing a new gateway
/// at a fresh server then just works. The database is created through the
/// server's `postgres` database with the same credentials; one another
/// instance created meanwhile is fine.
async fn create_database(url: &str) -> Result<(), KeyError> {
    use sqlx::ConnectOptions;
    use sqlx::postgres::PgConnectOptions;
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| KeyError::Config(format!("database_url is not usable: {}", redact(e))))?;
    let name = options.get_database().unwrap_or_default().to_owned();
    let creating = |e: sqlx::Error| {
        KeyError::Store(format!(
            "the database {name:?} does not exist and cannot be created: {}",
            redact(e)
        ))
    };
    let mut admin = options
        .database("postgres")
        .connect()
        .await
        .map_err(creating)?;
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(&statement).execute(&mut admin).await {
        Ok(_) => tracing::info!(database = %name, "created the database, which did not exist"),
        // Another instance starting at the same time created it first.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
        Err(e) => return Err(creating(e)),
    }
    let _ = sqlx::Connection::close(admin).await;
    Ok(())
}

/// Applies one migration inside the transaction its caller began, unless
/// it is recorded already (another instance applied it meanwhile); says
/// whether it was applied here.
async fn apply_one(
    conn: &mut sqlx::AnyConnection,
    version: i64,
    statements: &[&str],
    id: &str,
) -> Result<bool, KeyError> {
    let recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM conclave_schema_version WHERE version = $1")
            .bind(version)
            .fetch_one(&mut *conn)
            .await
            .map_err(migration)?;
    if recorded > 0 {
        return Ok(false);
    }
    for statement in statements {
        let sql = statement.replace("{id}", id);
        conn.execute(sql.as_str()).await.map_err(migration)?;
    }
    sqlx::query("INSERT INTO conclave_schema_version (version, applied_at) VALUES ($1, $2)")
        .bind(version)
        .bind(super::time::to_ms(std::time::SystemTime::now()))
        .execute(&mut *conn)
        .await
        .map_err(migration)?;
    Ok(true)
}

/// sqlx's message without anything that could carry the database password:
/// connection errors name the failure, never the URL.
/// Why the store could not be opened, naming the server (never the
/// credentials). A pool that timed out hides why each connection failed:
/// one connection is tried on its own to learn it.
async fn open_error(url: &str, options: &AnyConnectOptions, e: sqlx::Error) -> String {
    let cause = match e {
        sqlx::Error::PoolTimedOut => {
            use sqlx::Connection;
            match tokio::time::timeout(ACQUIRE_TIMEOUT, sqlx::AnyConnection::connect_with(options))
                .await
            {
                Ok(Err(cause)) => redact(cause),
                _ => format!("no connection within {} s", ACQUIRE_TIMEOUT.as_secs()),
            }
        }
        e => redact(e),
    };
    let server = server_of(url)
        .map(|s| format!(" at {s}"))
        .unwrap_or_default();
    format!("cannot connect to the database{server}: {cause}")
}

/// The `host[:port]` a PostgreSQL URL names, without its credentials.
fn server_of(url: &str) -> Option<&str> {
    // A SQLite file's path holds no credentials.
    if let Some(file) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = file.split('?').next().unwrap_or_default();
        return (!path.is_empty()).then_some(path);
    }
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let server = authority.rsplit_once('@').map_or(authority, |(_, s)| s);
    (!server.is_empty()).then_some(server)
}

fn redact(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    match text.find("://") {
        Some(_) => "the database could not be reached (check database_url)".into(),
        None => text,
    }
}

/// `update` (an `UPDATE ... WHERE <id> = $1`) made conditional on the row's
/// `updated_at` being `read_at`'s, bound as parameter `$n`, when one is
/// given: a read-change-write whose row another request (or instance)
/// changed in between writes nothing, rather than undoing that change.
pub(super) fn unchanged_since(update: &str, n: usize, read_at: Option<SystemTime>) -> String {
    match read_at {
        Some(_) => format!("{update} AND updated_at = ${n}"),
        None => update.to_owned(),
    }
}

/// Binds `value` as the next parameter when there is one: for a
/// parameter the statement names only then (the condition of
/// [`unchanged_since`], an optional double written `NULL` otherwise).
pub(super) fn bind_present<'q, T>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    value: Option<T>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>
where
    T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    match value {
        Some(value) => query.bind(value),
        None => query,
    }
}

/// The `updated_at` a write made at `at` stores over a row it read with
/// `read_at`: later than the one it read, so two changes within one
/// millisecond still tell apart.
pub fn later_than_read(at: SystemTime, read_at: SystemTime) -> SystemTime {
    read_at
        .checked_add(std::time::Duration::from_millis(1))
        .map_or(at, |later| at.max(later))
}

/// The `updated_at` a conditional write stores ([`later_than_read`]).
pub(super) fn written_at(updated_at: SystemTime, read_at: Option<SystemTime>) -> i64 {
    to_ms(read_at.map_or(updated_at, |read| later_than_read(updated_at, read)))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn the_server_is_named_without_credentials() {
        assert_eq!(
            server_of("postgres://u:secret@db.internal:6543/conclave?sslmode=require"),
            Some("db.internal:6543")
        );
        assert_eq!(server_of("postgresql://localhost/x"), Some("localhost"));
        assert_eq!(
            server_of("sqlite://conclave.db?mode=rwc"),
            Some("conclave.db")
        );
    }

    /// A fresh SQLite database URL in a directory of its own, removed when
    /// the guard is dropped.
    pub struct Scratch {
        dir: std::path::PathBuf,
        pub url: String,
    }

    impl Scratch {
        pub fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "conclave-{name}-{}-{}",
                std::process::id(),
                crate::translate::new_id("")
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.join("s.db").display());
            Self { dir, url }
        }
    }

    /// A store on a fresh scratch database; keep the guard while it is used.
    pub async fn scratch_store(name: &str) -> (Scratch, Store) {
        let scratch = Scratch::new(name);
        let store = Store::connect(&scratch.url).await.unwrap();
        (scratch, store)
    }

    /// Closes `store`'s pool, so that every statement after fails as an
    /// unreachable database would.
    pub async fn close(store: &Store) {
        store.pool.close().await;
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn a_new_sqlite_store_is_made_of_16_kib_pages_in_wal_mode() {
        let (_scratch, store) = scratch_store("store-pages").await;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!((page_size, journal.as_str()), (16384, "wal"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_starting_together_on_one_sqlite_file_migrate_it_once() {
        for round in 0..5 {
            let scratch = Scratch::new(&format!("store-race-{round}"));
            let starts: Vec<_> = (0..4)
                .map(|_| {
                    let url = scratch.url.clone();
                    tokio::spawn(async move { Store::connect(&url).await.map(|_| ()) })
                })
                .collect();
            for start in starts {
                let started = start.await.unwrap();
                assert!(started.is_ok(), "round {round}: {:?}", started.err());
            }
            let store = Store::connect(&scratch.url).await.unwrap();
            let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conclave_schema_version")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(versions as usize, migrations::MIGRATIONS.len());
        }
    }
}
