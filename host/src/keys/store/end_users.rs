//! End users (LiteLLM's customers) and the budgets they are linked to. An
//! end user is read with its budget in one query, for the end-user cache;
//! its spend is added by the spend writer, which makes its row the first
//! time it spends ([`Store::add_end_user_spend`]).

use std::time::SystemTime;

use foldhash::HashMap;
use sqlx::any::AnyRow;

use super::principals::{ListPage, unique_violation};
use super::rows::{budget, end_user, json, ms};
use super::spend::{placeholders, recurring_chunks};
use super::{Store, Transaction, bind_present, store_error, unchanged_since, written_at};
use crate::keys::KeyError;
use crate::keys::model::{BudgetRecord, EndUserRecord};
use crate::keys::time::to_ms;

/// An end user's columns and its budget's, as [`end_user`] reads them
/// (the budget's under `b_`).
const END_USER_SELECT: &str = "SELECT e.user_id, e.alias, e.blocked, e.budget_id, e.spend, \
     e.budget_reset_at, e.default_model, e.allowed_model_region, e.created_at, e.updated_at, \
     b.limits AS b_limits, b.soft_budget AS b_soft_budget, b.created_at AS b_created_at, \
     b.updated_at AS b_updated_at \
     FROM end_users e LEFT JOIN budgets b ON b.budget_id = e.budget_id";

/// The columns of `budgets`, in the order [`budget`] reads them.
const BUDGET_COLUMNS: &str = "budget_id, limits, soft_budget, created_at, updated_at";

impl Store {
    /// An end user with its budget.
    pub async fn end_user(&self, user_id: &str) -> Result<Option<EndUserRecord>, KeyError> {
        let sql = format!("{END_USER_SELECT} WHERE e.user_id = $1");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(store_error)?;
        row.as_ref().map(end_user).transpose()
    }

