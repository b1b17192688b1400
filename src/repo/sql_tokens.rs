//! The `TokenRepo` of both backends: upload tokens.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dialect::{DbId, DbTime, Dialect};
use super::sql::SqlRepo;
use super::{Result, TokenRepo, UploadTokenRecord};

/// A token is in force while neither it nor its key is revoked and the key may still act for
/// the token's client (`t` is the token's row).
macro_rules! in_force {
    () => {
        "t.revoked_at IS NULL \
         AND EXISTS (SELECT 1 FROM api_keys k WHERE k.id = t.key_id AND k.revoked_at IS NULL) \
         AND EXISTS (SELECT 1 FROM client_grants g \
                     WHERE g.key_id = t.key_id AND g.client_id = t.client_id)"
    };
}

#[async_trait]
impl<D: Dialect> TokenRepo for SqlRepo<D> {
    async fn create_upload_token(&self, token: &UploadTokenRecord) -> Result<()> {
        D::query(
            "INSERT INTO upload_tokens (id, client_id, key_id, secret_hash, expires_at, \
                 max_files, max_size, allowed_extensions, used, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)",
        )
        .bind(token.id)
        .bind(&token.client_id)
        .bind(token.key_id)
        .bind(token.secret_hash.as_slice())
        .bind(token.expires_at)
        .bind(token.max_files)
        .bind(token.max_size)
        .bind(&token.allowed_extensions)
        .bind(token.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upload_token(&self, id: Uuid) -> Result<Option<UploadTokenRecord>> {
        #[derive(sqlx::FromRow)]
        struct TokenRow {
            client_id: String,
            key_id: DbId,
            secret_hash: Vec<u8>,
            expires_at: DbTime,
            max_files: i32,
            max_size: i64,
            allowed_extensions: String,
            created_at: DbTime,
            used: i32,
            in_force: bool,
        }
        let row: Option<TokenRow> = D::query(concat!(
            "SELECT t.client_id, t.key_id, t.secret_hash, t.expires_at, t.max_files, t.max_size, \
                    t.allowed_extensions, t.created_at, t.used, (",
            in_force!(),
            ") AS in_force FROM upload_tokens t WHERE t.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| UploadTokenRecord {
            id,
            client_id: row.client_id,
            key_id: row.key_id.0,
            secret_hash: row.secret_hash,
            expires_at: row.expires_at.0,
            max_files: row.max_files,
            max_size: row.max_size,
            allowed_extensions: row.allowed_extensions,
            created_at: row.created_at.0,
            used: row.used,
            revoked: !row.in_force,
        }))
    }

    async fn use_upload_token(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let done = D::query(concat!(
            "UPDATE upload_tokens AS t SET used = used + 1 \
             WHERE t.id = $1 AND t.used < t.max_files AND t.expires_at > $2 AND ",
            in_force!()
        ))
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done == 1)
    }

    async fn revoke_upload_token(
        &self,
        client_id: &str,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = D::query(
            "UPDATE upload_tokens SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE id = $1 AND client_id = $2",
        )
        .bind(id)
        .bind(client_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done == 1)
    }

    async fn purge_upload_tokens(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = D::query("DELETE FROM upload_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done)
    }
}
