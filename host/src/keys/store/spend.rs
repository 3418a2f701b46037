//! Spend: the batched write of spend-log rows with the totals and daily
//! aggregates they change, the spend-log and report queries, budget resets
//! and retention. A batch is one transaction of a handful of statements
//! however many rows it holds: one multi-row insert, one `UPDATE ... FROM
//! (VALUES ...)` per level, one upsert per aggregate table.

use std::fmt::Write as _;
use std::time::SystemTime;

use foldhash::HashMap;
use sqlx::Row;

use super::answers;
use super::rows::{self, SPEND_COLUMNS, json};
use super::{Backend, Store, Transaction, store_error};
use crate::keys::model::{Limits, SpendRow};
use crate::keys::reset::ResetClock;
use crate::keys::time::{day_number, day_text, from_ms, to_ms};
use crate::keys::{KeyError, PROXY_BUDGET_USER};

/// Most rows in one multi-row statement: far below both backends' bind limits.
const MAX_ROWS: usize = 512;

/// Which spend-log rows `GET /spend/logs` returns.
#[derive(Debug, Clone, Default)]
pub struct SpendFilter {
    pub token_hash: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// Matches the row with this id and the sub-calls linked to it.
    pub request_id: Option<String>,
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    pub limit: u32,
}

/// One line of a spend report: a day and what it was grouped by (a key's
/// hash, a user, a team or a model group; '' for none).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub day: String,
    pub grouped: String,
    pub totals: SpendTotals,
}

/// Which daily aggregates LiteLLM's daily activity reads: days from
/// `start` (inclusive) to `end` (exclusive), `YYYY-MM-DD`, and the
/// filters given.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub start: String,
    pub end: String,
    pub user_id: Option<String>,
    pub token_hash: Option<String>,
    pub model_group: Option<String>,
    /// Any of these teams (none: every team).
    pub team_ids: Vec<String>,
    /// None of these teams.
    pub excluded_team_ids: Vec<String>,
    /// Only calls made with a team's key.
    pub teams_only: bool,
}

/// One daily aggregate: a day and the key, user, team and model group
/// ('' for none) whose calls it sums.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    pub day: String,
    pub token_hash: String,
    pub user_id: String,
    pub team_id: String,
    pub model_group: String,
    pub totals: SpendTotals,
    /// Of `totals.requests`, those answered with an error status.
    pub failed: u64,
}

/// The spend-log rows carrying one request tag, and what they spent.
#[derive(Debug, Clone, PartialEq)]
pub struct TagSpend {
    pub tag: String,
    /// Spend-log rows that carry the tag.
    pub logs: u64,
    pub spend: f64,
}

/// What a group of requests spent and used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpendTotals {
    pub spend: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub requests: u64,
}

/// What [`Store::spend_totals`] sums by: one column of the daily aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendBy {
    Key,
    User,
    Team,
    Model,
}

impl SpendBy {
    fn column(self) -> &'static str {
        match self {
            SpendBy::Key => "token_hash",
            SpendBy::User => "user_id",
            SpendBy::Team => "team_id",
            SpendBy::Model => "model_group",
        }
    }
}

/// The sums of one aggregate query's row (`total`, the token counts and
/// `requests`).
fn totals(r: &sqlx::any::AnyRow) -> Result<SpendTotals, KeyError> {
    let count = |c: &str| -> Result<u64, KeyError> {
        Ok(u64::try_from(r.try_get::<i64, _>(c).map_err(store_error)?).unwrap_or(0))
    };
    Ok(SpendTotals {
        spend: r.try_get("total").map_err(store_error)?,
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
        requests: count("requests")?,
    })
}

/// A daily aggregate's key: the day (since the epoch), key, user, team and
/// model group ('' for none), borrowed from the batch's rows.
type DayKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str);

/// Totals a batch adds, summed per entity so each appears once per
/// statement. Every name is borrowed from the batch's rows; the maps use
/// the fast seeded hasher, as their keys are names the store holds.
#[derive(Default)]
struct Deltas<'a> {
    keys: HashMap<&'a str, f64>,
    /// Per key hash and model.
    key_models: HashMap<(&'a str, &'a str), f64>,
    users: HashMap<&'a str, f64>,
    teams: HashMap<&'a str, f64>,
    /// Per end user (the request's `user`), spent or not: its row is made
    /// the first time it is seen.
    end_users: HashMap<&'a str, f64>,
    days: HashMap<DayKey<'a>, DayDelta>,
}

