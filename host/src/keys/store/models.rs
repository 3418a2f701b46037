//! Runtime model registrations kept in the store
//! (`general_settings.store_model_in_db`): one row per deployment id
//! holding the registration's JSON text; [`crate::admin`] decides what it holds and
//! reads it back.

use std::time::SystemTime;

use super::{Store, store_error};
use crate::keys::KeyError;
use crate::keys::time::to_ms;

impl Store {
    /// Every stored registration as `(deployment_id, registration JSON)`,
    /// sorted by id.
    pub async fn runtime_models(&self) -> Result<Vec<(String, String)>, KeyError> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT deployment_id, registration FROM runtime_models ORDER BY deployment_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(store_error)
    }

    /// Keeps (or replaces) the registration of `deployment_id`.
    pub async fn put_runtime_model(
        &self,
        deployment_id: &str,
        registration: &str,
    ) -> Result<(), KeyError> {
        self.write_runtime_model(
            deployment_id,
            registration,
            "DO UPDATE SET registration = excluded.registration, updated_at = excluded.updated_at",
        )
        .await
        .map(drop)
    }

    /// Keeps the registration of `deployment_id` unless one exists already
    /// (another instance may have made it since this one looked); whether
    /// it was kept.
    pub async fn insert_runtime_model(
        &self,
        deployment_id: &str,
        registration: &str,
    ) -> Result<bool, KeyError> {
        self.write_runtime_model(deployment_id, registration, "DO NOTHING")
            .await
    }

    /// Writes a registration, doing `on_conflict` when its id is stored
    /// already; whether a row was written.
    async fn write_runtime_model(
        &self,
        deployment_id: &str,
        registration: &str,
        on_conflict: &str,
    ) -> Result<bool, KeyError> {
        let sql = format!(
            "INSERT INTO runtime_models (deployment_id, registration, updated_at)
             VALUES ($1, $2, $3) ON CONFLICT (deployment_id) {on_conflict}"
        );
        let done = sqlx::query(&sql)
            .bind(deployment_id)
            .bind(registration)
            .bind(to_ms(SystemTime::now()))
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the registration of `deployment_id`; whether there was one.
    pub async fn delete_runtime_model(&self, deployment_id: &str) -> Result<bool, KeyError> {
        let done = sqlx::query("DELETE FROM runtime_models WHERE deployment_id = $1")
            .bind(deployment_id)
            .execute(self.pool())
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::store::tests::{Scratch, scratch_store};

    #[tokio::test]
    async fn registrations_are_kept_replaced_and_deleted() {
        let (_scratch, store) = scratch_store("models-unit").await;
        store.put_runtime_model("b", "{\"v\":1}").await.unwrap();
        store.put_runtime_model("a", "{\"v\":1}").await.unwrap();
        store.put_runtime_model("b", "{\"v\":2}").await.unwrap();
        assert!(
            !store.insert_runtime_model("b", "{\"v\":3}").await.unwrap(),
            "an id stored already is kept as it is"
        );
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
    }

    /// A store from before registrations were kept by deployment id: its
    /// rows, kept by model name, come back under `runtime:<model_name>`,
    /// the id those registrations have.
    #[tokio::test]
    async fn rows_kept_by_model_name_move_to_their_deployment_id() {
        use sqlx::Executor;
        let scratch = Scratch::new("models-v8");
        let url = &scratch.url;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        pool.execute(
            "CREATE TABLE conclave_schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        for (version, statements) in super::super::migrations::MIGRATIONS {
            if *version >= 8 {
                continue;
            }
            for statement in *statements {
                let sql = statement.replace("{id}", "INTEGER PRIMARY KEY");
                pool.execute(sql.as_str()).await.unwrap();
            }
            let mark = format!("INSERT INTO conclave_schema_version VALUES ({version}, 0)");
            pool.execute(mark.as_str()).await.unwrap();
        }
        pool.execute(
            "INSERT INTO runtime_models (model_name, registration, updated_at) VALUES ('m', '{}', 0)",
        )
        .await
        .unwrap();
        pool.close().await;

        let store = Store::connect(url).await.unwrap();
        assert_eq!(
            store.runtime_models().await.unwrap(),
            vec![("runtime:m".to_owned(), "{}".to_owned())]
        );
    }
}
