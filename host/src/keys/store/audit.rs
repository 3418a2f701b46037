//! The audit log: one row per change made through the management and admin
//! APIs (who, with which key, what, to which object, its value before and
//! after), in LiteLLM's `LiteLLM_AuditLog` fields. Rows are only ever
//! added; [`crate::http`]'s audit layer decides what a change is.

use std::time::SystemTime;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::principals::Conditions;
use super::{ListPage, Store, store_error};
use crate::keys::KeyError;
use crate::keys::time::{from_ms, to_ms};

/// One audited change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: String,
    pub at: SystemTime,
    /// Who made it: the `LiteLLM-Changed-By` header, else the caller's user
    /// id, key alias, or `master_key`.
    pub changed_by: String,
    /// The hash of the key the call presented (never the key).
    pub changed_by_api_key: String,
    /// `created`, `updated`, `deleted`, `blocked`, `unblocked`, `rotated`,
    /// `flushed`, `reloaded`.
    pub action: String,
    /// LiteLLM's table name for the object's kind (`LiteLLM_VerificationToken`,
    /// ...), or `cache` and `config` for conclave's own.
    pub table_name: String,
    pub object_id: String,
    /// The object as it was, as JSON text, when it existed before.
    pub before_value: Option<String>,
    /// The object as it is after the change, or what the call asked for,
    /// as JSON text.
    pub updated_values: Option<String>,
}

/// Which rows `GET /audit` shows; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub changed_by: Option<String>,
    pub changed_by_api_key: Option<String>,
    pub action: Option<String>,
    pub table_name: Option<String>,
    pub object_id: Option<String>,
    /// Rows at or after this time.
    pub since: Option<SystemTime>,
    /// Rows before this time.
    pub until: Option<SystemTime>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

const AUDIT_COLUMNS: &str = "id, at, changed_by, changed_by_api_key, action, table_name, \
     object_id, before_value, updated_values";

impl Store {
    /// Adds the rows of one change, all or none.
    pub async fn insert_audit(&self, rows: &[AuditRow]) -> Result<(), KeyError> {
        let mut tx = self.pool().begin().await.map_err(store_error)?;
        let sql = format!(
            "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        for row in rows {
            sqlx::query(&sql)
                .bind(&row.id)
                .bind(to_ms(row.at))
                .bind(&row.changed_by)
                .bind(&row.changed_by_api_key)
                .bind(&row.action)
                .bind(&row.table_name)
                .bind(&row.object_id)
                .bind(row.before_value.as_deref())
                .bind(row.updated_values.as_deref())
                .execute(self.within(&mut tx))
                .await
                .map_err(store_error)?;
        }
        self.commit(tx).await
    }

    /// One page of rows under `filter`, and how many match in all.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: ListPage,
    ) -> Result<(Vec<AuditRow>, u64), KeyError> {
        let mut on = Conditions::default();
        on.equal("changed_by", filter.changed_by.as_ref());
        on.equal("changed_by_api_key", filter.changed_by_api_key.as_ref());
        on.equal("action", filter.action.as_ref());
        on.equal("table_name", filter.table_name.as_ref());
        on.equal("object_id", filter.object_id.as_ref());
        // Times are the store's own integers, written into the statement.
        if let Some(since) = filter.since {
            on.literal(format!("at >= {}", to_ms(since)));
        }
        if let Some(until) = filter.until {
            on.literal(format!("at < {}", to_ms(until)));
        }
        let total = on.count(self, "audit_log").await?;
        let order = if filter.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log{} ORDER BY at {order}, seq {order}{}",
            on.sql(),
            on.page_sql()
        );
        let rows = on.rows(self, &sql, page).await?;
        let rows = rows.iter().map(audit_row).collect::<Result<_, _>>()?;
        Ok((rows, total))
    }

    /// The row with this id.
    pub async fn audit_entry(&self, id: &str) -> Result<Option<AuditRow>, KeyError> {
        sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(store_error)?
        .as_ref()
        .map(audit_row)
        .transpose()
    }
}

fn audit_row(row: &AnyRow) -> Result<AuditRow, KeyError> {
    let text = |name: &str| row.try_get::<String, _>(name).map_err(store_error);
    let optional = |name: &str| row.try_get::<Option<String>, _>(name).map_err(store_error);
    Ok(AuditRow {
        id: text("id")?,
        at: from_ms(row.try_get::<i64, _>("at").map_err(store_error)?),
        changed_by: text("changed_by")?,
        changed_by_api_key: text("changed_by_api_key")?,
        action: text("action")?,
        table_name: text("table_name")?,
        object_id: text("object_id")?,
        before_value: optional("before_value")?,
        updated_values: optional("updated_values")?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keys::store::tests::scratch_store;

    fn row(id: &str, action: &str, at: SystemTime) -> AuditRow {
        AuditRow {
            id: id.into(),
            at,
            changed_by: "alice".into(),
            changed_by_api_key: "ab".repeat(32),
            action: action.into(),
            table_name: "LiteLLM_TeamTable".into(),
            object_id: "team-1".into(),
            before_value: Some("{\"max_budget\":1}".into()),
            updated_values: None,
        }
    }

    #[tokio::test]
    async fn rows_come_back_newest_first_filtered_and_paged() {
        let (_scratch, store) = scratch_store("audit-unit").await;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (i, action) in ["created", "updated", "updated", "deleted"]
            .iter()
            .enumerate()
        {
            let at = t0 + Duration::from_secs(i as u64);
            store
                .insert_audit(&[row(&format!("a{i}"), action, at)])
                .await
                .unwrap();
        }
        let all = AuditFilter::default();
        let (first, total) = store
            .list_audit(&all, ListPage { page: 1, size: 3 })
            .await
            .unwrap();
        assert_eq!(total, 4);
        let ids: Vec<&str> = first.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a3", "a2", "a1"]);
        let (second, _) = store
            .list_audit(&all, ListPage { page: 2, size: 3 })
            .await
            .unwrap();
        assert_eq!(second.len(), 1);

        let updates = AuditFilter {
            action: Some("updated".into()),
            since: Some(t0 + Duration::from_secs(2)),
            ascending: true,
            ..AuditFilter::default()
        };
        let (found, total) = store
            .list_audit(&updates, ListPage { page: 1, size: 10 })
            .await
            .unwrap();
        assert_eq!((total, found.len()), (1, 1));
        assert_eq!(found[0], row("a2", "updated", t0 + Duration::from_secs(2)));
        assert_eq!(
            store.audit_entry("a0").await.unwrap().unwrap().action,
            "created"
        );
        assert!(store.audit_entry("nope").await.unwrap().is_none());
    }
}