/// What a batch adds to one daily aggregate.
#[derive(Default)]
struct DayDelta {
    prompt_tokens: i64,
    completion_tokens: i64,
    spend: f64,
    /// Top-level requests (a composite's sub-calls are not counted again).
    requests: i64,
    /// Those of them answered with an error status.
    failed: i64,
}

/// The budget periods a reset has just ended: whose, and the boundary
/// each ended at. A call that ended before its owner's boundary belongs to
/// the ended period, whose spend the reset set to zero, so it is not
/// added to the new period's total (its spend-log row is kept).
#[derive(Debug, Default)]
pub struct EndedPeriods(HashMap<(SpendOwner, String), SystemTime>);

impl EndedPeriods {
    /// Whether any period ended.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids of `owner`'s records whose period ended.
    pub fn of(&self, owner: SpendOwner) -> std::collections::HashSet<&str> {
        self.0
            .keys()
            .filter(|(o, _)| *o == owner)
            .map(|(_, id)| id.as_str())
            .collect()
    }

    /// Whether a call of `owner`'s that ended at `at` was in a period that
    /// has just ended.
    fn before_boundary(&self, owner: SpendOwner, id: &str, at: SystemTime) -> bool {
        !self.0.is_empty()
            && self
                .0
                .get(&(owner, id.to_owned()))
                .is_some_and(|boundary| at < *boundary)
    }
}

impl<'a> Deltas<'a> {
    /// The batch's totals; a row of a period in `ended` counts in the
    /// spend logs and daily report but not in its owner's total.
    fn of(batch: &'a [SpendRow], ended: &EndedPeriods) -> Self {
        let mut d = Deltas::default();
        for r in batch {
            let done = r.started_at + std::time::Duration::from_millis(r.latency_ms);
            let counts = |owner: SpendOwner, id: &str| !ended.before_boundary(owner, id, done);
            if let Some(h) = r.token_hash.as_deref()
                && counts(SpendOwner::Key, h)
            {
                *d.keys.entry(h).or_default() += r.spend;
                let model = r.budget_model.as_deref().unwrap_or(&r.model);
                *d.key_models.entry((h, model)).or_default() += r.spend + r.composite_cost;
            }
            if let Some(u) = r.user_id.as_deref()
                && counts(SpendOwner::User, u)
            {
                *d.users.entry(u).or_default() += r.spend;
            }
            // Every call counts toward the gateway's budget, kept on its
            // reserved user (no such row: nothing is updated).
            if r.user_id.as_deref() != Some(PROXY_BUDGET_USER)
                && counts(SpendOwner::User, PROXY_BUDGET_USER)
            {
                *d.users.entry(PROXY_BUDGET_USER).or_default() += r.spend;
            }
            if let Some(t) = r.team_id.as_deref()
                && counts(SpendOwner::Team, t)
            {
                *d.teams.entry(t).or_default() += r.spend;
            }
            // An end user is seen (its row made) whatever the period.
            if let Some(e) = r.end_user.as_deref() {
                let spend = if counts(SpendOwner::EndUser, e) {
                    r.spend
                } else {
                    0.0
                };
                *d.end_users.entry(e).or_default() += spend;
            }
            // Sub-calls are counted in their own rows; the daily report
            // counts requests once, by their top-level row.
            let key = (
                day_number(r.started_at),
                r.token_hash.as_deref().unwrap_or_default(),
                r.user_id.as_deref().unwrap_or_default(),
                r.team_id.as_deref().unwrap_or_default(),
                r.model_group.as_deref().unwrap_or(&r.model),
            );
            let e = d.days.entry(key).or_default();
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let top_level = r.parent_request_id.is_none();
            e.prompt_tokens = e.prompt_tokens.saturating_add(count(r.prompt_tokens));
            e.completion_tokens = e
                .completion_tokens
                .saturating_add(count(r.completion_tokens));
            e.spend += r.spend;
            e.requests += i64::from(top_level);
            e.failed += i64::from(top_level && r.status >= 400);
        }
        d
    }
}

