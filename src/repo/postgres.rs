//! PostgreSQL: for production and for several replicas. Ids are `UUID`, times `TIMESTAMPTZ`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Arguments as _;
use sqlx::error::BoxDynError;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgTypeInfo, PgValueRef, Postgres,
};
use sqlx::{Decode, Type};
use uuid::Uuid;

use super::dialect::{Arg, DbId, DbTime, Decoded, Dialect, On};
use super::sql::SqlRepo;
use super::{AttemptRecord, NewFile, RepoError, Result, TextWrite};
use crate::domain::{DirectUpload, StagedFacts};
use crate::event_model::NewEvent;
use crate::repo::key_cache::KeyCache;

impl Type<Postgres> for DbId {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Uuid as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for DbId {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        Ok(DbId(<Uuid as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <chrono::DateTime<chrono::Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <chrono::DateTime<chrono::Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        Ok(DbTime(<chrono::DateTime<chrono::Utc> as Decode<
            Postgres,
        >>::decode(value)?))
    }
}

/// The arguments of a statement in PostgreSQL's types: ids as `UUID`, times as `TIMESTAMPTZ`,
/// id lists as `UUID[]`.
fn arguments(args: Vec<Arg<'_>>) -> Result<PgArguments> {
    let mut out = PgArguments::default();
    for arg in args {
        match arg {
            Arg::Text(v) => out.add(v),
            Arg::String(v) => out.add(v),
            Arg::Int(v) => out.add(v),
            Arg::Int32(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Bytes(v) => out.add(v),
            Arg::Id(v) => out.add(v),
            Arg::Time(v) => out.add(v),
            Arg::Ids(v) => out.add(v),
            Arg::Texts(v) => out.add(v),
            Arg::Times(v) => out.add(v),
            Arg::MaybeIds(v) => out.add(v),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

/// PostgreSQL.
#[derive(Clone, Copy, Debug)]
pub struct Pg;

impl Dialect for Pg {
    type Db = Postgres;
    type Echo = KeyEcho;

    const BEGIN_WRITE: &'static str = "BEGIN";
    /// Tells every replica's key cache that keys or grants changed (delivered at commit); the
    /// payload is the changing process's token (see [`KeyEcho`]).
    const NOTIFY_KEYS: &'static str = "SELECT pg_notify('stowage_keys', $1)";
    /// Dead rows hold erased values until VACUUM reclaims them (docs/security.md).
    const AFTER_ERASURE: Option<&'static str> = None;
    const FILE_STATES: &'static str = "SELECT id, state FROM files WHERE id = ANY($1)";
    /// Each endpoint's candidates come from a `LATERAL` scan stopped by its `LIMIT`, whatever
    /// the planner's estimates (a join bounded by a per-endpoint time was planned as a scan of
    /// every pending delivery). The picked rows are locked with `SKIP LOCKED`: a delivery
    /// another transaction holds (an endpoint's removal failing its backlog, another replica's
    /// write) is left for a later claim instead of holding up every client's in this one.
    /// A delivery whose event is gone (no foreign key keeps them together: migration 0021; the
    /// purge deletes deliveries first) is never claimed, so it cannot stop the others.
    const CLAIM_DELIVERIES: &'static str = concat!(
        "UPDATE deliveries SET leased_until = $2 \
         WHERE status = 'pending' AND (leased_until IS NULL OR leased_until <= $1) \
           AND (event_id, endpoint_id) IN (SELECT locked.event_id, locked.endpoint_id FROM ( \
           SELECT event_id, endpoint_id FROM ( \
             SELECT c.event_id, c.endpoint_id, c.next_attempt_at, \
                    ROW_NUMBER() OVER (PARTITION BY e.client_id \
                                       ORDER BY c.turn, c.next_attempt_at) AS client_turn \
             FROM event_endpoints e \
             CROSS JOIN LATERAL (SELECT COUNT(*) AS busy FROM deliveries b \
                                 WHERE b.endpoint_id = e.id AND b.status = 'pending' \
                                   AND b.leased_until > $1) l \
             CROSS JOIN LATERAL ( \
               SELECT d.event_id, d.endpoint_id, d.next_attempt_at, \
                      ROW_NUMBER() OVER (ORDER BY d.next_attempt_at, d.event_id) AS turn \
               FROM deliveries d \
               WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= $1 \
                 AND (d.leased_until IS NULL OR d.leased_until <= $1) \
                 AND EXISTS (SELECT 1 FROM events ev WHERE ev.id = d.event_id) \
               ORDER BY d.next_attempt_at, d.event_id \
               LIMIT GREATEST($4 - l.busy, 0)) c \
             WHERE e.deleted_at IS NULL AND e.disabled_at IS NULL) fair \
           ORDER BY client_turn, next_attempt_at LIMIT $3) picked \
           JOIN deliveries locked ON locked.event_id = picked.event_id \
             AND locked.endpoint_id = picked.endpoint_id \
           FOR UPDATE OF locked SKIP LOCKED)",
        claimed_delivery!()
    );
    /// With several sweepers, each row goes to one of them: the others skip the locked rows.
    /// The claimed ids are an array the update looks up by key: with `IN (SELECT …)` the
    /// planner read every staged row to hash-join them (40 → 25 ms a batch of 1,000 at 100,000
    /// files, and flat as the table grows).
    const EXPIRE_DUE: &'static str = concat!(
        "UPDATE files SET state = 'expired', state_changed_at = $1 \
         WHERE state = 'staged' AND id = ANY(ARRAY(SELECT id FROM files \
             WHERE state = 'staged' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)) \
         RETURNING ",
        file_columns!()
    );
    /// With several workers, each due job goes to one of them: the others skip the locked rows.
    /// The claimed ids are an array the update looks up by key, as `EXPIRE_DUE`'s: at 100,000
    /// due jobs, 0.7 ms planning + 0.6 ms a claim with `IN (SELECT …)`, 0.1 + 0.19 ms so.
    const CLAIM_JOBS: &'static str = claim_jobs!("= ANY(ARRAY(", " FOR UPDATE SKIP LOCKED", "))");
    const DELIVERIES_OF: &'static str = deliveries_of!("= ANY($1)");
    /// A row lock an erasure's update waits for.
    const PROMOTED_FILE: &'static str = promoted_file!(" FOR SHARE");
    const OBJECTS_ERASED: &'static str = objects_erased!("= ANY($1)");
    const WEBHOOKS_OF: &'static str = webhooks_of!("= ANY($1)");
    /// With several sweepers, each file past its retention goes to one of them.
    const RETAINED_DUE: &'static str = retained_due!(" FOR UPDATE SKIP LOCKED");

    async fn execute(sql: &'static str, args: Vec<Arg<'_>>, on: On<'_, Self>) -> Result<u64> {
        let query = sqlx::query_with(sql, arguments(args)?);
        let done = match on {
            On::Pool(pool) => query.execute(pool).await?,
            On::Conn(conn) => query.execute(conn).await?,
        };
        Ok(done.rows_affected())
    }

    async fn fetch_all<T: Decoded>(
        sql: &'static str,
        args: Vec<Arg<'_>>,
        on: On<'_, Self>,
    ) -> Result<Vec<T>> {
        let query = sqlx::query_as_with::<_, T, _>(sql, arguments(args)?);
        Ok(match on {
            On::Pool(pool) => query.fetch_all(pool).await?,
            On::Conn(conn) => query.fetch_all(conn).await?,
        })
    }

    async fn fetch_optional<T: Decoded>(
        sql: &'static str,
        args: Vec<Arg<'_>>,
        on: On<'_, Self>,
    ) -> Result<Option<T>> {
        let query = sqlx::query_as_with::<_, T, _>(sql, arguments(args)?);
        Ok(match on {
            On::Pool(pool) => query.fetch_optional(pool).await?,
            On::Conn(conn) => query.fetch_optional(conn).await?,
        })
    }

    /// An event and its deliveries in one statement.
    async fn write_event(conn: &mut sqlx::PgConnection, event: &NewEvent) -> Result<()> {
        Pg::query(EVENT_WITH_DELIVERIES)
            .bind(event.id)
            .bind(&event.client_id)
            .bind(event.event_type.as_str())
            .bind(&event.body)
            .bind(event.created_at)
            .bind(event.file_id)
            .bind(event.event_type.subscription_pattern())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Every event and every delivery of a batch in one statement, however long the batch.
    async fn write_events(conn: &mut sqlx::PgConnection, events: &[NewEvent]) -> Result<()> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        debug_assert!(events.iter().all(|e| e.event_type == first.event_type));
        Pg::query(EVENTS_WITH_DELIVERIES)
            .bind(Arg::Ids(events.iter().map(|e| e.id).collect()))
            .bind(Arg::Texts(
                events.iter().map(|e| e.client_id.clone()).collect(),
            ))
            .bind(first.event_type.as_str())
            .bind(Arg::Texts(events.iter().map(|e| e.body.clone()).collect()))
            .bind(Arg::Times(events.iter().map(|e| e.created_at).collect()))
            .bind(Arg::MaybeIds(events.iter().map(|e| e.file_id).collect()))
            .bind(first.event_type.subscription_pattern())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The text, the jobs and the declaration in one statement, which returns the earlier
    /// events.
    async fn erase_remains(
        conn: &mut sqlx::PgConnection,
        file_id: Uuid,
    ) -> Result<Vec<(DbId, String)>> {
        Pg::query(ERASE_REMAINS).bind(file_id).fetch_all(conn).await
    }

    /// Every body in one statement.
    async fn replace_event_bodies(
        conn: &mut sqlx::PgConnection,
        bodies: &[(Uuid, String)],
    ) -> Result<()> {
        Pg::query(
            "UPDATE events SET body = r.body \
             FROM UNNEST($1::uuid[], $2::text[]) AS r (id, body) WHERE events.id = r.id",
        )
        .bind(Arg::Ids(bodies.iter().map(|(id, _)| *id).collect()))
        .bind(Arg::Texts(
            bodies.iter().map(|(_, body)| body.clone()).collect(),
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The file, its event and the event's deliveries in one statement.
    async fn mark_staged(
        pool: &PgPool,
        file_id: Uuid,
        facts: &StagedFacts,
        event: &NewEvent,
    ) -> Result<bool> {
        let (changed,): (bool,) = Pg::query(MARK_STAGED)
            .bind(file_id)
            .bind(&facts.content_type)
            .bind(facts.file_size)
            .bind(&facts.sha256)
            .bind(facts.uploaded_at)
            .bind(facts.expires_at)
            .bind(event.id)
            .bind(&event.client_id)
            .bind(event.event_type.as_str())
            .bind(&event.body)
            .bind(event.event_type.subscription_pattern())
            .bind(facts.scan.as_ref().map(|s| s.status.as_str()))
            .bind(facts.scan.as_ref().and_then(|s| s.engine.as_deref()))
            .bind(facts.scan.as_ref().and_then(|s| s.signatures.as_deref()))
            .fetch_one(pool)
            .await?;
        Ok(changed)
    }

    /// The file, its text job, its event and the event's deliveries in one statement.
    async fn promote(
        conn: &mut sqlx::PgConnection,
        file_id: Uuid,
        key: &str,
        event: &NewEvent,
    ) -> Result<bool> {
        let (changed,): (bool,) = Pg::query(PROMOTE_FILE)
            .bind(file_id)
            .bind(key)
            .bind(event.created_at)
            .bind(Uuid::new_v4())
            .bind(crate::domain::JobKind::ExtractText.as_str())
            .bind(event.id)
            .bind(&event.client_id)
            .bind(event.event_type.as_str())
            .bind(&event.body)
            .bind(event.event_type.subscription_pattern())
            .fetch_one(conn)
            .await?;
        Ok(changed)
    }

    /// The delivery's state, the attempt's row and the end of a run of failures in one
    /// statement.
    async fn record_attempt(pool: &PgPool, attempt: &AttemptRecord) -> Result<bool> {
        let (recorded,): (bool,) = super::sql::bind_delivery(Pg::query(RECORD_ATTEMPT), attempt)
            .bind(attempt.duration_ms)
            .fetch_one(pool)
            .await?;
        Ok(recorded)
    }

    /// The outcome, the text, the event, its deliveries and the job's end in one statement.
    async fn finish_text_job(pool: &PgPool, write: TextWrite<'_>) -> Result<bool> {
        let failure = write.state.failure.as_ref();
        let (taken,): (bool,) = Pg::query(FINISH_TEXT_JOB)
            .bind(write.file_id)
            .bind(write.state.status.as_str())
            .bind(write.state.chars)
            .bind(failure.map(|f| f.message.as_str()))
            .bind(failure.map(|f| f.reason.as_str()))
            .bind(write.text)
            .bind(write.event.id)
            .bind(&write.event.client_id)
            .bind(write.event.event_type.as_str())
            .bind(&write.event.body)
            .bind(write.event.created_at)
            .bind(write.event.event_type.subscription_pattern())
            .bind(write.job_id)
            .bind(write.state.source.map(|s| s.as_str()))
            .fetch_one(pool)
            .await?;
        Ok(taken)
    }

    /// The file row and its declaration in one statement.
    async fn insert_direct(pool: &PgPool, file: &NewFile, direct: &DirectUpload) -> Result<()> {
        Pg::query(INSERT_DIRECT)
            .bind(file.id)
            .bind(&file.client_id)
            .bind(&file.file_name)
            .bind(&file.staging_key)
            .bind(file.created_at)
            .bind(direct.window_ends_at)
            .bind(direct.file_size)
            .bind(&direct.sha256)
            .bind(direct.upload_token)
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn listen_for_echo(pool: &PgPool) -> KeyEcho {
        KeyEcho::listen(pool).await
    }

    async fn key_changes(
        pool: &PgPool,
        keys: &Arc<KeyCache>,
    ) -> Result<Option<Box<dyn super::KeyChanges>>> {
        key_changes(pool, keys).await
    }
}

/// Lets a key change return only once its notification has gone out to every listener: the
/// changing process listens too, and waits (up to 2 s) to hear its own token come back, so a
/// revocation made by the CLI or another replica is in force everywhere when it returns.
pub struct KeyEcho {
    listener: Option<sqlx::postgres::PgListener>,
    token: String,
}

impl super::dialect::KeyEcho for KeyEcho {
    fn token(&self) -> &str {
        &self.token
    }

    async fn heard(self) {
        KeyEcho::heard(self).await
    }
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

/// The deliveries of the events inserted by a statement's `e`: one for each endpoint of the
/// client (`$client`) in use and subscribed (`$pattern`), due at `$at`.
macro_rules! deliveries_of_e {
    ($at:literal, $client:literal, $pattern:literal) => {
        concat!(
            "INSERT INTO deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at) \
             SELECT e.id, ep.id, 'pending', 0, ", $at, " FROM e, event_endpoints ep \
             WHERE ep.client_id = ", $client, " AND ep.deleted_at IS NULL \
               AND ep.disabled_at IS NULL \
               AND (ep.event_types IS NULL OR ep.event_types LIKE ", $pattern, ") \
             ON CONFLICT DO NOTHING"
        )
    };
}

/// An event and its deliveries in one statement (`$7`: the subscription pattern).
const EVENT_WITH_DELIVERIES: &str = concat!(
    "WITH e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) ",
    deliveries_of_e!("$5", "$2", "$7")
);

/// Events of one type (`$3`; ids, clients, bodies, times and files as arrays `$1`, `$2`, `$4`,
/// `$5`, `$6`) and their deliveries (`$7`: the subscription pattern), in one statement.
const EVENTS_WITH_DELIVERIES: &str = "WITH e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
                SELECT id, client_id, $3, body, created_at, file_id \
                FROM UNNEST($1::uuid[], $2::text[], $4::text[], $5::timestamptz[], $6::uuid[]) \
                     AS b (id, client_id, body, created_at, file_id) \
                RETURNING id, client_id, created_at) \
     INSERT INTO deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at) \
     SELECT e.id, ep.id, 'pending', 0, e.created_at FROM e \
     JOIN event_endpoints ep ON ep.client_id = e.client_id \
     WHERE ep.deleted_at IS NULL AND ep.disabled_at IS NULL \
       AND (ep.event_types IS NULL OR ep.event_types LIKE $7) \
     ON CONFLICT DO NOTHING";

/// What an erased file leaves besides its row (`$1`), deleted as `erase_remains_by_steps`
/// does, and its earlier events.
const ERASE_REMAINS: &str = "WITH t AS (DELETE FROM file_texts WHERE file_id = $1), \
          j AS (DELETE FROM jobs WHERE file_id = $1), \
          d AS (UPDATE direct_uploads SET file_size = NULL, sha256 = NULL, refusal = NULL \
                WHERE file_id = $1) \
     SELECT id, body FROM events WHERE file_id = $1 AND event_type <> 'file.erased'";

/// A received file staged (`$1`–`$6`) with its event (`$7`–`$10`, at `$5`) and deliveries
/// (`$11`: the subscription pattern), in one statement; whether it was still receiving.
const MARK_STAGED: &str = concat!(
    "WITH u AS (UPDATE files SET state = 'staged', content_type = $2, file_size = $3, \
                       sha256 = $4, uploaded_at = $5, expires_at = $6, state_changed_at = $5, \
                       multipart_upload_id = NULL, scan_status = $12, scan_engine = $13, \
                       scan_signatures = $14 \
                WHERE id = $1 AND state = 'receiving' RETURNING id), \
     e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
           SELECT $7, $8, $9, $10, $5, u.id FROM u RETURNING id), \
     d AS (",
    deliveries_of_e!("$5", "$8", "$11"),
    ") SELECT EXISTS (SELECT 1 FROM u)"
);

/// A delivery attempt in one statement: the delivery's state (`record_delivery!`, `$1`–`$8`)
/// and, if it was still at the attempt before, the attempt's row (`$9`: its duration in ms)
/// and, if it delivered, the end of its endpoint's run of failures; whether it was. The
/// endpoint's row is skipped while another transaction holds it (disabling, changing or
/// removing the endpoint; the first and last then wait for this delivery's row, so waiting here
/// could deadlock): the endpoint's next delivery ends the run then.
const RECORD_ATTEMPT: &str = concat!(
    "WITH u AS (",
    record_delivery!(),
    " RETURNING event_id), \
     a AS (INSERT INTO delivery_attempts (event_id, endpoint_id, attempt, attempted_at, \
                                         duration_ms, response_status_code, error_message) \
           SELECT $1, $2, $4, $6, $9, $7, $8 FROM u ON CONFLICT DO NOTHING), \
     e AS (UPDATE event_endpoints SET failing_since = NULL \
           WHERE id = ANY(ARRAY(SELECT id FROM event_endpoints \
               WHERE id = $2 AND failing_since IS NOT NULL AND $3 = 'delivered' \
                 AND EXISTS (SELECT 1 FROM u) FOR UPDATE SKIP LOCKED))) \
     SELECT EXISTS (SELECT 1 FROM u)"
);

/// A text job's outcome in one statement: the file's text status (`$1`–`$5`, `$14`) where it is still
/// promoted and pending, its text (`$6`, if any), the event (`$7`–`$12`) and its deliveries; the
/// job deleted (`$13`). Whether the file took the outcome.
const FINISH_TEXT_JOB: &str = concat!(
    "WITH u AS (UPDATE files SET text_status = $2, text_chars = $3, text_error = $4, \
                       text_reason = $5, text_source = $14 \
                WHERE id = $1 AND state = 'promoted' AND text_status = 'pending' RETURNING id), \
     t AS (INSERT INTO file_texts (file_id, body) SELECT id, $6 FROM u WHERE $6::text IS NOT NULL \
           ON CONFLICT (file_id) DO UPDATE SET body = excluded.body), \
     e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
           SELECT $7, $8, $9, $10, $11, u.id FROM u RETURNING id), \
     j AS (DELETE FROM jobs WHERE id = $13), \
     d AS (",
    deliveries_of_e!("$11", "$8", "$12"),
    ") SELECT EXISTS (SELECT 1 FROM u)"
);

/// A direct upload's `receiving` row (`$1`–`$6`) and its declaration (`$7`, `$8`) in one
/// statement.
const INSERT_DIRECT: &str = "WITH f AS (INSERT INTO files (id, client_id, state, file_name, staging_key, created_at, \
                                  state_changed_at, active_at) \
                VALUES ($1, $2, 'receiving', $3, $4, $5, $5, $6) RETURNING id) \
     INSERT INTO direct_uploads (file_id, file_size, sha256, window_ends_at, upload_token) \
         SELECT id, $7, $8, $6, $9 FROM f";

/// A bound file promoted (`$1`: id, `$2`: long-term key, at `$3`) with its text job (`$4`, kind
/// `$5`) and its event (`$6`–`$9`) and deliveries (`$10`: the subscription pattern), in one
/// statement; whether it was still bound.
const PROMOTE_FILE: &str = concat!(
    "WITH u AS (UPDATE files SET state = 'promoted', promoted_key = $2, promoted_at = $3, \
                       state_changed_at = $3, text_status = 'pending', text_chars = NULL, \
                       text_error = NULL, text_reason = NULL, text_source = NULL \
                WHERE id = $1 AND state = 'bound' RETURNING id), \
     j AS (INSERT INTO jobs (id, kind, file_id, attempts, run_at, created_at) \
           SELECT $4, $5, u.id, 0, $3, $3 FROM u ON CONFLICT DO NOTHING), \
     e AS (INSERT INTO events (id, client_id, event_type, body, created_at, file_id) \
           SELECT $6, $7, $8, $9, $3, u.id FROM u RETURNING id), \
     d AS (",
    deliveries_of_e!("$3", "$7", "$10"),
    ") SELECT EXISTS (SELECT 1 FROM u)"
);

/// The fewest connections a replica can work with: the key-change listener, a request, a
/// relaxed write.
pub const MIN_CONNECTIONS: u32 = 3;

/// The PostgreSQL repository. Its `relaxed` pool's connections have `synchronous_commit = off`,
/// for writes whose loss in a PostgreSQL crash is repaired by the sweeper (see
/// `docs/decisions.md`): their commits do not wait for the WAL flush. Writes a client is
/// promised (staged, bound) use `pool`.
pub type PostgresRepo = SqlRepo<Pg>;

impl SqlRepo<Pg> {
    /// Connects and runs the PostgreSQL migrations.
    /// At most `max_connections` (at least 3) are open at once: a quarter (at least one) for
    /// the relaxed writes, the rest for everything else, the key-change listeners included.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let max_connections = max_connections.max(MIN_CONNECTIONS);
        let relaxed_connections = (max_connections / 4).max(1);
        // No JIT compilation: a statement whose plan is estimated dear (the delivery claim's,
        // before the LIMITs that bound it) would pay tens of milliseconds of compiling for a
        // millisecond of work; every statement of the service is short.
        let options = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
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
        Ok(SqlRepo::new(pool, relaxed))
    }
}
