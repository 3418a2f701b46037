//! Stored Responses API responses: one row per response, readable and
//! deletable only by the owner that stored it. The JSON travels as text;
//! [`crate::keys::responses`] parses it and decides what is stored.

use std::time::SystemTime;

use super::{Store, store_error};
use crate::keys::KeyError;
use crate::keys::time::to_ms;

/// One stored response as the store keeps it: the `response` object and
/// the conversation's input items, each as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRow {
    pub id: String,
    pub owner: String,
    pub response: String,
    pub input: String,
    pub created_at: SystemTime,
}

impl Store {
    /// Keeps `row`, and says whether it did: an id already stored is left
    /// as it is (ids are unique, and a row never changes owner).
    pub async fn insert_response(&self, row: &ResponseRow) -> Result<bool, KeyError> {
        let done = sqlx::query(
            "INSERT INTO responses (id, owner, response, input, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.owner)
        .bind(&row.response)
        .bind(&row.input)
        .bind(to_ms(row.created_at))
        .execute(self.pool())
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// The response `id` of `owner` stored at or after `not_before` (older
    /// rows are past retention even before the job deletes them); its
    /// response and input texts.
    pub async fn get_response(
        &self,
        id: &str,
        owner: &str,
        not_before: SystemTime,
    ) -> Result<Option<(String, String)>, KeyError> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT response, input FROM responses
             WHERE id = $1 AND owner = $2 AND created_at >= $3",
        )
        .bind(id)
        .bind(owner)
        .bind(to_ms(not_before))
        .fetch_optional(self.pool())
        .await
        .map_err(store_error)
    }

    /// Deletes the response `id` of `owner`; whether there was one.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, KeyError> {
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes at most `batch` responses stored before `cutoff`; how many.
    pub async fn delete_responses_before(
        &self,
        cutoff: SystemTime,
        batch: u32,
    ) -> Result<u64, KeyError> {
        self.delete_oldest("responses", "created_at", cutoff, batch)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use crate::keys::store::tests::{Scratch, scratch_store};

    async fn store() -> (Scratch, Store) {
        scratch_store("responses-unit").await
    }

    fn row(id: &str, owner: &str, created_at: SystemTime) -> ResponseRow {
        ResponseRow {
            id: id.into(),
            owner: owner.into(),
            response: format!("{{\"id\":\"{id}\"}}"),
            input: "[]".into(),
            created_at,
        }
    }

    #[tokio::test]
    async fn a_response_is_its_owners_only() {
        let (_dir, store) = store().await;
        let now = SystemTime::now();
        let old = now - Duration::from_secs(3600);
        assert!(
            store
                .insert_response(&row("resp_a", "k1", now))
                .await
                .unwrap()
        );
        let got = store.get_response("resp_a", "k1", old).await.unwrap();
        assert_eq!(got.unwrap().0, "{\"id\":\"resp_a\"}");
        assert!(
            store
                .get_response("resp_a", "k2", old)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!store.delete_response("resp_a", "k2").await.unwrap());
        // The same id again keeps the first owner, and says it did not store.
        assert!(
            !store
                .insert_response(&row("resp_a", "k2", now))
                .await
                .unwrap()
        );
        assert!(
            store
                .get_response("resp_a", "k2", old)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.delete_response("resp_a", "k1").await.unwrap());
        assert!(
            store
                .get_response("resp_a", "k1", old)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn old_responses_expire() {
        let (_dir, store) = store().await;
        let now = SystemTime::now();
        let old = now - Duration::from_secs(7200);
        store
            .insert_response(&row("resp_old", "o", old))
            .await
            .unwrap();
        store
            .insert_response(&row("resp_new", "o", now))
            .await
            .unwrap();
        let cutoff = now - Duration::from_secs(3600);
        assert!(
            store
                .get_response("resp_old", "o", cutoff)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.delete_responses_before(cutoff, 10).await.unwrap(), 1);
        assert!(
            store
                .get_response("resp_new", "o", cutoff)
                .await
                .unwrap()
                .is_some()
        );
    }
}