/// `items` cut into runs of [`MAX_ROWS`] and then of powers of two, so that
/// a multi-row statement comes in at most ten lengths. Its text then recurs
/// from batch to batch and stays prepared in the connection's statement
/// cache: parsing a fresh 500-row statement cost SQLite more than writing
/// the rows.
pub(super) fn recurring_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = if rest.len() >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << rest.len().ilog2()
        };
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

/// The placeholders of a multi-row statement: `rows` tuples of `width`
/// values. PostgreSQL gets numbered ones (`$1, $2, ...`); SQLite gets
/// anonymous `?`s, because binding numbered ones looks each name up in a
/// list as long as the statement (quadratic: a 500-row insert spent more
/// time naming its parameters than writing its rows).
pub(super) fn placeholders(backend: Backend, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    let _ = write!(out, "${}", r * width + c + 1);
                }
            }
        }
        out.push(')');
    }
    out
}

impl Store {
    /// Writes a batch of spend-log rows and adds their spend to the key,
    /// user, team, per-model and daily totals, all in one transaction.
    pub async fn write_spend(&self, batch: &[SpendRow], keep_logs: bool) -> Result<(), KeyError> {
        self.write_spend_after(batch, keep_logs, &EndedPeriods::default())
            .await
    }

    /// [`Self::write_spend`] just after a reset ended the periods `ended`:
    /// a row of one of them is not added to its owner's new total.
    pub async fn write_spend_after(
        &self,
        batch: &[SpendRow],
        keep_logs: bool,
        ended: &EndedPeriods,
    ) -> Result<(), KeyError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        if keep_logs {
            // In the order they came, which is time order: each lands at the
            // end of the time and request-id indexes.
            for chunk in recurring_chunks(batch) {
                self.insert_logs(&mut tx, chunk).await?;
            }
            self.index_answers_when_due(&mut tx, batch.len()).await?;
        }
        let d = Deltas::of(batch, ended);
        self.add_totals(&mut tx, "keys", "token_hash", &d.keys)
            .await?;
        self.add_totals(&mut tx, "users", "user_id", &d.users)
            .await?;
        self.add_totals(&mut tx, "teams", "team_id", &d.teams)
            .await?;
        self.add_end_user_spend(&mut tx, &d.end_users, SystemTime::now())
            .await?;
        let mut models: Vec<_> = d
            .key_models
            .iter()
            .map(|((h, m), s)| (*h, *m, *s))
            .collect();
        models.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for chunk in recurring_chunks(&models) {
            let sql = format!(
                "INSERT INTO key_model_spend (token_hash, model, spend) VALUES {} \
                 ON CONFLICT (token_hash, model) DO UPDATE SET spend = key_model_spend.spend + excluded.spend",
                placeholders(self.backend(), chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for (h, m, s) in chunk {
                q = q.bind(*h).bind(*m).bind(*s);
            }
            q.execute(self.within(&mut tx)).await.map_err(store_error)?;
        }
        let mut days: Vec<_> = d.days.into_iter().collect();
        days.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for chunk in recurring_chunks(&days) {
            let sql = format!(
                "INSERT INTO daily_spend (day, token_hash, user_id, team_id, model_group, \
                 prompt_tokens, completion_tokens, spend, requests, failed) VALUES {} \
                 ON CONFLICT (day, token_hash, user_id, team_id, model_group) DO UPDATE SET \
                 prompt_tokens = daily_spend.prompt_tokens + excluded.prompt_tokens, \
                 completion_tokens = daily_spend.completion_tokens + excluded.completion_tokens, \
                 spend = daily_spend.spend + excluded.spend, \
                 requests = daily_spend.requests + excluded.requests, \
                 failed = daily_spend.failed + excluded.failed",
                placeholders(self.backend(), chunk.len(), 10)
            );
            let mut q = sqlx::query(&sql);
            for ((dd, h, u, t, g), e) in chunk {
                q = q
                    .bind(day_text(*dd))
                    .bind(*h)
                    .bind(*u)
                    .bind(*t)
                    .bind(*g)
                    .bind(e.prompt_tokens)
                    .bind(e.completion_tokens)
                    .bind(e.spend)
                    .bind(e.requests)
                    .bind(e.failed);
            }
            q.execute(self.within(&mut tx)).await.map_err(store_error)?;
        }
        self.commit(tx).await
    }

    /// Spend-log rows matching `filter`, newest first, at most `filter.limit`.
    pub async fn spend_logs(&self, filter: &SpendFilter) -> Result<Vec<SpendRow>, KeyError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut n = 0;
        for (column, value) in [
            ("token_hash", &filter.token_hash),
            ("user_id", &filter.user_id),
            ("team_id", &filter.team_id),
        ] {
            if let Some(v) = value {
                n += 1;
                texts.push(v.clone());
                clauses.push(format!("{column} = ${n}"));
            }
        }
        if let Some(id) = &filter.request_id {
            n += 1;
            texts.push(id.clone());
            clauses.push(answers::matching_id(self.backend(), n));
        }
        let mut times = Vec::new();
        if let Some(start) = filter.start {
            n += 1;
            times.push(to_ms(start));
            clauses.push(format!("started_at >= ${n}"));
        }
        if let Some(end) = filter.end {
            n += 1;
            times.push(to_ms(end));
            clauses.push(format!("started_at < ${n}"));
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {SPEND_COLUMNS} FROM spend_logs{filter_sql} ORDER BY started_at DESC, id DESC LIMIT ${}",
            n + 1
        );
        let mut q = sqlx::query(&sql);
        for t in texts {
            q = q.bind(t);
        }
        for t in times {
            q = q.bind(t);
        }
        let found = q
            .bind(i64::from(filter.limit))
            .fetch_all(self.pool())
            .await
            .map_err(store_error)?;
        found.iter().map(rows::spend_row).collect()
    }

