//! The store's schema, as numbered migrations applied in order. Each
//! migration is a list of single statements (PostgreSQL's extended protocol
//! runs one at a time); `{id}` becomes the backend's auto-increment key.
//! Applied versions are recorded in `conclave_schema_version`; statements
//! are idempotent (`IF NOT EXISTS`) so a half-applied migration can be run
//! again. A migration, once released, never changes: a new schema is a new
//! number. A version listed in [`SQLITE_ONLY`] runs on SQLite alone and is
//! recorded as applied, with nothing to do, on PostgreSQL.

/// `(version, statements)`, in order.
pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
    (8, V8),
    (9, V9),
    (10, V10),
    (11, V11),
    (12, V12),
    (13, V13),
];

/// Versions whose statements are SQLite's own.
pub const SQLITE_ONLY: &[i64] = &[9];

const V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS keys (
        token_hash TEXT PRIMARY KEY,
        key_alias TEXT UNIQUE,
        key_name TEXT NOT NULL,
        user_id TEXT,
        team_id TEXT,
        models TEXT NOT NULL,
        aliases TEXT NOT NULL,
        limits TEXT NOT NULL,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        budget_reset_at BIGINT,
        expires BIGINT,
        blocked BIGINT NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL,
        tags TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS keys_user ON keys (user_id)",
    "CREATE INDEX IF NOT EXISTS keys_team ON keys (team_id)",
    "CREATE INDEX IF NOT EXISTS keys_reset ON keys (budget_reset_at)",
    "CREATE TABLE IF NOT EXISTS key_model_spend (
        token_hash TEXT NOT NULL,
        model TEXT NOT NULL,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        PRIMARY KEY (token_hash, model)
    )",
    "CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY,
        user_role TEXT,
        user_email TEXT,
        models TEXT NOT NULL,
        limits TEXT NOT NULL,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        budget_reset_at BIGINT,
        metadata TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS users_reset ON users (budget_reset_at)",
    "CREATE TABLE IF NOT EXISTS teams (
        team_id TEXT PRIMARY KEY,
        team_alias TEXT,
        models TEXT NOT NULL,
        limits TEXT NOT NULL,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        budget_reset_at BIGINT,
        blocked BIGINT NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS teams_reset ON teams (budget_reset_at)",
    "CREATE TABLE IF NOT EXISTS memberships (
        team_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (team_id, user_id)
    )",
    "CREATE INDEX IF NOT EXISTS memberships_user ON memberships (user_id)",
    "CREATE TABLE IF NOT EXISTS spend_logs (
        id {id},
        request_id TEXT NOT NULL,
        parent_request_id TEXT,
        token_hash TEXT,
        user_id TEXT,
        team_id TEXT,
        model TEXT NOT NULL,
        model_group TEXT,
        deployment TEXT,
        profile TEXT,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        spend DOUBLE PRECISION NOT NULL,
        status BIGINT NOT NULL,
        cache_hit BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        latency_ms BIGINT NOT NULL,
        tags TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS spend_logs_key_time ON spend_logs (token_hash, started_at)",
    "CREATE INDEX IF NOT EXISTS spend_logs_request ON spend_logs (request_id)",
    "CREATE INDEX IF NOT EXISTS spend_logs_parent ON spend_logs (parent_request_id)",
    "CREATE INDEX IF NOT EXISTS spend_logs_time ON spend_logs (started_at)",
    "CREATE TABLE IF NOT EXISTS daily_spend (
        day TEXT NOT NULL,
        token_hash TEXT NOT NULL,
        user_id TEXT NOT NULL,
        team_id TEXT NOT NULL,
        model_group TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        spend DOUBLE PRECISION NOT NULL,
        requests BIGINT NOT NULL,
        PRIMARY KEY (day, token_hash, user_id, team_id, model_group)
    )",
];

/// The Responses API's stored responses: the response object and the
/// conversation (input items) it answered, by id and owner (a key's hash,
/// `master` or `open`); `created_at` drives retention.
const V2: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        response TEXT NOT NULL,
        input TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at)",
];

/// Runtime model registrations (`POST /admin/models` with
/// `general_settings.store_model_in_db`): one row per model name, the
/// registration as the persistence file keeps it (JSON text).
const V3: &[&str] = &["CREATE TABLE IF NOT EXISTS runtime_models (
        model_name TEXT PRIMARY KEY,
        registration TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    )"];

/// The spend log's parent index holds only sub-calls: top-level requests
/// (most rows) have no parent, and indexing their NULLs cost every insert
/// an index write that no query reads (`parent_request_id = $n` implies
/// NOT NULL, so both backends still use the index for it).
const V4: &[&str] = &[
    "DROP INDEX IF EXISTS spend_logs_parent",
    "CREATE INDEX IF NOT EXISTS spend_logs_parent ON spend_logs (parent_request_id) \
     WHERE parent_request_id IS NOT NULL",
];

