//! PostgreSQL: for production and for several replicas.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{
    ApiKeyRecord, Discard, KeyGrant, NewFile, Repo, RepoError, Result, StateCount, parse_state,
};
use crate::domain::{FileRecord, FileState, StagedFacts};

/// The PostgreSQL repository.
#[derive(Clone, Debug)]
pub struct PostgresRepo {
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: Uuid,
    client_id: String,
    state: String,
    file_name: String,
    content_type: Option<String>,
    file_size: Option<i64>,
    sha256: Option<String>,
    staging_key: String,
    multipart_upload_id: Option<String>,
    created_at: DateTime<Utc>,
    uploaded_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<FileRow> for FileRecord {
    type Error = RepoError;

    fn try_from(row: FileRow) -> Result<Self> {
        Ok(FileRecord {
            id: row.id,
            client_id: row.client_id,
            state: parse_state(&row.state)?,
            file_name: row.file_name,
            content_type: row.content_type,
            file_size: row.file_size,
            sha256: row.sha256,
            staging_key: row.staging_key,
            multipart_upload_id: row.multipart_upload_id,
            created_at: row.created_at,
            uploaded_at: row.uploaded_at,
            expires_at: row.expires_at,
        })
    }
}

macro_rules! file_columns {
    () => {
        "id, client_id, state, file_name, content_type, file_size, sha256, staging_key, \
         multipart_upload_id, created_at, uploaded_at, expires_at"
    };
}

impl PostgresRepo {
    /// Connects and runs the PostgreSQL migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresRepo { pool })
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Repo for PostgresRepo {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn has_keys(&self) -> Result<bool> {
        let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM api_keys)")
            .fetch_one(&self.pool)
            .await?;
        Ok(any)
    }

    async fn create_key(&self, id: Uuid, name: &str, secret_hash: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (id, name, secret_hash) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(secret_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_key(&self, name: &str) -> Result<Option<ApiKeyRecord>> {
        let row: Option<(Uuid, String, bool)> =
            sqlx::query_as("SELECT id, name, revoked_at IS NOT NULL FROM api_keys WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, name, revoked)| ApiKeyRecord { id, name, revoked }))
    }

    async fn revoke_key(&self, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE name = $1",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn grant_client(&self, key_id: Uuid, client_id: &str, workspace: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO client_grants (key_id, client_id, workspace) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id, client_id) DO UPDATE SET workspace = EXCLUDED.workspace",
        )
        .bind(key_id)
        .bind(client_id)
        .bind(workspace)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn key_grant(&self, key_id: Uuid, client_id: &str) -> Result<Option<KeyGrant>> {
        let row: Option<(String, Vec<u8>, bool, bool)> = sqlx::query_as(
            "SELECT k.name, k.secret_hash, k.revoked_at IS NOT NULL, \
                    EXISTS (SELECT 1 FROM client_grants g WHERE g.key_id = k.id AND g.client_id = $2) \
             FROM api_keys k WHERE k.id = $1",
        )
        .bind(key_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(key_name, secret_hash, revoked, client_allowed)| KeyGrant {
                key_name,
                secret_hash,
                revoked,
                client_allowed,
            },
        ))
    }

    async fn insert_receiving(&self, file: &NewFile) -> Result<()> {
        sqlx::query(
            "INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, state_changed_at) \
             VALUES ($1, $2, 'receiving', $3, $4, $5, $5)",
        )
        .bind(file.id)
        .bind(&file.client_id)
        .bind(&file.file_name)
        .bind(&file.staging_key)
        .bind(file.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_multipart_upload(&self, id: Uuid, upload_id: &str) -> Result<()> {
        sqlx::query("UPDATE files SET multipart_upload_id = $2 WHERE id = $1")
            .bind(id)
            .bind(upload_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_staged(&self, id: Uuid, facts: &StagedFacts) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET state = 'staged', content_type = $2, file_size = $3, sha256 = $4, \
                    uploaded_at = $5, expires_at = $6, state_changed_at = $5, multipart_upload_id = NULL \
             WHERE id = $1 AND state = 'receiving'",
        )
        .bind(id)
        .bind(&facts.content_type)
        .bind(facts.file_size)
        .bind(&facts.sha256)
        .bind(facts.uploaded_at)
        .bind(facts.expires_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(RepoError::Conflict(format!(
                "file {id} is no longer receiving"
            )))
        }
    }

    async fn delete_receiving(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1 AND state = 'receiving'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_file(&self, client_id: &str, id: Uuid) -> Result<Option<FileRecord>> {
        let row: Option<FileRow> = sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = $1 AND client_id = $2"
        ))
        .bind(id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(FileRecord::try_from).transpose()
    }

    async fn discard(&self, client_id: &str, id: Uuid) -> Result<Discard> {
        let row: Option<FileRow> = sqlx::query_as(concat!(
            "UPDATE files SET state = 'discarded', state_changed_at = now() \
             WHERE id = $1 AND client_id = $2 AND state = 'staged' RETURNING ",
            file_columns!()
        ))
        .bind(id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Discard::Discarded(Box::new(row.try_into()?)));
        }
        let state: Option<(String,)> =
            sqlx::query_as("SELECT state FROM files WHERE id = $1 AND client_id = $2")
                .bind(id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match state {
            None => Discard::NotFound,
            Some((state,)) => match parse_state(&state)? {
                FileState::Expired | FileState::Discarded => Discard::AlreadyGone,
                other => Discard::NotDiscardable(other),
            },
        })
    }

    async fn count_by_state(&self) -> Result<Vec<StateCount>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*), COALESCE(SUM(file_size), 0)::BIGINT FROM files GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(state, files, bytes)| {
                Ok(StateCount {
                    state: parse_state(&state)?,
                    files,
                    bytes,
                })
            })
            .collect()
    }
}