    /// Spend per day and key, user, team or model group (`by`) between
    /// `start` (inclusive) and `end` (exclusive) days, `YYYY-MM-DD`, in
    /// order of day and name.
    pub async fn spend_report(
        &self,
        by: SpendBy,
        start: &str,
        end: &str,
    ) -> Result<Vec<ReportRow>, KeyError> {
        let column = by.column();
        let sql = format!(
            "SELECT day, {column} AS grouped, SUM(spend) AS total, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(requests) AS BIGINT) AS requests \
             FROM daily_spend WHERE day >= $1 AND day < $2 \
             GROUP BY day, {column} ORDER BY day, {column}"
        );
        let found = sqlx::query(&sql)
            .bind(start)
            .bind(end)
            .fetch_all(self.pool())
            .await
            .map_err(store_error)?;
        found
            .iter()
            .map(|r| {
                Ok(ReportRow {
                    day: r.try_get("day").map_err(store_error)?,
                    grouped: r.try_get("grouped").map_err(store_error)?,
                    totals: totals(r)?,
                })
            })
            .collect()
    }

    /// One page of the daily aggregates `filter` matches, newest day
    /// first, and how many match in all (LiteLLM's daily activity pages
    /// through these rows, not through days).
    pub async fn daily_activity(
        &self,
        filter: &ActivityFilter,
        page: super::ListPage,
    ) -> Result<(Vec<ActivityRow>, u64), KeyError> {
        let mut on = super::principals::Conditions::default();
        on.add("day >= {}", &filter.start);
        on.add("day < {}", &filter.end);
        on.equal("user_id", filter.user_id.as_ref());
        on.equal("token_hash", filter.token_hash.as_ref());
        on.equal("model_group", filter.model_group.as_ref());
        on.any_of("team_id", &filter.team_ids);
        on.none_of("team_id", &filter.excluded_team_ids);
        if filter.teams_only {
            on.literal("team_id <> ''".to_owned());
        }
        let total = on.count(self, "daily_spend").await?;
        let sql = format!(
            "SELECT day, token_hash, user_id, team_id, model_group, spend AS total, \
             prompt_tokens, completion_tokens, requests, failed FROM daily_spend{} \
             ORDER BY day DESC, model_group, token_hash, user_id, team_id{}",
            on.sql(),
            on.page_sql()
        );
        let found = on.rows(self, &sql, page).await?;
        let text = |r: &sqlx::any::AnyRow, c: &str| r.try_get::<String, _>(c).map_err(store_error);
        let rows = found
            .iter()
            .map(|r| {
                Ok(ActivityRow {
                    day: text(r, "day")?,
                    token_hash: text(r, "token_hash")?,
                    user_id: text(r, "user_id")?,
                    team_id: text(r, "team_id")?,
                    model_group: text(r, "model_group")?,
                    totals: totals(r)?,
                    failed: u64::try_from(r.try_get::<i64, _>("failed").map_err(store_error)?)
                        .unwrap_or(0),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok((rows, total))
    }

    /// Spend per day between `start` (inclusive) and `end` (exclusive)
    /// days, of one key when `token_hash` is given, oldest first.
    pub async fn spend_per_day(
        &self,
        start: &str,
        end: &str,
        token_hash: Option<&str>,
    ) -> Result<Vec<(String, f64)>, KeyError> {
        let of_key = if token_hash.is_some() {
            " AND token_hash = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT day, SUM(spend) AS total FROM daily_spend \
             WHERE day >= $1 AND day < $2{of_key} GROUP BY day ORDER BY day"
        );
        let mut q = sqlx::query(&sql).bind(start).bind(end);
        if let Some(hash) = token_hash {
            q = q.bind(hash);
        }
        let found = q.fetch_all(self.pool()).await.map_err(store_error)?;
        found
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("day").map_err(store_error)?,
                    r.try_get("total").map_err(store_error)?,
                ))
            })
            .collect()
    }

