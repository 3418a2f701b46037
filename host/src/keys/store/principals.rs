//! Keys, users, teams and memberships: the records the management API
//! changes and the registry cache reads. Updates never write `spend`: the
//! background writer owns it, so an edit cannot undo a batch of spend.

use std::collections::BTreeMap;
use std::time::SystemTime;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::rows::{self, KEY_COLUMNS, TEAM_COLUMNS, USER_COLUMNS, json, ms};
use super::{Store, bind_present, store_error, unchanged_since, written_at};
use crate::keys::KeyError;
use crate::keys::model::{KeyRecord, Principal, TeamRecord, UserRecord};
use crate::keys::time::to_ms;

/// Which keys `GET /key/list` (and the spend routes) show, and in what order.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub key_alias: Option<String>,
    /// Any of these key hashes; all keys when empty.
    pub token_hashes: Vec<String>,
    pub order: ListOrder,
}

/// The order of a key or user listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// The listing's own order: keys newest first, users oldest first.
    #[default]
    Created,
    /// Oldest first.
    CreatedAscending,
    /// Highest spend in the current budget period first (`/spend/keys`,
    /// `/spend/users`, `/key/list?sort_by=spend`).
    Spend,
    /// Lowest spend first.
    SpendAscending,
}

impl ListOrder {
    /// The `ORDER BY` columns, `created` being the listing's own order.
    fn sql(self, created: &'static str) -> &'static str {
        match self {
            ListOrder::Created => created,
            ListOrder::CreatedAscending => "created_at ASC",
            ListOrder::Spend => "spend DESC",
            ListOrder::SpendAscending => "spend ASC",
        }
    }
}

/// Which users `GET /user/list` shows (LiteLLM's filters).
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Any of these ids; all users when empty.
    pub user_ids: Vec<String>,
    pub role: Option<String>,
    pub user_email: Option<String>,
    /// Members of this team.
    pub team_id: Option<String>,
    pub order: ListOrder,
}

/// Which teams `GET /team/list` shows.
#[derive(Debug, Clone, Default)]
pub struct TeamFilter {
    /// Teams this user is a member of.
    pub user_id: Option<String>,
}

/// A list query's `WHERE` clause and the values bound to it, numbered from
/// `$1`; the page's `LIMIT` and `OFFSET` come after them.
#[derive(Default)]
pub(super) struct Conditions {
    clauses: Vec<String>,
    binds: Vec<String>,
}

impl Conditions {
    /// `clause` with `{}` standing for the next placeholder, bound to `value`.
    pub(super) fn add(&mut self, clause: &str, value: &str) {
        self.binds.push(value.to_owned());
        self.clauses
            .push(clause.replace("{}", &format!("${}", self.binds.len())));
    }

