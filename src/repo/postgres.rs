//! PostgreSQL: for production and for several replicas. Ids are `UUID`, times `TIMESTAMPTZ`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{
    ApiKeyRecord, AttemptLog, AttemptRecord, BindAttempt, ClaimedFile, ClientGrant, DeliveryRecord,
    Discard, DueDelivery, EndpointRecord, Erase, ErasedFile, EventRecord, FileFilter, Job,
    KeyGrant, KeySummary, NewFile, NewWebhook, PageCursor, Repo, RepoError, Result, SlotRow,
    StateCount, StorageStats, SweepRun, TextOutcome, UserErasure, parse_named,
};
use crate::domain::{
    ErasureReason, FileRecord, FileState, Slot, StagedFacts, TextStatus, WebhookRecord,
};
use crate::events::{DeliveryStatus, EventType};
use crate::key_cache::KeyCache;

type Id = Uuid;
type Conn = sqlx::PgConnection;
type Time = DateTime<Utc>;

fn id(id: Uuid) -> Id {
    id
}

fn uuid(id: Id) -> Result<Uuid> {
    Ok(id)
}

fn time(t: DateTime<Utc>) -> Time {
    t
}

fn utc(t: Time) -> Result<DateTime<Utc>> {
    Ok(t)
}

fn id_list(ids: &[Uuid]) -> Vec<Uuid> {
    ids.to_vec()
}

const BEGIN_WRITE: &str = "BEGIN";
/// Tells every replica's key cache that keys or grants changed (delivered at commit); the
/// payload is the changing process's token (see [`KeyEcho`]).
const NOTIFY_KEYS: &str = "SELECT pg_notify('stowage_keys', $1)";

/// Lets a key change return only once its notification has gone out to every listener: the
/// changing process listens too, and waits (up to 2 s) to hear its own token come back, so a
/// revocation made by the CLI or another replica is in force everywhere when it returns.
struct KeyEcho {
    listener: Option<sqlx::postgres::PgListener>,
    token: String,
}

impl KeyEcho {
    async fn listen(pool: &PgPool) -> KeyEcho {
        let token = Uuid::new_v4().to_string();
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
            listener.listen("stowage_keys").await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match listener {
            Ok(listener) => KeyEcho {
                listener: Some(listener),
                token,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for this key change's echo");
                KeyEcho {
                    listener: None,
                    token,
                }
            }
        }
    }

    fn token(&self) -> &str {
        &self.token
    }

    async fn heard(self) {
        let Some(mut listener) = self.listener else {
            return;
        };
        let heard = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(notification) = listener.recv().await {
                if notification.payload() == self.token {
                    return;
                }
            }
        })
        .await;
        if heard.is_err() {
            tracing::warn!("a key change's notification did not come back within 2 s");
        }
        // Every listener received it when this one did; give their tasks a moment to act.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The key-change signals, over a connection of its own (`LISTEN stowage_keys`).
async fn key_changes(
    pool: &PgPool,
    keys: &Arc<KeyCache>,
) -> Result<Option<Box<dyn super::KeyChanges>>> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen("stowage_keys").await?;
    keys.set_enabled(true);
    Ok(Some(Box::new(KeyListener {
        listener,
        keys: keys.clone(),
    })))
}

/// Empties the key cache at each notification; turns it off when lost or dropped.
struct KeyListener {
    listener: sqlx::postgres::PgListener,
    keys: Arc<KeyCache>,
}

#[async_trait]
impl super::KeyChanges for KeyListener {
    async fn next(&mut self) -> Result<()> {
        let received = self.listener.try_recv().await;
        match received {
            Ok(Some(_)) => {
                self.keys.clear();
                Ok(())
            }
            // The connection dropped: signals sent meanwhile are lost.
            Ok(None) => {
                self.keys.set_enabled(false);
                Err(RepoError::Setup(
                    "the key-change listener lost its connection".into(),
                ))
            }
            Err(e) => {
                self.keys.set_enabled(false);
                Err(e.into())
            }
        }
    }
}

impl Drop for KeyListener {
    fn drop(&mut self) {
        self.keys.set_enabled(false);
    }
}

const FILE_STATES: &str = "SELECT id, state FROM files WHERE id = ANY($1)";

/// With several sweepers, each row goes to one of them: the others skip the locked rows.
const EXPIRE_DUE: &str = concat!(
    "UPDATE files SET state = 'expired', state_changed_at = $1 \
     WHERE state = 'staged' AND id IN (SELECT id FROM files \
         WHERE state = 'staged' AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    file_columns!()
);

/// With several workers, each due delivery goes to one of them: the others skip the locked rows.
const CLAIM_DUE: &str = claim_due!(" FOR UPDATE OF d SKIP LOCKED");

/// With several workers, each due job goes to one of them: the others skip the locked rows.
const CLAIM_JOBS: &str = claim_jobs!(" FOR UPDATE SKIP LOCKED");

const DELIVERIES_OF: &str = deliveries_of!("= ANY($1)");

/// A row lock an erasure's update waits for.
const PROMOTED_FILE: &str = promoted_file!(" FOR SHARE");

const OBJECTS_ERASED: &str = objects_erased!("= ANY($1)");

const WEBHOOKS_OF: &str = webhooks_of!("= ANY($1)");

/// With several sweepers, each file past its retention goes to one of them.
const RETAINED_DUE: &str = retained_due!(" FOR UPDATE SKIP LOCKED");

/// The PostgreSQL repository.
#[derive(Clone, Debug)]
pub struct PostgresRepo {
    pool: PgPool,
    /// Connections with `synchronous_commit = off`, for writes whose loss in a PostgreSQL crash
    /// is repaired by the sweeper (see `docs/decisions.md`): their commits do not wait for the
    /// WAL flush. Writes a client is promised (staged, bound) use `pool`.
    relaxed: PgPool,
    /// API keys already looked up (`src/key_cache.rs`).
    keys: Arc<KeyCache>,
}

impl PostgresRepo {
    /// Connects and runs the PostgreSQL migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        // One direct connection first: a pool that cannot connect only says "timed out", this
        // says why (refused, unknown host, bad password, no such database).
        sqlx::Connection::close(
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await?,
        )
        .await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let relaxed = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy_with(options.options([("synchronous_commit", "off")]));
        Ok(PostgresRepo {
            pool,
            relaxed,
            keys: Default::default(),
        })
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_repo!(PostgresRepo);