    /// The `limit` keys, users, teams or model groups that spent most
    /// between `start` (inclusive) and `end` (exclusive) days, highest
    /// first; requests that had none (no user, no team) are left out.
    pub async fn spend_totals(
        &self,
        by: SpendBy,
        start: &str,
        end: &str,
        limit: u32,
    ) -> Result<Vec<(String, SpendTotals)>, KeyError> {
        let column = by.column();
        let sql = format!(
            "SELECT {column} AS grouped, SUM(spend) AS total, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(requests) AS BIGINT) AS requests \
             FROM daily_spend WHERE day >= $1 AND day < $2 AND {column} <> '' \
             GROUP BY {column} ORDER BY total DESC, {column} LIMIT $3"
        );
        let found = sqlx::query(&sql)
            .bind(start)
            .bind(end)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(store_error)?;
        found
            .iter()
            .map(|r| Ok((r.try_get("grouped").map_err(store_error)?, totals(r)?)))
            .collect()
    }

    /// Spend per request tag over the spend-log rows started in
    /// `[start, end)`: each tag's rows and their spend, highest spend first.
    /// A composite request's tags are on its sub-calls' rows too, which
    /// carry its spend.
    pub async fn spend_by_tag(
        &self,
        start: SystemTime,
        end: SystemTime,
        limit: u32,
    ) -> Result<Vec<TagSpend>, KeyError> {
        let each_tag = match self.backend() {
            Backend::Sqlite => "json_each(s.tags) AS t",
            Backend::Postgres => "json_array_elements_text(CAST(s.tags AS json)) AS t(value)",
        };
        let sql = format!(
            "SELECT t.value AS tag, COUNT(*) AS logs, SUM(s.spend) AS total \
             FROM spend_logs s, {each_tag} \
             WHERE s.tags <> '[]' AND s.started_at >= $1 AND s.started_at < $2 \
             GROUP BY t.value ORDER BY total DESC, t.value LIMIT $3"
        );
        let found = sqlx::query(&sql)
            .bind(to_ms(start))
            .bind(to_ms(end))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(store_error)?;
        found
            .iter()
            .map(|r| {
                let logs: i64 = r.try_get("logs").map_err(store_error)?;
                Ok(TagSpend {
                    tag: r.try_get("tag").map_err(store_error)?,
                    logs: u64::try_from(logs).unwrap_or(0),
                    spend: r.try_get("total").map_err(store_error)?,
                })
            })
            .collect()
    }