/// The request's `user` on each spend-log row (LiteLLM's `end_user`).
/// `ADD COLUMN` has no `IF NOT EXISTS` in SQLite; the migration's
/// transaction keeps it from being half-applied.
const V5: &[&str] = &["ALTER TABLE spend_logs ADD COLUMN end_user TEXT"];

/// The spend log loses its (key, time) index. A batch's rows fall into
/// every active key's own corner of that index, so each second's batch
/// rewrote about one index page per key (a thousand keys: 4 MB to the
/// write-ahead log and again at its checkpoint) for the one query that
/// filters by key alone. Queries by key now walk the time index, as those
/// by user and team already did, and stop at their page's worth of rows;
/// spend totals per key come from `keys`, `key_model_spend` and
/// `daily_spend`, never from the log.
const V6: &[&str] = &["DROP INDEX IF EXISTS spend_logs_key_time"];

/// The answer's own id on each spend-log row (`chatcmpl-...`), which
/// LiteLLM's users look spend up by (`/spend/logs?request_id=`). Indexed
/// only where present: failed calls have none.
const V7: &[&str] = &[
    "ALTER TABLE spend_logs ADD COLUMN response_id TEXT",
    "CREATE INDEX IF NOT EXISTS spend_logs_response ON spend_logs (response_id) \
     WHERE response_id IS NOT NULL",
];

/// Runtime models are kept by deployment id, not model name: LiteLLM's
/// `/model/new` adds one more deployment to a group, so several rows may
/// serve one name. A registration made by name keeps the id it always had,
/// `runtime:<model_name>`.
const V8: &[&str] = &[
    "ALTER TABLE runtime_models RENAME COLUMN model_name TO deployment_id",
    "UPDATE runtime_models SET deployment_id = 'runtime:' || deployment_id",
];

/// SQLite finds spend rows by the answer's id through a table of its own,
/// filled in sorted runs by the spend writer ([`super::answers`]), instead
/// of an index on `spend_logs` that every row's random id was inserted into
/// one at a time. Rows newer than `through` are not in it yet and are
/// found by their id range. Existing rows are indexed here, once.
/// PostgreSQL keeps its index: it logs an index insert, not a whole page
/// per commit, and its instances' rows commit out of id order, which a
/// high-water mark cannot follow.
const V9: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS spend_log_answers (
        response_id TEXT NOT NULL,
        log_id INTEGER NOT NULL,
        PRIMARY KEY (response_id, log_id)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS spend_log_answers_through (through INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO spend_log_answers (response_id, log_id)
        SELECT response_id, id FROM spend_logs WHERE response_id IS NOT NULL ORDER BY response_id",
    "INSERT INTO spend_log_answers_through (through)
        SELECT COALESCE(MAX(id), 0) FROM spend_logs
        WHERE NOT EXISTS (SELECT 1 FROM spend_log_answers_through)",
    "DROP INDEX IF EXISTS spend_logs_response",
];

/// The audit log ([`super::audit`]): rows are only added, listed newest
/// first, and found by the object they changed.
const V10: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log (
        seq {id},
        id TEXT NOT NULL UNIQUE,
        at BIGINT NOT NULL,
        changed_by TEXT NOT NULL,
        changed_by_api_key TEXT NOT NULL,
        action TEXT NOT NULL,
        table_name TEXT NOT NULL,
        object_id TEXT NOT NULL,
        before_value TEXT,
        updated_values TEXT
    )",
    "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at)",
    "CREATE INDEX IF NOT EXISTS audit_log_object ON audit_log (object_id)",
];

/// End users and the budgets they are linked to ([`super::end_users`]).
/// An end user's row is made the first time it spends, so its id is its
/// key; budgets are few and read with the end user they apply to.
const V11: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS budgets (
        budget_id TEXT PRIMARY KEY,
        limits TEXT NOT NULL,
        soft_budget DOUBLE PRECISION,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS end_users (
        user_id TEXT PRIMARY KEY,
        alias TEXT,
        blocked BIGINT NOT NULL DEFAULT 0,
        budget_id TEXT,
        spend DOUBLE PRECISION NOT NULL DEFAULT 0,
        budget_reset_at BIGINT,
        default_model TEXT,
        allowed_model_region TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS end_users_budget ON end_users (budget_id)",
    "CREATE INDEX IF NOT EXISTS end_users_reset ON end_users (budget_reset_at)",
];

/// The routes a key may call (LiteLLM's `allowed_routes`), as a JSON list;
/// `NULL`, as on every earlier key, allows every route.
const V12: &[&str] = &["ALTER TABLE keys ADD COLUMN allowed_routes TEXT"];

/// Failed calls in the daily aggregates, for LiteLLM's daily activity
/// (`failed_requests` beside `api_requests`); earlier days count none.
const V13: &[&str] = &["ALTER TABLE daily_spend ADD COLUMN failed BIGINT NOT NULL DEFAULT 0"];
