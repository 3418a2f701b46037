//! Finding spend-log rows by the answer's own id (`chatcmpl-...`) on SQLite.
//!
//! Answer ids are random, so an index on them takes every row's insert at a
//! random place: each row walks a cold branch of a large B-tree, and each
//! commit writes every index page it touched to the write-ahead log whole.
//! It was the costliest part of a spend row. Instead, rows go into the log
//! unindexed by answer id, and the spend writer moves them into
//! `spend_log_answers` in sorted runs of [`INDEX_EVERY`] rows, which touch
//! each index page once per run. `spend_log_answers_through` holds the
//! highest log id indexed; rows above it (under one run and a batch) are found
//! by their id range, so a lookup never misses a row, indexed yet or not.
//!
//! PostgreSQL keeps an ordinary index on the column (migration 7): it logs
//! an insert, not a page, and its instances' rows commit out of id order,
//! which a high-water mark cannot follow.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::spend::oldest_ids;
use super::{Backend, Store, Transaction, store_error};
use crate::keys::KeyError;
use crate::keys::time::to_ms;

/// Rows waiting that make the next run due. A lookup scans the rows not
/// yet indexed: fewer than this many plus one batch of the writer's, a few
/// milliseconds' work.
pub const INDEX_EVERY: u64 = 50_000;

/// Indexes the rows above the high-water mark, in answer-id order, and
/// raises the mark; within the writer's transaction, so no row is indexed
/// twice or skipped.
const INDEX_RUN: [&str; 2] = [
    "INSERT OR IGNORE INTO spend_log_answers (response_id, log_id) \
     SELECT response_id, id FROM spend_logs \
     WHERE id > (SELECT through FROM spend_log_answers_through) AND response_id IS NOT NULL \
     ORDER BY response_id",
    "UPDATE spend_log_answers_through SET through = (SELECT COALESCE(MAX(id), 0) FROM spend_logs)",
];

/// The `WHERE` condition for rows whose request id, parent request id or
/// answer id is the text bound as `$n`.
pub(super) fn matching_id(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => {
            format!("(request_id = ${n} OR parent_request_id = ${n} OR response_id = ${n})")
        }
        // One indexed search per way of matching: as one `OR`, SQLite's
        // planner walks the time index over the whole log instead.
        Backend::Sqlite => format!(
            "id IN (SELECT id FROM spend_logs WHERE request_id = ${n} \
             UNION ALL SELECT id FROM spend_logs WHERE parent_request_id = ${n} \
             UNION ALL SELECT log_id FROM spend_log_answers WHERE response_id = ${n} \
             UNION ALL SELECT id FROM spend_logs \
             WHERE id > (SELECT through FROM spend_log_answers_through) AND response_id = ${n})"
        ),
    }
}

impl Store {
    /// Counts `rows` just written to the log and, once [`INDEX_EVERY`]
    /// wait, indexes them within `tx` (SQLite; PostgreSQL indexes each row).
    pub(super) async fn index_answers_when_due(
        &self,
        tx: &mut Transaction,
        rows: usize,
    ) -> Result<(), KeyError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let rows = u64::try_from(rows).unwrap_or(u64::MAX);
        let waiting = self.answers_waiting.fetch_add(rows, Ordering::Relaxed);
        if waiting.saturating_add(rows) < INDEX_EVERY {
            return Ok(());
        }
        self.index_answers(tx).await?;
        self.answers_waiting.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Starts the count of rows waiting to be indexed from what an earlier
    /// process left, so the rows a lookup scans stay within one run's worth
    /// and a batch across restarts.
    pub(super) async fn count_unindexed_answers(&self) -> Result<(), KeyError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let waiting: i64 = sqlx::query_scalar(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM spend_logs) - through \
             FROM spend_log_answers_through",
        )
        .fetch_one(self.pool())
        .await
        .map_err(store_error)?;
        self.answers_waiting
            .store(u64::try_from(waiting).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    async fn index_answers(&self, tx: &mut Transaction) -> Result<(), KeyError> {
        for statement in INDEX_RUN {
            sqlx::query(statement)
                .execute(self.within(tx))
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Indexes every spend row's answer id now, rather than at the writer's
    /// next run (SQLite; nothing to do on PostgreSQL).
    pub async fn index_answer_ids(&self) -> Result<(), KeyError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        self.index_answers(&mut tx).await?;
        self.answers_waiting.store(0, Ordering::Relaxed);
        self.commit(tx).await
    }

    /// SQLite's retention batch: the oldest `batch` rows before `cutoff`
    /// and their entries in the answer-id table, in one transaction; how
    /// many rows.
    pub(super) async fn delete_sqlite_spend_before(
        &self,
        cutoff: SystemTime,
        batch: u32,
    ) -> Result<u64, KeyError> {
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        // Both statements select the same rows: one transaction, one snapshot.
        let oldest = oldest_ids("spend_logs", "started_at");
        let answers = format!(
            "DELETE FROM spend_log_answers WHERE (response_id, log_id) IN \
             (SELECT response_id, id FROM spend_logs WHERE id IN ({oldest}) AND response_id IS NOT NULL)"
        );
        let rows = format!("DELETE FROM spend_logs WHERE id IN ({oldest})");
        // What the last statement deleted: the log's rows.
        let mut deleted = 0;
        for sql in [answers, rows] {
            deleted = sqlx::query(&sql)
                .bind(to_ms(cutoff))
                .bind(i64::from(batch))
                .execute(self.within(&mut tx))
                .await
                .map_err(store_error)?
                .rows_affected();
        }
        self.commit(tx).await?;
        Ok(deleted)
    }
}