    /// A clause that binds nothing (a number the store wrote itself).
    pub(super) fn literal(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `column = value`, when a value is given.
    pub(super) fn equal(&mut self, column: &str, value: Option<&String>) {
        if let Some(v) = value {
            self.add(&format!("{column} = {{}}"), v);
        }
    }

    /// `column IN (values)`, when any are given.
    pub(super) fn any_of(&mut self, column: &str, values: &[String]) {
        self.listed(column, "IN", values);
    }

    /// `column NOT IN (values)`, when any are given.
    pub(super) fn none_of(&mut self, column: &str, values: &[String]) {
        self.listed(column, "NOT IN", values);
    }

    fn listed(&mut self, column: &str, operator: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let mut placeholders = Vec::with_capacity(values.len());
        for v in values {
            self.binds.push(v.clone());
            placeholders.push(format!("${}", self.binds.len()));
        }
        self.clauses
            .push(format!("{column} {operator} ({})", placeholders.join(", ")));
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The page's placeholders, after the conditions' own.
    pub(super) fn page_sql(&self) -> String {
        let n = self.binds.len();
        format!(" LIMIT ${} OFFSET ${}", n + 1, n + 2)
    }

    /// `SELECT COUNT(*) FROM table` under these conditions.
    pub(super) async fn count(&self, store: &Store, table: &str) -> Result<u64, KeyError> {
        let sql = format!("SELECT COUNT(*) FROM {table}{}", self.sql());
        let mut count = sqlx::query_scalar::<_, i64>(&sql);
        for b in &self.binds {
            count = count.bind(b.clone());
        }
        let total = count.fetch_one(store.pool()).await.map_err(store_error)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// The rows of `sql` (these conditions and the page's placeholders in
    /// it) for `page`.
    pub(super) async fn rows(
        &self,
        store: &Store,
        sql: &str,
        page: ListPage,
    ) -> Result<Vec<AnyRow>, KeyError> {
        let mut query = sqlx::query(sql);
        for b in &self.binds {
            query = query.bind(b.clone());
        }
        query
            .bind(i64::from(page.size))
            .bind(page.offset())
            .fetch_all(store.pool())
            .await
            .map_err(store_error)
    }
}

/// One page of a list: `page` counts from 1.
#[derive(Debug, Clone, Copy)]
pub struct ListPage {
    pub page: u32,
    pub size: u32,
}

impl ListPage {
    pub(super) fn offset(self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.size)
    }
}

pub(super) fn unique_violation(e: sqlx::Error, field: &str, what: &str) -> KeyError {
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("unique") || text.contains("duplicate") {
        KeyError::Invalid {
            field: field.into(),
            message: format!("{what} already exists"),
        }
    } else {
        store_error(e)
    }
}

impl Store {
    /// The key, its user and its team, for the registry cache; `None` for
    /// no such key, or one whose team no longer exists.
    pub async fn principal(&self, token_hash: &str) -> Result<Option<Principal>, KeyError> {
        let Some(key) = self.key(token_hash).await? else {
            return Ok(None);
        };
        let user = match &key.user_id {
            Some(id) => self.user(id).await?,
            None => None,
        };
        let team = match &key.team_id {
            // A key whose team is gone (deleted while the key was being
            // made) is gone with it: served without its team, it would
            // escape the team's models and budget.
            Some(id) => match self.team(id).await? {
                Some(team) => Some(team),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(Principal::new(key, user, team)))
    }

    /// A key by its hash, with its per-model spend.
    pub async fn key(&self, token_hash: &str) -> Result<Option<KeyRecord>, KeyError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await
            .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let mut key = rows::key(&row)?;
        key.model_spend = self.model_spend(token_hash).await?;
        Ok(Some(key))
    }

    async fn model_spend(&self, token_hash: &str) -> Result<BTreeMap<String, f64>, KeyError> {
        let found = sqlx::query("SELECT model, spend FROM key_model_spend WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_all(self.pool())
            .await
            .map_err(store_error)?;
        found
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("model").map_err(store_error)?,
                    r.try_get("spend").map_err(store_error)?,
                ))
            })
            .collect()
    }

    /// The hash of the key with this alias.
    pub async fn key_hash_by_alias(&self, alias: &str) -> Result<Option<String>, KeyError> {
        sqlx::query_scalar("SELECT token_hash FROM keys WHERE key_alias = $1")
            .bind(alias)
            .fetch_optional(self.pool())
            .await
            .map_err(store_error)
    }

    /// Stores a new key; an alias already in use is refused.
    pub async fn insert_key(&self, k: &KeyRecord) -> Result<(), KeyError> {
        let sql = format!(
            "INSERT INTO keys ({KEY_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        );
        sqlx::query(&sql)
            .bind(k.token_hash.clone())
            .bind(k.key_alias.clone())
            .bind(k.key_name.clone())
            .bind(k.user_id.clone())
            .bind(k.team_id.clone())
            .bind(json(&k.models))
            .bind(json(&k.aliases))
            .bind(json(&k.limits))
            .bind(k.spend)
            .bind(ms(k.budget_reset_at))
            .bind(ms(k.expires))
            .bind(i64::from(k.blocked))
            .bind(json(&k.metadata))
            .bind(json(&k.tags))
            .bind(to_ms(k.created_at))
            .bind(to_ms(k.updated_at))
            .bind(json(&k.allowed_routes))
            .execute(self.pool())
            .await
            .map_err(|e| {
                // Two callers may choose the same key at once: the loser's
                // conflict is on the key itself, not on an alias.
                if e.to_string().contains("key_alias") {
                    unique_violation(e, "key_alias", "a key with this key_alias")
                } else {
                    unique_violation(e, "key", "this key")
                }
            })?;
        Ok(())
    }

    /// Writes every field of `k` except its spend.
    /// With `read_at` (the `updated_at` it was read with), only while the
    /// row is unchanged since: false when another change came first, or
    /// the row is gone.
    pub async fn update_key(
        &self,
        k: &KeyRecord,
        read_at: Option<SystemTime>,
    ) -> Result<bool, KeyError> {
        let sql = unchanged_since(
            "UPDATE keys SET key_alias = $2, user_id = $3, team_id = $4, models = $5, aliases = $6, \
             limits = $7, budget_reset_at = $8, expires = $9, blocked = $10, metadata = $11, \
             tags = $12, updated_at = $13, allowed_routes = $14 WHERE token_hash = $1",
            15,
            read_at,
        );
        let query = sqlx::query(&sql)
            .bind(k.token_hash.clone())
            .bind(k.key_alias.clone())
            .bind(k.user_id.clone())
            .bind(k.team_id.clone())
            .bind(json(&k.models))
            .bind(json(&k.aliases))
            .bind(json(&k.limits))
            .bind(ms(k.budget_reset_at))
            .bind(ms(k.expires))
            .bind(i64::from(k.blocked))
            .bind(json(&k.metadata))
            .bind(json(&k.tags))
            .bind(written_at(k.updated_at, read_at))
            .bind(json(&k.allowed_routes));
        let query = bind_present(query, read_at.map(to_ms));
        let done = query
            .execute(self.pool())
            .await
            .map_err(|e| unique_violation(e, "key_alias", "a key with this key_alias"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives a key a new value (hash and display name), keeping everything
    /// else, while it is unchanged since `read_at` (its `updated_at` as
    /// read); `at` is the new `updated_at`, later than `read_at`. False when
    /// another change (or another new value) came first.
    pub async fn rehash_key(
        &self,
        old_hash: &str,
        new_hash: &str,
        key_name: &str,
        (read_at, at): (SystemTime, SystemTime),
    ) -> Result<bool, KeyError> {
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        let done = sqlx::query(
            "UPDATE keys SET token_hash = $2, key_name = $3, updated_at = $4 \
             WHERE token_hash = $1 AND updated_at = $5",
        )
        .bind(old_hash)
        .bind(new_hash)
        .bind(key_name)
        .bind(to_ms(at))
        .bind(to_ms(read_at))
        .execute(self.within(&mut tx))
        .await
        .map_err(|e| unique_violation(e, "new_key", "a key with this value"))?;
        sqlx::query("UPDATE key_model_spend SET token_hash = $2 WHERE token_hash = $1")
            .bind(old_hash)
            .bind(new_hash)
            .execute(self.within(&mut tx))
            .await
            .map_err(store_error)?;
        self.commit(tx).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes keys by hash; the number deleted.
    pub async fn delete_keys(&self, hashes: &[String]) -> Result<u64, KeyError> {
        let mut deleted = 0;
        for hash in hashes {
            let mut tx = self.pool().begin().await.map_err(store_error)?;
            deleted += sqlx::query("DELETE FROM keys WHERE token_hash = $1")
                .bind(hash.clone())
                .execute(self.within(&mut tx))
                .await
                .map_err(store_error)?
                .rows_affected();
            sqlx::query("DELETE FROM key_model_spend WHERE token_hash = $1")
                .bind(hash.clone())
                .execute(self.within(&mut tx))
                .await
                .map_err(store_error)?;
            self.commit(tx).await?;
        }
        Ok(deleted)
    }

    /// Hashes of the keys of a user or a team (`column` is `user_id` or `team_id`).
    pub async fn key_hashes_of(&self, column: Owner, id: &str) -> Result<Vec<String>, KeyError> {
        let sql = format!("SELECT token_hash FROM keys WHERE {} = $1", column.column());
        sqlx::query_scalar(&sql)
            .bind(id)
            .fetch_all(self.pool())
            .await
            .map_err(store_error)
    }

    /// One page of keys, newest first, and how many match in all.
    pub async fn list_keys(
        &self,
        filter: &KeyFilter,
        page: ListPage,
    ) -> Result<(Vec<KeyRecord>, u64), KeyError> {
        let mut on = Conditions::default();
        on.equal("user_id", filter.user_id.as_ref());
        on.equal("team_id", filter.team_id.as_ref());
        on.equal("key_alias", filter.key_alias.as_ref());
        on.any_of("token_hash", &filter.token_hashes);
        let total = on.count(self, "keys").await?;
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM keys{} ORDER BY {}, token_hash{}",
            on.sql(),
            filter.order.sql("created_at DESC"),
            on.page_sql()
        );
        let found = on.rows(self, &sql, page).await?;
        let keys = found.iter().map(rows::key).collect::<Result<_, _>>()?;
        Ok((keys, total))
    }

    /// A user, with the teams it is a member of.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, KeyError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1");
        let row = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let mut user = rows::user(&row)?;
        user.teams = sqlx::query_scalar(
            "SELECT team_id FROM memberships WHERE user_id = $1 ORDER BY team_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .map_err(store_error)?;
        Ok(Some(user))
    }

    /// Stores a new user; an id already in use is refused.
    pub async fn insert_user(&self, u: &UserRecord) -> Result<(), KeyError> {
        let sql = format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        sqlx::query(&sql)
            .bind(u.user_id.clone())
            .bind(u.user_role.clone())
            .bind(u.user_email.clone())
            .bind(json(&u.models))
            .bind(json(&u.limits))
            .bind(u.spend)
            .bind(ms(u.budget_reset_at))
            .bind(json(&u.metadata))
            .bind(to_ms(u.created_at))
            .bind(to_ms(u.updated_at))
            .execute(self.pool())
            .await
            .map_err(|e| unique_violation(e, "user_id", "a user with this user_id"))?;
        Ok(())
    }

    /// Writes every field of `u` except its spend and teams.
    /// With `read_at` (the `updated_at` it was read with), only while the
    /// row is unchanged since: false when another change came first, or
    /// the row is gone.
    pub async fn update_user(
        &self,
        u: &UserRecord,
        read_at: Option<SystemTime>,
    ) -> Result<bool, KeyError> {
        let sql = unchanged_since(
            "UPDATE users SET user_role = $2, user_email = $3, models = $4, limits = $5, \
             budget_reset_at = $6, metadata = $7, updated_at = $8 WHERE user_id = $1",
            9,
            read_at,
        );
        let query = sqlx::query(&sql)
            .bind(u.user_id.clone())
            .bind(u.user_role.clone())
            .bind(u.user_email.clone())
            .bind(json(&u.models))
            .bind(json(&u.limits))
            .bind(ms(u.budget_reset_at))
            .bind(json(&u.metadata))
            .bind(written_at(u.updated_at, read_at));
        let query = bind_present(query, read_at.map(to_ms));
        let done = query.execute(self.pool()).await.map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a user, its memberships and its keys (as LiteLLM does).
    pub async fn delete_user(&self, user_id: &str) -> Result<bool, KeyError> {
        self.delete_owner(Owner::User, user_id).await
    }

    /// Deletes a user or team with its memberships and its keys (as
    /// LiteLLM does); whether it existed.
    async fn delete_owner(&self, owner: Owner, id: &str) -> Result<bool, KeyError> {
        let keys = self.key_hashes_of(owner, id).await?;
        self.delete_keys(&keys).await?;
        let column = owner.column();
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        sqlx::query(&format!("DELETE FROM memberships WHERE {column} = $1"))
            .bind(id)
            .execute(self.within(&mut tx))
            .await
            .map_err(store_error)?;
        let done = sqlx::query(&format!(
            "DELETE FROM {} WHERE {column} = $1",
            owner.table()
        ))
        .bind(id)
        .execute(self.within(&mut tx))
        .await
        .map_err(store_error)?;
        self.commit(tx).await?;
        Ok(done.rows_affected() > 0)
    }

    /// One page of users, oldest first.
    pub async fn list_users(
        &self,
        filter: &UserFilter,
        page: ListPage,
    ) -> Result<(Vec<UserRecord>, u64), KeyError> {
        let mut on = Conditions::default();
        on.any_of("user_id", &filter.user_ids);
        on.equal("user_role", filter.role.as_ref());
        // Emails match whatever their case, as LiteLLM matches them.
        if let Some(email) = &filter.user_email {
            on.add("LOWER(user_email) = LOWER({})", email);
        }
        if let Some(team) = &filter.team_id {
            on.add(
                "user_id IN (SELECT user_id FROM memberships WHERE team_id = {})",
                team,
            );
        }
        let total = on.count(self, "users").await?;
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users{} ORDER BY {}, user_id{}",
            on.sql(),
            filter.order.sql("created_at"),
            on.page_sql()
        );
        let found = on.rows(self, &sql, page).await?;
        let mut users = found
            .iter()
            .map(rows::user)
            .collect::<Result<Vec<_>, _>>()?;
        self.load_teams(&mut users).await?;
        Ok((users, total))
    }

    /// Fills in the teams each of `users` is a member of, in one query.
    async fn load_teams(&self, users: &mut [UserRecord]) -> Result<(), KeyError> {
        if users.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
        let mut on = Conditions::default();
        on.any_of("user_id", &ids);
        let sql = format!(
            "SELECT user_id, team_id FROM memberships{} ORDER BY team_id",
            on.sql()
        );
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for b in &on.binds {
            query = query.bind(b.clone());
        }
        let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (user, team) in query.fetch_all(self.pool()).await.map_err(store_error)? {
            by_user.entry(user).or_default().push(team);
        }
        for u in users.iter_mut() {
            u.teams = by_user.remove(&u.user_id).unwrap_or_default();
        }
        Ok(())
    }

    /// A team, with its members.
    pub async fn team(&self, team_id: &str) -> Result<Option<TeamRecord>, KeyError> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE team_id = $1");
        let row = sqlx::query(&sql)
            .bind(team_id)
            .fetch_optional(self.pool())
            .await
            .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let mut team = rows::team(&row)?;
        team.members = self.members(team_id).await?;
        Ok(Some(team))
    }

    /// The members of a team with their roles, in the order they joined.
    pub async fn member_roles(&self, team_id: &str) -> Result<Vec<(String, String)>, KeyError> {
        let found = sqlx::query(
            "SELECT user_id, role FROM memberships WHERE team_id = $1 ORDER BY created_at, user_id",
        )
        .bind(team_id)
        .fetch_all(self.pool())
        .await
        .map_err(store_error)?;
        found
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("user_id").map_err(store_error)?,
                    r.try_get("role").map_err(store_error)?,
                ))
            })
            .collect()
    }

    async fn members(&self, team_id: &str) -> Result<Vec<String>, KeyError> {
        sqlx::query_scalar(
            "SELECT user_id FROM memberships WHERE team_id = $1 ORDER BY created_at, user_id",
        )
        .bind(team_id)
        .fetch_all(self.pool())
        .await
        .map_err(store_error)
    }

    /// Stores a new team; an id already in use is refused.
    pub async fn insert_team(&self, t: &TeamRecord) -> Result<(), KeyError> {
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        // Keys left naming a team of this id that no longer exists (made
        // while it was being deleted) must not come back to life as the
        // new team's keys.
        for orphans in [
            "DELETE FROM key_model_spend WHERE token_hash IN \
             (SELECT token_hash FROM keys WHERE team_id = $1 \
              AND NOT EXISTS (SELECT 1 FROM teams WHERE team_id = $1))",
            "DELETE FROM keys WHERE team_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM teams WHERE team_id = $1)",
        ] {
            sqlx::query(orphans)
                .bind(t.team_id.clone())
                .execute(self.within(&mut tx))
                .await
                .map_err(store_error)?;
        }
        let sql = format!(
            "INSERT INTO teams ({TEAM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        sqlx::query(&sql)
            .bind(t.team_id.clone())
            .bind(t.team_alias.clone())
            .bind(json(&t.models))
            .bind(json(&t.limits))
            .bind(t.spend)
            .bind(ms(t.budget_reset_at))
            .bind(i64::from(t.blocked))
            .bind(json(&t.metadata))
            .bind(to_ms(t.created_at))
            .bind(to_ms(t.updated_at))
            .execute(self.within(&mut tx))
            .await
            .map_err(|e| unique_violation(e, "team_id", "a team with this team_id"))?;
        self.commit(tx).await
    }

    /// Writes every field of `t` except its spend and members.
    /// With `read_at` (the `updated_at` it was read with), only while the
    /// row is unchanged since: false when another change came first, or
    /// the row is gone.
    pub async fn update_team(
        &self,
        t: &TeamRecord,
        read_at: Option<SystemTime>,
    ) -> Result<bool, KeyError> {
        let sql = unchanged_since(
            "UPDATE teams SET team_alias = $2, models = $3, limits = $4, budget_reset_at = $5, \
             blocked = $6, metadata = $7, updated_at = $8 WHERE team_id = $1",
            9,
            read_at,
        );
        let query = sqlx::query(&sql)
            .bind(t.team_id.clone())
            .bind(t.team_alias.clone())
            .bind(json(&t.models))
            .bind(json(&t.limits))
            .bind(ms(t.budget_reset_at))
            .bind(i64::from(t.blocked))
            .bind(json(&t.metadata))
            .bind(written_at(t.updated_at, read_at));
        let query = bind_present(query, read_at.map(to_ms));
        let done = query.execute(self.pool()).await.map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a team, its memberships and its keys (as LiteLLM does).
    pub async fn delete_team(&self, team_id: &str) -> Result<bool, KeyError> {
        self.delete_owner(Owner::Team, team_id).await
    }

    /// One page of teams, oldest first.
    pub async fn list_teams(
        &self,
        filter: &TeamFilter,
        page: ListPage,
    ) -> Result<(Vec<TeamRecord>, u64), KeyError> {
        let mut on = Conditions::default();
        if let Some(user) = &filter.user_id {
            on.add(
                "team_id IN (SELECT team_id FROM memberships WHERE user_id = {})",
                user,
            );
        }
        let total = on.count(self, "teams").await?;
        let sql = format!(
            "SELECT {TEAM_COLUMNS} FROM teams{} ORDER BY created_at, team_id{}",
            on.sql(),
            on.page_sql()
        );
        let found = on.rows(self, &sql, page).await?;
        let mut teams = found
            .iter()
            .map(rows::team)
            .collect::<Result<Vec<_>, _>>()?;
        for t in &mut teams {
            t.members = self.members(&t.team_id).await?;
        }
        Ok((teams, total))
    }

    /// Adds a member (no-op when already one).
    pub async fn add_member(
        &self,
        team_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<(), KeyError> {
        sqlx::query(
            "INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(role)
        .bind(to_ms(SystemTime::now()))
        .execute(self.pool())
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// Removes a member; whether it was one.
    pub async fn remove_member(&self, team_id: &str, user_id: &str) -> Result<bool, KeyError> {
        let done = sqlx::query("DELETE FROM memberships WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }
}

/// What owns a set of keys.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    User,
    Team,
}

impl Owner {
    fn column(self) -> &'static str {
        match self {
            Owner::User => "user_id",
            Owner::Team => "team_id",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Owner::User => "users",
            Owner::Team => "teams",
        }
    }
}