    /// Sets one key's, user's or team's spend in its current period: an
    /// administrator's correction (LiteLLM's `spend` on the update routes;
    /// `0` gives a spent budget back). Rows still waiting in the writer are
    /// added when they land.
    pub async fn set_spend(&self, owner: SpendOwner, id: &str, spend: f64) -> Result<(), KeyError> {
        let (table, column) = owner.table_and_id();
        let sql = format!("UPDATE {table} SET spend = $2 WHERE {column} = $1");
        sqlx::query(&sql)
            .bind(id)
            .bind(spend)
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Forgets a key's spend on each model (`model_max_budget`'s counts),
    /// so those budgets start again.
    pub async fn clear_model_spend(&self, token_hash: &str) -> Result<(), KeyError> {
        sqlx::query("DELETE FROM key_model_spend WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Sets the spend of every record of `owner`'s kind to zero, in one
    /// transaction; the ids of them all, so that their live counters can
    /// follow.
    pub async fn reset_all_spend(&self, owner: SpendOwner) -> Result<Vec<String>, KeyError> {
        let (table, column) = owner.table_and_id();
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        let ids: Vec<String> = sqlx::query_scalar(&format!("SELECT {column} FROM {table}"))
            .fetch_all(self.within(&mut tx))
            .await
            .map_err(store_error)?;
        sqlx::query(&format!("UPDATE {table} SET spend = 0"))
            .execute(self.within(&mut tx))
            .await
            .map_err(store_error)?;
        self.commit(tx).await?;
        Ok(ids)
    }

    /// Resets the spend of every key, user and team whose `budget_reset_at`
    /// has passed and moves it on to the period's next boundary after `now`
    /// on `clock` ([`Limits::budget_reset_after`]). Returns the periods it
    /// ended (so cached records can be dropped, and calls of those periods
    /// still to be written kept out of the new ones).
    pub async fn reset_due_budgets(
        &self,
        now: SystemTime,
        clock: &ResetClock,
    ) -> Result<EndedPeriods, KeyError> {
        let mut ended = EndedPeriods::default();
        for owner in [
            SpendOwner::Key,
            SpendOwner::User,
            SpendOwner::Team,
            SpendOwner::EndUser,
        ] {
            let (table, id) = owner.table_and_id();
            // An end user's period is its budget's.
            let sql = if owner == SpendOwner::EndUser {
                "SELECT e.user_id AS id, COALESCE(b.limits, '{}') AS limits, e.budget_reset_at \
                 FROM end_users e LEFT JOIN budgets b ON b.budget_id = e.budget_id \
                 WHERE e.budget_reset_at IS NOT NULL AND e.budget_reset_at <= $1 LIMIT 1000"
                    .to_owned()
            } else {
                format!(
                    "SELECT {id} AS id, limits, budget_reset_at FROM {table} \
                     WHERE budget_reset_at IS NOT NULL AND budget_reset_at <= $1 LIMIT 1000"
                )
            };
            let due = sqlx::query(&sql)
                .bind(to_ms(now))
                .fetch_all(self.pool())
                .await
                .map_err(store_error)?;
            for row in due {
                let id_value: String = row.try_get("id").map_err(store_error)?;
                let limits: String = row.try_get("limits").map_err(store_error)?;
                let at: i64 = row.try_get("budget_reset_at").map_err(store_error)?;
                let limits: Limits = serde_json::from_str(&limits).unwrap_or_default();
                let next = limits.budget_reset_after(now, clock);
                if self.reset_one(table, id, &id_value, at, next).await? {
                    ended.0.insert((owner, id_value), from_ms(at));
                }
            }
        }
        Ok(ended)
    }

    /// Resets one entity if nobody else did first (its reset time is still `at`).
    async fn reset_one(
        &self,
        table: &str,
        id: &str,
        id_value: &str,
        at: i64,
        next: Option<SystemTime>,
    ) -> Result<bool, KeyError> {
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        let sql = format!(
            "UPDATE {table} SET spend = 0, budget_reset_at = $3 WHERE {id} = $1 AND budget_reset_at = $2"
        );
        let done = sqlx::query(&sql)
            .bind(id_value)
            .bind(at)
            .bind(next.map(to_ms))
            .execute(self.within(&mut tx))
            .await
            .map_err(store_error)?;
        if table == "keys" && done.rows_affected() > 0 {
            sqlx::query("DELETE FROM key_model_spend WHERE token_hash = $1")
                .bind(id_value)
                .execute(self.within(&mut tx))
                .await
                .map_err(store_error)?;
        }
        self.commit(tx).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes at most `batch` spend-log rows older than `cutoff`; how many.
    pub async fn delete_spend_before(
        &self,
        cutoff: SystemTime,
        batch: u32,
    ) -> Result<u64, KeyError> {
        match self.backend() {
            Backend::Sqlite => self.delete_sqlite_spend_before(cutoff, batch).await,
            Backend::Postgres => {
                self.delete_oldest("spend_logs", "started_at", cutoff, batch)
                    .await
            }
        }
    }

    /// Deletes at most `batch` rows of `table` whose `time_column` is before
    /// `cutoff`, oldest first (retention in bounded batches); how many.
    /// `table` and `time_column` are this module's constants, never input.
    pub(super) async fn delete_oldest(
        &self,
        table: &'static str,
        time_column: &'static str,
        cutoff: SystemTime,
        batch: u32,
    ) -> Result<u64, KeyError> {
        let sql = format!(
            "DELETE FROM {table} WHERE id IN ({})",
            oldest_ids(table, time_column)
        );
        let done = sqlx::query(&sql)
            .bind(to_ms(cutoff))
            .bind(i64::from(batch))
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}

/// The ids of the oldest `$2` rows of `table` whose `time_column` is
/// before `$1`: what one retention batch deletes.
pub(super) fn oldest_ids(table: &str, time_column: &str) -> String {
    format!("SELECT id FROM {table} WHERE {time_column} < $1 ORDER BY {time_column} LIMIT $2")
}

/// Whose spend total a change is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpendOwner {
    Key,
    User,
    Team,
    EndUser,
}

impl SpendOwner {
    /// Its table and id column (this module's constants, never input).
    fn table_and_id(self) -> (&'static str, &'static str) {
        match self {
            Self::Key => ("keys", "token_hash"),
            Self::User => ("users", "user_id"),
            Self::Team => ("teams", "team_id"),
            Self::EndUser => ("end_users", "user_id"),
        }
    }
}

impl Store {
    async fn insert_logs(&self, tx: &mut Transaction, chunk: &[SpendRow]) -> Result<(), KeyError> {
        let sql = format!(
            "INSERT INTO spend_logs ({SPEND_COLUMNS}) VALUES {}",
            placeholders(self.backend(), chunk.len(), 19)
        );
        let mut q = sqlx::query(&sql);
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for r in chunk {
            q = q
                .bind(r.request_id.as_str())
                .bind(r.parent_request_id.as_deref())
                .bind(r.token_hash.as_deref())
                .bind(r.user_id.as_deref())
                .bind(r.team_id.as_deref())
                .bind(r.model.as_str())
                .bind(r.model_group.as_deref())
                .bind(r.deployment.as_deref())
                .bind(r.profile.as_deref())
                .bind(int(r.prompt_tokens))
                .bind(int(r.completion_tokens))
                .bind(r.spend)
                .bind(i64::from(r.status))
                .bind(i64::from(r.cache_hit))
                .bind(to_ms(r.started_at))
                .bind(int(r.latency_ms))
                .bind(json(&r.tags))
                .bind(r.end_user.as_deref())
                .bind(r.response_id.as_deref());
        }
        q.execute(self.within(tx)).await.map_err(store_error)?;
        Ok(())
    }

    /// `UPDATE table SET spend = spend + delta` for every entity at once.
    async fn add_totals(
        &self,
        tx: &mut Transaction,
        table: &str,
        id: &str,
        deltas: &HashMap<&str, f64>,
    ) -> Result<(), KeyError> {
        let mut entries: Vec<_> = deltas.iter().filter(|(_, s)| **s != 0.0).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for chunk in recurring_chunks(&entries) {
            let sql = format!(
                "UPDATE {table} SET spend = {table}.spend + v.column2 FROM (VALUES {}) AS v \
                 WHERE {table}.{id} = v.column1",
                placeholders(self.backend(), chunk.len(), 2)
            );
            let mut q = sqlx::query(&sql);
            for (k, s) in chunk {
                q = q.bind(**k).bind(**s);
            }
            q.execute(self.within(tx)).await.map_err(store_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_and_anonymous_for_sqlite() {
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn chunks_come_in_few_lengths_and_cover_every_row_in_order() {
        let rows: Vec<usize> = (0..1300).collect();
        let lengths: Vec<usize> = recurring_chunks(&rows).map(<[usize]>::len).collect();
        assert_eq!(lengths, [512, 512, 256, 16, 4]);
        let again: Vec<usize> = recurring_chunks(&rows).flatten().copied().collect();
        assert_eq!(again, rows);
        assert_eq!(recurring_chunks::<u8>(&[]).count(), 0);
    }
}
