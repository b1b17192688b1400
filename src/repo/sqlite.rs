//! SQLite: the embedded default, for a first run and small single-process installs.
//!
//! Ids are stored as hyphenated TEXT and times as INTEGER microseconds since the Unix epoch.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use sqlx::Arguments as _;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Type};
use uuid::Uuid;

use super::dialect::{Arg, DbId, DbTime, Decoded, Dialect, KeyEcho, On};
use super::key_cache::KeyCache;
use super::sql::SqlRepo;
use super::{KeyChanges, RepoError, Result};

impl Type<Sqlite> for DbId {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbId {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        Ok(DbId(Uuid::parse_str(<&str as Decode<Sqlite>>::decode(
            value,
        )?)?))
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        let us = <i64 as Decode<Sqlite>>::decode(value)?;
        Ok(DbTime(
            DateTime::from_timestamp_micros(us).ok_or_else(|| format!("time {us}"))?,
        ))
    }
}

/// The arguments of a statement in SQLite's types: ids as hyphenated TEXT, times as INTEGER
/// microseconds, id lists as the JSON array `json_each` reads.
fn arguments(args: Vec<Arg<'_>>) -> Result<SqliteArguments> {
    let mut out = SqliteArguments::default();
    for arg in args {
        match arg {
            Arg::Text(v) => out.add(v.map(str::to_owned)),
            Arg::String(v) => out.add(v),
            Arg::Int(v) => out.add(v),
            Arg::Int32(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Bytes(v) => out.add(v.to_vec()),
            Arg::Id(v) => out.add(v.map(|id| id.to_string())),
            Arg::Time(v) => out.add(v.map(|t| t.timestamp_micros())),
            Arg::Ids(v) => out.add(
                serde_json::to_string(&v.iter().map(Uuid::to_string).collect::<Vec<_>>())
                    .expect("ids serialize"),
            ),
            Arg::Texts(v) => out.add(serde_json::to_string(&v).expect("texts serialize")),
            Arg::Times(v) => out.add(
                serde_json::to_string(&v.iter().map(|t| t.timestamp_micros()).collect::<Vec<_>>())
                    .expect("times serialize"),
            ),
            Arg::MaybeIds(v) => out.add(
                serde_json::to_string(
                    &v.iter()
                        .map(|id| id.map(|id| id.to_string()))
                        .collect::<Vec<_>>(),
                )
                .expect("ids serialize"),
            ),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

/// SQLite.
#[derive(Clone, Copy, Debug)]
pub struct Lite;

/// Nothing to wait for: SQLite caches no keys.
pub struct NoEcho;

impl KeyEcho for NoEcho {
    fn token(&self) -> &str {
        ""
    }

    async fn heard(self) {}
}

impl Dialect for Lite {
    type Db = Sqlite;
    type Echo = NoEcho;

    /// IMMEDIATE takes the write lock before anything is read, so concurrent writers (binds,
    /// the sweeper's claim) queue on the busy timeout instead of racing on a stale read
    /// snapshot.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// SQLite signals nothing: keys are not cached (see `src/repo/key_cache.rs`).
    const NOTIFY_KEYS: &'static str = "SELECT $1";
    /// After an erasure commits, the write-ahead log (which still holds the pages as they
    /// were) is copied into the database and emptied, so erased values are gone from the files
    /// on disk.
    const AFTER_ERASURE: Option<&'static str> = Some("PRAGMA wal_checkpoint(TRUNCATE)");
    const FILE_STATES: &'static str =
        "SELECT id, state FROM files WHERE id IN (SELECT value FROM json_each($1))";
    /// Without `LATERAL`: each endpoint's `$4`-th due time (`until`) bounds its candidates.
    const CLAIM_DELIVERIES: &'static str = concat!(
        "WITH ep AS MATERIALIZED ( \
             SELECT e.id, e.client_id, \
                    (SELECT COUNT(*) FROM deliveries b WHERE b.endpoint_id = e.id \
                       AND b.status = 'pending' AND b.leased_until > $1) AS busy, \
                    COALESCE((SELECT x.next_attempt_at FROM deliveries x \
                              WHERE x.endpoint_id = e.id AND x.status = 'pending' \
                                AND x.next_attempt_at <= $1 \
                                AND (x.leased_until IS NULL OR x.leased_until <= $1) \
                              ORDER BY x.next_attempt_at LIMIT 1 OFFSET $4 - 1), $1) AS until \
             FROM event_endpoints e WHERE e.deleted_at IS NULL AND e.disabled_at IS NULL) \
         UPDATE deliveries SET leased_until = $2 \
         WHERE status = 'pending' AND (leased_until IS NULL OR leased_until <= $1) \
           AND (event_id, endpoint_id) IN (SELECT event_id, endpoint_id FROM ( \
             SELECT due.event_id, due.endpoint_id, due.next_attempt_at, \
                    ROW_NUMBER() OVER (PARTITION BY due.client_id \
                                       ORDER BY due.turn, due.next_attempt_at) AS client_turn \
             FROM (SELECT d.event_id, d.endpoint_id, d.next_attempt_at, ep.client_id, ep.busy, \
                          ROW_NUMBER() OVER (PARTITION BY d.endpoint_id \
                                             ORDER BY d.next_attempt_at, d.event_id) AS turn \
                   FROM ep JOIN deliveries d ON d.endpoint_id = ep.id \
                   WHERE d.status = 'pending' AND d.next_attempt_at <= ep.until \
                     AND (d.leased_until IS NULL OR d.leased_until <= $1)) due \
             WHERE due.turn + due.busy <= $4) fair \
           ORDER BY client_turn, next_attempt_at LIMIT $3)",
        claimed_delivery!()
    );
    /// One writer at a time (`BEGIN_WRITE`) keeps several sweepers from claiming the same row.
    const EXPIRE_DUE: &'static str = concat!(
        "UPDATE files SET state = 'expired', state_changed_at = $1 \
         WHERE state = 'staged' AND id IN (SELECT id FROM files \
             WHERE state = 'staged' AND expires_at <= $1 ORDER BY expires_at LIMIT $2) \
         RETURNING ",
        file_columns!()
    );
    /// One writer at a time keeps two workers from leasing the same job.
    const CLAIM_JOBS: &'static str = claim_jobs!("IN (", "", ")");
    const DELIVERIES_OF: &'static str = deliveries_of!("IN (SELECT value FROM json_each($1))");
    /// The write transaction already keeps an erasure out.
    const PROMOTED_FILE: &'static str = promoted_file!("");
    const OBJECTS_ERASED: &'static str = objects_erased!("IN (SELECT value FROM json_each($1))");
    const WEBHOOKS_OF: &'static str = webhooks_of!("IN (SELECT value FROM json_each($1))");
    /// One writer at a time keeps two sweepers from erasing the same file.
    const RETAINED_DUE: &'static str = retained_due!("");

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

    async fn listen_for_echo(_pool: &SqlitePool) -> NoEcho {
        NoEcho
    }

    async fn key_changes(
        _pool: &SqlitePool,
        _keys: &Arc<KeyCache>,
    ) -> Result<Option<Box<dyn KeyChanges>>> {
        Ok(None)
    }
}

/// The SQLite repository. Its `relaxed` pool is the same pool: SQLite has no cheaper commit to
/// offer the writes the sweeper repairs. Its key cache is never on (nothing signals key
/// changes), so every lookup reads the database.
pub type SqliteRepo = SqlRepo<Lite>;

impl SqlRepo<Lite> {
    /// Opens (creating it and its directory if missing) and migrates a SQLite database.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Freed pages are overwritten with zeros: an erased value is not left behind in
            // the database file (docs/security.md).
            .pragma("secure_delete", "ON");
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                RepoError::Setup(format!(
                    "cannot create the database directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let memory = file == Path::new(":memory:");
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqlRepo::new(pool.clone(), pool))
    }
}
