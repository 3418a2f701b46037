//! Runtime model registrations kept in the store
//! (`general_settings.store_model_in_db`): one row per model name holding
//! the registration's JSON text; [`crate::admin`] decides what it holds and
//! reads it back.

use std::time::SystemTime;

use super::{Store, store_error};
use crate::keys::KeyError;
use crate::keys::time::to_ms;

impl Store {
    /// Every stored registration as `(model_name, registration JSON)`,
    /// sorted by model name.
    pub async fn runtime_models(&self) -> Result<Vec<(String, String)>, KeyError> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT model_name, registration FROM runtime_models ORDER BY model_name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(store_error)
    }

    /// Keeps (or replaces) the registration of `model_name`.
    pub async fn put_runtime_model(
        &self,
        model_name: &str,
        registration: &str,
    ) -> Result<(), KeyError> {
        sqlx::query(
            "INSERT INTO runtime_models (model_name, registration, updated_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (model_name) DO UPDATE
             SET registration = excluded.registration, updated_at = excluded.updated_at",
        )
        .bind(model_name)
        .bind(registration)
        .bind(to_ms(SystemTime::now()))
        .execute(self.pool())
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// Deletes the registration of `model_name`; whether there was one.
    pub async fn delete_runtime_model(&self, model_name: &str) -> Result<bool, KeyError> {
        let done = sqlx::query("DELETE FROM runtime_models WHERE model_name = $1")
            .bind(model_name)
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registrations_are_kept_replaced_and_deleted() {
        let dir = std::env::temp_dir().join(format!(
            "conclave-models-unit-{}-{}",
            std::process::id(),
            crate::translate::new_id("")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("m.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.put_runtime_model("b", "{\"v\":1}").await.unwrap();
        store.put_runtime_model("a", "{\"v\":1}").await.unwrap();
        store.put_runtime_model("b", "{\"v\":2}").await.unwrap();
        assert_eq!(
            store.runtime_models().await.unwrap(),
            vec![
                ("a".to_owned(), "{\"v\":1}".to_owned()),
                ("b".to_owned(), "{\"v\":2}".to_owned())
            ]
        );
        assert!(store.delete_runtime_model("a").await.unwrap());
        assert!(!store.delete_runtime_model("a").await.unwrap());
        assert_eq!(store.runtime_models().await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
