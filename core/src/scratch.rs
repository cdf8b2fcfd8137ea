//! Throwaway databases for tests and benchmarks: a SQLite file in a temporary directory, or a
//! fresh PostgreSQL database created on a server and dropped afterwards.

use crate::error::{Result, TaskerError};
use crate::store::Backend;

/// A database that exists until [`ScratchDatabase::drop_database`] (PostgreSQL) or until the
/// value is dropped (SQLite: the temporary directory goes with it).
#[derive(Debug)]
pub struct ScratchDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl ScratchDatabase {
    /// Creates one. For PostgreSQL, `server_url` names the server (any database on it); the
    /// new database is called `tasker_scratch_<uuid>`.
    pub async fn create(backend: Backend, server_url: Option<&str>) -> Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().map_err(|e| TaskerError::InvalidArgument(format!("temp dir: {e}")))?;
                let url = format!("sqlite://{}", dir.path().join("tasker.db").display());
                Ok(Self {
                    url,
                    backend,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let admin = server_url.ok_or_else(|| {
                    TaskerError::InvalidArgument("a PostgreSQL scratch database needs a server URL".into())
                })?;
                let name = format!("tasker_scratch_{}", uuid::Uuid::now_v7().simple());
                let pool = sqlx::PgPool::connect(admin).await.map_err(|e| TaskerError::Connect {
                    target: crate::describe_database(admin),
                    reason: e.to_string(),
                })?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await?;
                pool.close().await;
                let mut url = url::Url::parse(admin).map_err(|e| TaskerError::DatabaseUrl(e.to_string()))?;
                url.set_path(&format!("/{name}"));
                Ok(Self {
                    url: url.to_string(),
                    backend,
                    _dir: None,
                    postgres: Some((admin.to_owned(), name)),
                })
            }
        }
    }

    /// Drops the PostgreSQL database (terminating its connections). Best effort.
    pub async fn drop_database(&self) {
        if let Some((admin, name)) = &self.postgres {
            if let Ok(pool) = sqlx::PgPool::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&pool)
                    .await;
                pool.close().await;
            }
        }
    }
}