    /// Stores a new end user; an id already in use is refused.
    pub async fn insert_end_user(&self, e: &EndUserRecord) -> Result<(), KeyError> {
        sqlx::query(
            "INSERT INTO end_users (user_id, alias, blocked, budget_id, spend, budget_reset_at, \
             default_model, allowed_model_region, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.user_id.clone())
        .bind(e.alias.clone())
        .bind(i64::from(e.blocked))
        .bind(e.budget_id.clone())
        .bind(e.spend)
        .bind(ms(e.budget_reset_at))
        .bind(e.default_model.clone())
        .bind(e.allowed_model_region.clone())
        .bind(to_ms(e.created_at))
        .bind(to_ms(e.updated_at))
        .execute(self.pool())
        .await
        .map_err(|err| unique_violation(err, "user_id", "a customer with this user_id"))?;
        Ok(())
    }

    /// Writes every field of `e` except its spend; whether it existed.
    /// With `read_at`, only while the row is unchanged since it was read
    /// (see `Store::update_key`).
    pub async fn update_end_user(
        &self,
        e: &EndUserRecord,
        read_at: Option<SystemTime>,
    ) -> Result<bool, KeyError> {
        let sql = unchanged_since(
            "UPDATE end_users SET alias = $2, blocked = $3, budget_id = $4, budget_reset_at = $5, \
             default_model = $6, allowed_model_region = $7, updated_at = $8 WHERE user_id = $1",
            9,
            read_at,
        );
        let query = sqlx::query(&sql)
            .bind(e.user_id.clone())
            .bind(e.alias.clone())
            .bind(i64::from(e.blocked))
            .bind(e.budget_id.clone())
            .bind(ms(e.budget_reset_at))
            .bind(e.default_model.clone())
            .bind(e.allowed_model_region.clone())
            .bind(written_at(e.updated_at, read_at));
        let query = bind_present(query, read_at.map(to_ms));
        let done = query.execute(self.pool()).await.map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Blocks or unblocks end users, making the rows of those not seen yet
    /// (a block must hold before an end user's first request).
    pub async fn set_end_users_blocked(
        &self,
        ids: &[String],
        blocked: bool,
        now: SystemTime,
    ) -> Result<(), KeyError> {
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        for chunk in recurring_chunks(ids) {
            let sql = format!(
                "INSERT INTO end_users (user_id, blocked, created_at, updated_at) VALUES {} \
                 ON CONFLICT (user_id) DO UPDATE SET blocked = excluded.blocked, \
                 updated_at = excluded.updated_at",
                placeholders(self.backend(), chunk.len(), 4)
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q
                    .bind(id.as_str())
                    .bind(i64::from(blocked))
                    .bind(to_ms(now))
                    .bind(to_ms(now));
            }
            q.execute(self.within(&mut tx)).await.map_err(store_error)?;
        }
        self.commit(tx).await
    }

    /// Deletes end users; how many existed.
    pub async fn delete_end_users(&self, ids: &[String]) -> Result<u64, KeyError> {
        let mut deleted = 0;
        for id in ids {
            let done = sqlx::query("DELETE FROM end_users WHERE user_id = $1")
                .bind(id.as_str())
                .execute(self.pool())
                .await
                .map_err(store_error)?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }

    /// One page of end users, oldest first, and how many there are.
    pub async fn list_end_users(
        &self,
        page: ListPage,
    ) -> Result<(Vec<EndUserRecord>, u64), KeyError> {
        let sql = format!("{END_USER_SELECT} ORDER BY e.created_at, e.user_id LIMIT $1 OFFSET $2");
        self.page_of("end_users", &sql, page, end_user).await
    }

    /// One page of `select` (ordered, `$1` and `$2` its limit and offset),
    /// each row read by `read`, and how many rows `table` has.
    async fn page_of<T>(
        &self,
        table: &'static str,
        select: &str,
        page: ListPage,
        read: fn(&AnyRow) -> Result<T, KeyError>,
    ) -> Result<(Vec<T>, u64), KeyError> {
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.pool())
            .await
            .map_err(store_error)?;
        let rows = sqlx::query(select)
            .bind(i64::from(page.size))
            .bind(page.offset())
            .fetch_all(self.pool())
            .await
            .map_err(store_error)?;
        let found = rows.iter().map(read).collect::<Result<_, _>>()?;
        Ok((found, u64::try_from(total).unwrap_or(0)))
    }

    /// Adds each end user's spend of a batch, making the rows of end users
    /// seen for the first time.
    pub(super) async fn add_end_user_spend(
        &self,
        tx: &mut Transaction,
        deltas: &HashMap<&str, f64>,
        now: SystemTime,
    ) -> Result<(), KeyError> {
        let mut entries: Vec<_> = deltas.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for chunk in recurring_chunks(&entries) {
            let sql = format!(
                "INSERT INTO end_users (user_id, spend, created_at, updated_at) VALUES {} \
                 ON CONFLICT (user_id) DO UPDATE SET spend = end_users.spend + excluded.spend",
                placeholders(self.backend(), chunk.len(), 4)
            );
            let mut q = sqlx::query(&sql);
            for (id, spend) in chunk {
                q = q.bind(**id).bind(**spend).bind(to_ms(now)).bind(to_ms(now));
            }
            q.execute(self.within(tx)).await.map_err(store_error)?;
        }
        Ok(())
    }

    /// Links an end user with no budget (or one linked to a budget since
    /// deleted) to `budget_id`, the default budget, making its row if it
    /// has none; one linked to a budget meanwhile keeps it, and nothing is
    /// linked to a budget that no longer exists.
    pub async fn link_end_user_budget(
        &self,
        user_id: &str,
        budget_id: &str,
        reset_at: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<(), KeyError> {
        sqlx::query(
            "INSERT INTO end_users (user_id, budget_id, budget_reset_at, created_at, updated_at) \
             SELECT $1, b.budget_id, $3, $4, $4 FROM budgets b WHERE b.budget_id = $2 \
             ON CONFLICT (user_id) DO UPDATE SET \
             budget_id = excluded.budget_id, budget_reset_at = excluded.budget_reset_at \
             WHERE end_users.budget_id IS NULL OR NOT EXISTS \
             (SELECT 1 FROM budgets o WHERE o.budget_id = end_users.budget_id)",
        )
        .bind(user_id)
        .bind(budget_id)
        .bind(ms(reset_at))
        .bind(to_ms(now))
        .execute(self.pool())
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// Moves the reset time of every end user linked to `budget_id` (after
    /// its period changed).
    pub async fn reschedule_end_users(
        &self,
        budget_id: &str,
        reset_at: Option<SystemTime>,
    ) -> Result<(), KeyError> {
        sqlx::query("UPDATE end_users SET budget_reset_at = $2 WHERE budget_id = $1")
            .bind(budget_id)
            .bind(ms(reset_at))
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// A budget.
    pub async fn budget(&self, budget_id: &str) -> Result<Option<BudgetRecord>, KeyError> {
        let sql = format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE budget_id = $1");
        let row = sqlx::query(&sql)
            .bind(budget_id)
            .fetch_optional(self.pool())
            .await
            .map_err(store_error)?;
        row.as_ref().map(budget).transpose()
    }

    /// Stores a new budget; an id already in use is refused.
    pub async fn insert_budget(&self, b: &BudgetRecord) -> Result<(), KeyError> {
        let soft = optional_double(b.soft_budget, 5);
        let sql = format!("INSERT INTO budgets ({BUDGET_COLUMNS}) VALUES ($1, $2, {soft}, $3, $4)");
        let query = sqlx::query(&sql)
            .bind(b.budget_id.clone())
            .bind(json(&b.limits))
            .bind(to_ms(b.created_at))
            .bind(to_ms(b.updated_at));
        bind_present(query, b.soft_budget)
            .execute(self.pool())
            .await
            .map_err(|e| unique_violation(e, "budget_id", "a budget with this budget_id"))?;
        Ok(())
    }

    /// Writes a budget's limits, only while the row is unchanged since it
    /// was read at `read_at` (see `Store::update_key`); false otherwise,
    /// or when it is gone.
    pub async fn update_budget(
        &self,
        b: &BudgetRecord,
        read_at: SystemTime,
    ) -> Result<bool, KeyError> {
        let soft = optional_double(b.soft_budget, 5);
        let sql = format!(
            "UPDATE budgets SET limits = $2, soft_budget = {soft}, updated_at = $3 \
             WHERE budget_id = $1 AND updated_at = $4"
        );
        let query = sqlx::query(&sql)
            .bind(b.budget_id.clone())
            .bind(json(&b.limits))
            .bind(written_at(b.updated_at, Some(read_at)))
            .bind(to_ms(read_at));
        let done = bind_present(query, b.soft_budget)
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a budget and unlinks the end users linked to it; whether it
    /// existed.
    pub async fn delete_budget(&self, budget_id: &str) -> Result<bool, KeyError> {
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        sqlx::query(
            "UPDATE end_users SET budget_id = NULL, budget_reset_at = NULL WHERE budget_id = $1",
        )
        .bind(budget_id)
        .execute(self.within(&mut tx))
        .await
        .map_err(store_error)?;
        let done = sqlx::query("DELETE FROM budgets WHERE budget_id = $1")
            .bind(budget_id)
            .execute(self.within(&mut tx))
            .await
            .map_err(store_error)?;
        self.commit(tx).await?;
        Ok(done.rows_affected() > 0)
    }

    /// One page of budgets, oldest first, and how many there are.
    pub async fn list_budgets(&self, page: ListPage) -> Result<(Vec<BudgetRecord>, u64), KeyError> {
        let sql = format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY created_at, budget_id LIMIT $1 OFFSET $2"
        );
        self.page_of("budgets", &sql, page, budget).await
    }
}

/// The SQL of an optional double: parameter `$n` when there is a value
/// (bound last by the caller), else `NULL` written out. sqlx 0.8's Any
/// driver declares a bound NULL double to PostgreSQL as a `real`, and the
/// statement cached with that declaration then refuses a later `double
/// precision` value on the same connection ("incorrect binary data
/// format"): so no NULL double is ever bound.
fn optional_double(value: Option<f64>, n: usize) -> String {
    match value {
        Some(_) => format!("${n}"),
        None => "NULL".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::scratch_store;
    use super::*;
    use crate::keys::Limits;

    #[tokio::test]
    async fn an_end_user_is_read_with_the_budget_it_is_linked_to() {
        let (_scratch, store) = scratch_store("end-user-budget").await;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tier = BudgetRecord {
            budget_id: "tier-1".into(),
            limits: Limits {
                max_budget: Some(2.5),
                ..Limits::default()
            },
            soft_budget: Some(2.0),
            created_at: now,
            updated_at: now,
        };
        store.insert_budget(&tier).await.unwrap();
        let mut ada = EndUserRecord::new("ada".into(), now);
        ada.budget_id = Some("tier-1".into());
        store.insert_end_user(&ada).await.unwrap();

        let read = store.end_user("ada").await.unwrap().unwrap();
        assert_eq!(read.budget, Some(tier));
        assert!(store.end_user("bob").await.unwrap().is_none());
        let again = store.insert_end_user(&ada).await.unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");

        assert!(store.delete_budget("tier-1").await.unwrap());
        let unlinked = store.end_user("ada").await.unwrap().unwrap();
        assert_eq!((unlinked.budget_id, unlinked.budget), (None, None));
    }

    #[tokio::test]
    async fn the_default_budget_links_only_end_users_without_a_live_budget() {
        let (_scratch, store) = scratch_store("end-user-default-link").await;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let budget = |id: &str| BudgetRecord {
            budget_id: id.into(),
            limits: Limits::default(),
            soft_budget: None,
            created_at: now,
            updated_at: now,
        };
        store.insert_budget(&budget("default")).await.unwrap();
        store.insert_budget(&budget("own")).await.unwrap();
        let linked = |id: &str| {
            let store = store.clone();
            let id = id.to_owned();
            async move { store.end_user(&id).await.unwrap().and_then(|e| e.budget_id) }
        };
        // A budget that does not exist links nothing.
        store
            .link_end_user_budget("new", "gone", None, now)
            .await
            .unwrap();
        assert!(store.end_user("new").await.unwrap().is_none());
        store
            .link_end_user_budget("new", "default", None, now)
            .await
            .unwrap();
        assert_eq!(linked("new").await.as_deref(), Some("default"));
        // One with a budget of its own keeps it.
        let mut own = EndUserRecord::new("owner".into(), now);
        own.budget_id = Some("own".into());
        store.insert_end_user(&own).await.unwrap();
        store
            .link_end_user_budget("owner", "default", None, now)
            .await
            .unwrap();
        assert_eq!(linked("owner").await.as_deref(), Some("own"));
        // One left linked to a budget since deleted is linked again.
        let mut dangling = EndUserRecord::new("dangling".into(), now);
        dangling.budget_id = Some("deleted-meanwhile".into());
        store.insert_end_user(&dangling).await.unwrap();
        store
            .link_end_user_budget("dangling", "default", None, now)
            .await
            .unwrap();
        assert_eq!(linked("dangling").await.as_deref(), Some("default"));
    }

    #[tokio::test]
    async fn spend_makes_the_row_of_an_end_user_seen_first_and_adds_to_a_known_one() {
        let (_scratch, store) = scratch_store("end-user-spend").await;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        store
            .set_end_users_blocked(&["known".into()], true, now)
            .await
            .unwrap();
        let deltas: HashMap<&str, f64> = [("known", 0.25), ("new", 0.5)].into_iter().collect();
        for _ in 0..2 {
            let mut tx = store.pool().begin().await.unwrap();
            store
                .add_end_user_spend(&mut tx, &deltas, now)
                .await
                .unwrap();
            store.commit(tx).await.unwrap();
        }
        let known = store.end_user("known").await.unwrap().unwrap();
        assert_eq!((known.spend, known.blocked), (0.5, true));
        let new = store.end_user("new").await.unwrap().unwrap();
        assert_eq!((new.spend, new.blocked), (1.0, false));
        let (all, total) = store
            .list_end_users(ListPage { page: 1, size: 10 })
            .await
            .unwrap();
        assert_eq!((all.len(), total), (2, 2));
    }
}
