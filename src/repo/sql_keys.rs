//! The `KeyRepo` of both backends: API keys and grants.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dialect::{DbId, DbTime, Dialect};
use super::sql::SqlRepo;
use super::{ApiKeyRecord, ClientGrant, KeyGrant, KeyRepo, KeySummary, RepoError, Result};

#[async_trait]
impl<D: Dialect> KeyRepo for SqlRepo<D> {
    async fn has_keys(&self) -> Result<bool> {
        let (any,): (bool,) = D::query("SELECT EXISTS (SELECT 1 FROM api_keys)")
            .fetch_one(&self.pool)
            .await?;
        Ok(any)
    }

    async fn create_key(&self, key_id: Uuid, name: &str, secret_hash: &[u8]) -> Result<()> {
        D::query(
            "INSERT INTO api_keys (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(name)
        .bind(secret_hash)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_key(&self, name: &str) -> Result<Option<ApiKeyRecord>> {
        let row: Option<(DbId, String, bool)> =
            D::query("SELECT id, name, revoked_at IS NOT NULL FROM api_keys WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(key_id, name, revoked)| {
            Ok(ApiKeyRecord {
                id: key_id.0,
                name,
                revoked,
            })
        })
        .transpose()
    }

    async fn revoke_key(&self, name: &str) -> Result<bool> {
        let echo = D::listen_for_echo(&self.pool).await;
        let mut tx = self.pool.begin().await?;
        let done =
            D::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1")
                .bind(name)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
        Self::key_change_done(tx, echo, &self.keys).await?;
        Ok(done > 0)
    }

    async fn key_changes(&self) -> Result<Option<Box<dyn super::KeyChanges>>> {
        D::key_changes(&self.pool, &self.keys).await
    }

    async fn grant_client(&self, key_id: Uuid, client_id: &str, workspace: &str) -> Result<()> {
        let echo = D::listen_for_echo(&self.pool).await;
        let mut tx = self.pool.begin().await?;
        D::query(
            "INSERT INTO client_grants (key_id, client_id, workspace, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key_id, client_id) DO UPDATE SET workspace = excluded.workspace",
        )
        .bind(key_id)
        .bind(client_id)
        .bind(workspace)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        D::query(
            "INSERT INTO client_workspaces (client_id, workspace) VALUES ($1, $2) \
             ON CONFLICT (client_id) DO UPDATE SET workspace = excluded.workspace",
        )
        .bind(client_id)
        .bind(workspace)
        .execute(&mut *tx)
        .await?;
        Self::key_change_done(tx, echo, &self.keys).await?;
        Ok(())
    }

    async fn key_grant(&self, key_id: Uuid, client_id: &str) -> Result<Option<KeyGrant>> {
        if let Some(grant) = self.keys.get(key_id, client_id) {
            return Ok(Some(grant));
        }
        let lookup = self.keys.begin();
        let row: Option<(String, Vec<u8>, bool, Option<DbTime>, bool)> = D::query(
            "SELECT k.name, k.secret_hash, k.revoked_at IS NOT NULL, k.last_used_at, EXISTS \
                 (SELECT 1 FROM client_grants g WHERE g.key_id = k.id AND g.client_id = $2) \
             FROM api_keys k WHERE k.id = $1",
        )
        .bind(key_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        let grant = row
            .map(
                |(key_name, secret_hash, revoked, last_used_at, client_allowed)| {
                    Ok::<_, RepoError>(KeyGrant {
                        key_name,
                        secret_hash,
                        revoked,
                        last_used_at: last_used_at.map(|t| t.0),
                        client_allowed,
                    })
                },
            )
            .transpose()?;
        if let Some(grant) = &grant {
            self.keys.put(lookup, key_id, client_id, grant);
        }
        Ok(grant)
    }

    fn keys_cached(&self) -> bool {
        self.keys.is_on()
    }

    async fn key_used(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<()> {
        D::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(key_id)
        .bind(at)
        .execute(&self.relaxed)
        .await?;
        self.keys.used(key_id, at);
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<KeySummary>> {
        let keys: Vec<(DbId, String, DbTime, Option<DbTime>, Option<DbTime>)> = D::query(
            "SELECT id, name, created_at, revoked_at, last_used_at FROM api_keys ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let grants: Vec<(DbId, String)> =
            D::query("SELECT key_id, client_id FROM client_grants ORDER BY client_id")
                .fetch_all(&self.pool)
                .await?;
        keys.into_iter()
            .map(|(key_id, name, created_at, revoked_at, last_used_at)| {
                Ok(KeySummary {
                    client_ids: grants
                        .iter()
                        .filter(|(k, _)| *k == key_id)
                        .map(|(_, c)| c.clone())
                        .collect(),
                    name,
                    created_at: created_at.0,
                    revoked_at: revoked_at.map(|t| t.0),
                    last_used_at: last_used_at.map(|t| t.0),
                })
            })
            .collect()
    }

    async fn list_clients(&self) -> Result<Vec<ClientGrant>> {
        let rows: Vec<(String, String, String, bool, DbTime)> = D::query(
            "SELECT g.client_id, g.workspace, k.name, k.revoked_at IS NOT NULL, g.created_at \
             FROM client_grants g JOIN api_keys k ON k.id = g.key_id \
             ORDER BY g.client_id, k.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(client_id, workspace, key_name, key_revoked, created_at)| {
                    Ok(ClientGrant {
                        client_id,
                        workspace,
                        key_name,
                        key_revoked,
                        created_at: created_at.0,
                    })
                },
            )
            .collect()
    }

    async fn client_workspace(&self, client_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            D::query("SELECT workspace FROM client_workspaces WHERE client_id = $1")
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(workspace,)| workspace))
    }

    async fn remove_client(&self, client_id: &str, key_name: Option<&str>) -> Result<u64> {
        let echo = D::listen_for_echo(&self.pool).await;
        let mut tx = self.pool.begin().await?;
        let done = D::query(
            "DELETE FROM client_grants WHERE client_id = $1 \
             AND ($2 IS NULL OR key_id IN (SELECT id FROM api_keys WHERE name = $2))",
        )
        .bind(client_id)
        .bind(key_name)
        .execute(&mut *tx)
        .await?;
        Self::key_change_done(tx, echo, &self.keys).await?;
        Ok(done)
    }
}
