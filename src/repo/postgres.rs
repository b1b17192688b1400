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
    KeyGrant, KeySummary, NewFile, NewWebhook, PageCursor, RepoError, Result, SlotRow, StateCount,
    StorageStats, SweepRun, TextOutcome, UserErasure, parse_named,
};
use crate::domain::{
    ErasureReason, FileRecord, FileState, Slot, StagedFacts, TextStatus, WebhookRecord,
};
use crate::events::{DeliveryStatus, EventType};
use crate::repo::key_cache::KeyCache;

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

/// The deliveries of the events inserted by a statement's `e`: one for each endpoint of the
/// client (`$client`) in use and subscribed (`$pattern`), due at `$at`.
macro_rules! deliveries_of_e {
    ($at:literal, $client:literal, $pattern:literal) => {
        concat!(
            "INSERT INTO deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at) \
             SELECT e.id, ep.id, 'pending', 0, ", $at, " FROM e, event_endpoints ep \
             WHERE ep.client_id = ", $client, " AND ep.deleted_at IS NULL \
               AND (ep.event_types IS NULL OR ep.event_types LIKE ", $pattern, ") \
             ON CONFLICT DO NOTHING"
        )
    };
}

/// An event and its deliveries in one statement (`$7`: the subscription pattern).
const EVENT_WITH_DELIVERIES: Option<&str> = Some(concat!(
    "WITH e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) ",
    deliveries_of_e!("$5", "$2", "$7")
));

/// A received file staged (`$1`–`$6`) with its event (`$7`–`$10`, at `$5`) and deliveries
/// (`$11`: the subscription pattern), in one statement; whether it was still receiving.
const MARK_STAGED: Option<&str> = Some(concat!(
    "WITH u AS (UPDATE files SET state = 'staged', content_type = $2, file_size = $3, \
                       sha256 = $4, uploaded_at = $5, expires_at = $6, state_changed_at = $5, \
                       multipart_upload_id = NULL \
                WHERE id = $1 AND state = 'receiving' RETURNING id), \
     e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
           SELECT $7, $8, $9, $10, $5, u.id FROM u RETURNING id), \
     d AS (",
    deliveries_of_e!("$5", "$8", "$11"),
    ") SELECT EXISTS (SELECT 1 FROM u)"
));

/// A text job's outcome in one statement: the file's text status (`$1`–`$5`) where it is still
/// promoted and pending, its text (`$6`, if any), the event (`$7`–`$12`) and its deliveries; the
/// job deleted (`$13`). Whether the file took the outcome.
const FINISH_TEXT_JOB: Option<&str> = Some(concat!(
    "WITH u AS (UPDATE files SET text_status = $2, text_chars = $3, text_error = $4, \
                       text_reason = $5 \
                WHERE id = $1 AND state = 'promoted' AND text_status = 'pending' RETURNING id), \
     t AS (INSERT INTO file_texts (file_id, body) SELECT id, $6 FROM u WHERE $6::text IS NOT NULL \
           ON CONFLICT (file_id) DO UPDATE SET body = excluded.body), \
     e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
           SELECT $7, $8, $9, $10, $11, u.id FROM u RETURNING id), \
     j AS (DELETE FROM jobs WHERE id = $13), \
     d AS (",
    deliveries_of_e!("$11", "$8", "$12"),
    ") SELECT EXISTS (SELECT 1 FROM u)"
));

/// Dead rows hold erased values until VACUUM reclaims them (docs/security.md).
const AFTER_ERASURE: Option<&str> = None;

/// A direct upload's `receiving` row (`$1`–`$6`) and its declaration (`$7`, `$8`) in one
/// statement.
const INSERT_DIRECT: Option<&str> = Some(
    "WITH f AS (INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, \
                                  state_changed_at, active_at) \
                VALUES ($1, $2, 'receiving', $3, $4, $5, $5, $6) RETURNING id) \
     INSERT INTO direct_uploads (file_id, file_size, sha256, window_ends_at) \
         SELECT id, $7, $8, $6 FROM f",
);

/// A bound file promoted (`$1`: id, `$2`: long-term key, at `$3`) with its text job (`$4`, kind
/// `$5`) and its event (`$6`–`$9`) and deliveries (`$10`: the subscription pattern), in one
/// statement; whether it was still bound.
const PROMOTE_FILE: Option<&str> = Some(concat!(
    "WITH u AS (UPDATE files SET state = 'promoted', promoted_key = $2, promoted_at = $3, \
                       state_changed_at = $3, text_status = 'pending', text_chars = NULL, \
                       text_error = NULL, text_reason = NULL \
                WHERE id = $1 AND state = 'bound' RETURNING id), \
     j AS (INSERT INTO jobs (id, kind, file_id, attempts, run_at, created_at) \
           SELECT $4, $5, u.id, 0, $3, $3 FROM u ON CONFLICT DO NOTHING), \
     e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
           SELECT $6, $7, $8, $9, $3, u.id FROM u RETURNING id), \
     d AS (",
    deliveries_of_e!("$3", "$7", "$10"),
    ") SELECT EXISTS (SELECT 1 FROM u)"
));

/// With several sweepers, each row goes to one of them: the others skip the locked rows.
const EXPIRE_DUE: &str = concat!(
    "UPDATE files SET state = 'expired', state_changed_at = $1 \
     WHERE state = 'staged' AND id IN (SELECT id FROM files \
         WHERE state = 'staged' AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    file_columns!()
);

/// With several workers, each due job goes to one of them: the others skip the locked rows.
const CLAIM_JOBS: &str = claim_jobs!(" FOR UPDATE SKIP LOCKED");

const DELIVERIES_OF: &str = deliveries_of!("= ANY($1)");

/// A row lock an erasure's update waits for.
const PROMOTED_FILE: &str = promoted_file!(" FOR SHARE");

const OBJECTS_ERASED: &str = objects_erased!("= ANY($1)");

const WEBHOOKS_OF: &str = webhooks_of!("= ANY($1)");

/// With several sweepers, each file past its retention goes to one of them.
const RETAINED_DUE: &str = retained_due!(" FOR UPDATE SKIP LOCKED");

/// The fewest connections a replica can work with: the key-change listener, a request, a
/// relaxed write.
pub const MIN_CONNECTIONS: u32 = 3;

/// The PostgreSQL repository.
#[derive(Clone, Debug)]
pub struct PostgresRepo {
    pool: PgPool,
    /// Connections with `synchronous_commit = off`, for writes whose loss in a PostgreSQL crash
    /// is repaired by the sweeper (see `docs/decisions.md`): their commits do not wait for the
    /// WAL flush. Writes a client is promised (staged, bound) use `pool`.
    relaxed: PgPool,
    /// API keys already looked up (`src/repo/key_cache.rs`).
    keys: Arc<KeyCache>,
}

impl PostgresRepo {
    /// Connects and runs the PostgreSQL migrations.
    /// At most `max_connections` (at least 3) are open at once: a quarter (at least one) for
    /// the relaxed writes, the rest for everything else, the key-change listeners included.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let max_connections = max_connections.max(MIN_CONNECTIONS);
        let relaxed_connections = (max_connections / 4).max(1);
        let options = PgConnectOptions::from_str(url)?;
        // One direct connection first: a pool that cannot connect only says "timed out", this
        // says why (refused, unknown host, bad password, no such database).
        sqlx::Connection::close(
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await?,
        )
        .await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections - relaxed_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let relaxed = PgPoolOptions::new()
            .max_connections(relaxed_connections)
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
