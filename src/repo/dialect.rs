//! What the two backends differ in, as one trait: [`Dialect`].
//!
//! The repository's statements are written once, generic over a `Dialect`, with `$N`
//! placeholders (PostgreSQL's, which SQLite reads too). A statement is built backend-neutral —
//! [`Query`] holds the SQL and its arguments as [`Arg`]s — and a dialect runs it: it binds each
//! argument in its own column type (an id is a `UUID` on PostgreSQL and hyphenated `TEXT` on
//! SQLite, a time a `TIMESTAMPTZ` or `INTEGER` microseconds) and decodes rows through [`DbId`]
//! and [`DbTime`], which read both. What else differs is named here: the statements whose text
//! differs (a missing one is a compile error in the backend's `impl Dialect`), the writes
//! PostgreSQL makes as one statement where SQLite takes several (whole methods, with the
//! statement-by-statement form as their default), and key-change signalling (`LISTEN`).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, FromRow, Pool};
use uuid::Uuid;

use super::key_cache::KeyCache;
use super::{AttemptRecord, KeyChanges, NewFile, Result, TextWrite};
use crate::domain::{DirectUpload, StagedFacts};
use crate::event_model::NewEvent;

/// A connection of a dialect's database (a transaction derefs to one).
pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;

/// An id as rows carry it, whatever the column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbId(pub Uuid);

/// A time as rows carry it, whatever the column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DbTime(pub DateTime<Utc>);

/// A row type both backends can decode.
pub trait Decoded:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Decoded for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// One argument of a statement, before a dialect gives it its column type.
#[derive(Debug, Clone)]
pub enum Arg<'q> {
    Text(Option<&'q str>),
    String(Option<String>),
    Int(Option<i64>),
    Int32(Option<i32>),
    Bool(Option<bool>),
    Bytes(&'q [u8]),
    Id(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
    /// A list of ids as one value (`= ANY($n)` on PostgreSQL, `json_each` on SQLite).
    Ids(Vec<Uuid>),
    /// Columns of a batch as one value each (`UNNEST` on PostgreSQL, JSON arrays on SQLite).
    Texts(Vec<String>),
    Times(Vec<DateTime<Utc>>),
    MaybeIds(Vec<Option<Uuid>>),
}

impl Arg<'_> {
    /// A list of ids as one argument.
    pub fn ids(ids: &[Uuid]) -> Arg<'static> {
        Arg::Ids(ids.to_vec())
    }
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr;)*) => {
        $(impl<'q> From<$t> for Arg<'q> {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    &'q str => |v| Arg::Text(Some(v));
    &'q String => |v| Arg::Text(Some(v));
    Option<&'q str> => |v| Arg::Text(v);
    &'q Option<String> => |v| Arg::Text(v.as_deref());
    String => |v| Arg::String(Some(v));
    Option<String> => |v| Arg::String(v);
    i64 => |v| Arg::Int(Some(v));
    Option<i64> => |v| Arg::Int(v);
    i32 => |v| Arg::Int32(Some(v));
    Option<i32> => |v| Arg::Int32(v);
    bool => |v| Arg::Bool(Some(v));
    &'q [u8] => |v| Arg::Bytes(v);
    Uuid => |v| Arg::Id(Some(v));
    Option<Uuid> => |v| Arg::Id(v);
    DbId => |v| Arg::Id(Some(v.0));
    DateTime<Utc> => |v| Arg::Time(Some(v));
    Option<DateTime<Utc>> => |v| Arg::Time(v);
}

/// Where a statement runs: on a pool (any connection) or on a connection (a transaction's).
pub enum On<'c, D: Dialect> {
    Pool(&'c Pool<D::Db>),
    Conn(&'c mut Conn<D>),
}

impl<'c, D: Dialect> From<&'c Pool<D::Db>> for On<'c, D> {
    fn from(pool: &'c Pool<D::Db>) -> Self {
        On::Pool(pool)
    }
}

impl<'c, D: Dialect> From<&'c mut Conn<D>> for On<'c, D> {
    fn from(conn: &'c mut Conn<D>) -> Self {
        On::Conn(conn)
    }
}

/// A statement and its arguments, run by a dialect.
#[must_use = "a statement does nothing until it is run"]
pub struct Query<'q, D> {
    sql: &'static str,
    args: Vec<Arg<'q>>,
    dialect: PhantomData<fn() -> D>,
}

impl<'q, D: Dialect> Query<'q, D> {
    /// Adds the next argument (`$1`, `$2`, … in order).
    pub fn bind(mut self, value: impl Into<Arg<'q>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Runs the statement; how many rows it changed.
    pub async fn execute<'c>(self, on: impl Into<On<'c, D>>) -> Result<u64> {
        D::execute(self.sql, self.args, on.into()).await
    }

    /// Runs the statement; every row it answers.
    pub async fn fetch_all<'c, T: Decoded>(self, on: impl Into<On<'c, D>>) -> Result<Vec<T>> {
        D::fetch_all(self.sql, self.args, on.into()).await
    }

    /// Runs the statement; its first row, if any.
    pub async fn fetch_optional<'c, T: Decoded>(
        self,
        on: impl Into<On<'c, D>>,
    ) -> Result<Option<T>> {
        D::fetch_optional(self.sql, self.args, on.into()).await
    }

    /// Runs the statement; its one row (an error if there is none).
    pub async fn fetch_one<'c, T: Decoded>(self, on: impl Into<On<'c, D>>) -> Result<T> {
        D::fetch_optional(self.sql, self.args, on.into())
            .await?
            .ok_or_else(|| sqlx::Error::RowNotFound.into())
    }
}

/// Waits, after a key change commits, until every replica has heard of it.
pub trait KeyEcho: Send {
    /// What this change's notification carries, to be recognised when it comes back.
    fn token(&self) -> &str;
    /// Returns once the notification has come back (or at once, where nothing is signalled).
    fn heard(self) -> impl Future<Output = ()> + Send;
}

/// What a backend is: its database, how it binds and reads values, the statements whose text
/// differs, and the writes it makes its own way.
pub trait Dialect: Sized + Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;
    /// What a key change waits on (see [`KeyEcho`]).
    type Echo: KeyEcho;

    /// Begins a transaction that will write: it must not read a snapshot another writer
    /// invalidates before it commits.
    const BEGIN_WRITE: &'static str;
    /// Signals key changes to every replica (`$1`: this change's token).
    const NOTIFY_KEYS: &'static str;
    /// Run after an erasure commits, if the backend keeps erased values anywhere else.
    const AFTER_ERASURE: Option<&'static str>;
    /// `id, state` of the files in `$1` (a list of ids).
    const FILE_STATES: &'static str;
    /// Expires staged files due at `$1`, at most `$2`, each claimed by one sweeper.
    const EXPIRE_DUE: &'static str;
    /// Leases due deliveries fairly (`$1`: now, `$2`: lease end, `$3`: how many, `$4`:
    /// deliveries per endpoint in flight) and returns them (`claimed_delivery!`): an endpoint
    /// gets no more than `$4` minus what it has in flight, and turns go round-robin — each
    /// client's first due delivery before anyone's second, and within a client each endpoint's
    /// first before its second — so a slow or failing endpoint delays only itself. The lease is
    /// a conditional update: with several workers each delivery goes to one of them (a row
    /// leased meanwhile no longer matches). The work is bounded by the endpoints, not by the
    /// backlog: each endpoint's candidates are its first `$4` due deliveries
    /// (`deliveries_endpoint_due_idx`), its leases in force are counted from
    /// `deliveries_endpoint_leased_idx`.
    const CLAIM_DELIVERIES: &'static str;
    /// Leases due jobs (`$1`: now, `$2`: lease end, `$3`: how many), each to one worker.
    const CLAIM_JOBS: &'static str;
    /// The deliveries of the events in `$1` (a list of ids).
    const DELIVERIES_OF: &'static str;
    /// A client's promoted file (`$1`, `$2`), held until the transaction ends.
    const PROMOTED_FILE: &'static str;
    /// Marks the objects of the erased files in `$1` (a list of ids) deleted at `$2`.
    const OBJECTS_ERASED: &'static str;
    /// A client's (`$2`) webhooks in `$1` (a list of ids).
    const WEBHOOKS_OF: &'static str;
    /// Promoted files past their retention (before `$1`, at most `$2`), each to one sweeper.
    const RETAINED_DUE: &'static str;

    /// A statement to bind and run.
    fn query<'q>(sql: &'static str) -> Query<'q, Self> {
        Query {
            sql,
            args: Vec::new(),
            dialect: PhantomData,
        }
    }

    /// Runs a statement; how many rows it changed.
    fn execute(
        sql: &'static str,
        args: Vec<Arg<'_>>,
        on: On<'_, Self>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Runs a statement; every row it answers.
    fn fetch_all<T: Decoded>(
        sql: &'static str,
        args: Vec<Arg<'_>>,
        on: On<'_, Self>,
    ) -> impl Future<Output = Result<Vec<T>>> + Send;

    /// Runs a statement; its first row, if any.
    fn fetch_optional<T: Decoded>(
        sql: &'static str,
        args: Vec<Arg<'_>>,
        on: On<'_, Self>,
    ) -> impl Future<Output = Result<Option<T>>> + Send;

    /// Writes an event and a pending delivery for each endpoint of its client in use and
    /// subscribed to its type, in the caller's transaction.
    fn write_event(
        conn: &mut Conn<Self>,
        event: &NewEvent,
    ) -> impl Future<Output = Result<()>> + Send {
        super::sql::write_event_by_steps::<Self>(conn, event)
    }

    /// Writes events of one type (a batch the sweeper expired) and their deliveries, in the
    /// caller's transaction.
    fn write_events(
        conn: &mut Conn<Self>,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            for event in events {
                Self::write_event(&mut *conn, event).await?;
            }
            Ok(())
        }
    }

    /// Deletes what an erased file leaves besides its row — its text, its jobs, what its direct
    /// upload's declaration said — and returns its earlier events (id, body), in the caller's
    /// transaction.
    fn erase_remains(
        conn: &mut Conn<Self>,
        file_id: Uuid,
    ) -> impl Future<Output = Result<Vec<(DbId, String)>>> + Send {
        super::sql::erase_remains_by_steps::<Self>(conn, file_id)
    }

    /// Replaces events' bodies (an erased file's earlier events, redacted), in the caller's
    /// transaction.
    fn replace_event_bodies(
        conn: &mut Conn<Self>,
        bodies: &[(Uuid, String)],
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            for (id, body) in bodies {
                Self::query("UPDATE events SET body = $2 WHERE id = $1")
                    .bind(*id)
                    .bind(body)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }
    }

    /// Marks a receiving file staged with its event; whether it was still receiving.
    fn mark_staged(
        pool: &Pool<Self::Db>,
        file_id: Uuid,
        facts: &StagedFacts,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool>> + Send {
        super::sql::mark_staged_by_steps::<Self>(pool, file_id, facts, event)
    }

    /// Marks a bound file promoted (under `key`), queues its text job and writes its event, in
    /// the caller's transaction; whether it was still bound.
    fn promote(
        conn: &mut Conn<Self>,
        file_id: Uuid,
        key: &str,
        event: &NewEvent,
    ) -> impl Future<Output = Result<bool>> + Send {
        super::sql::promote_by_steps::<Self>(conn, file_id, key, event)
    }

    /// Records a text job's outcome; whether the file took it.
    fn finish_text_job(
        pool: &Pool<Self::Db>,
        write: TextWrite<'_>,
    ) -> impl Future<Output = Result<bool>> + Send {
        super::sql::finish_text_job_by_steps::<Self>(pool, write)
    }

    /// Records a delivery attempt: the delivery's new state, the attempt's row and, if it
    /// delivered, the end of its endpoint's run of failures, where the delivery is still at the
    /// attempt before; whether it was.
    fn record_attempt(
        pool: &Pool<Self::Db>,
        attempt: &AttemptRecord,
    ) -> impl Future<Output = Result<bool>> + Send {
        super::sql::record_attempt_by_steps::<Self>(pool, attempt)
    }

    /// Writes a direct upload's `receiving` row and its declaration.
    fn insert_direct(
        pool: &Pool<Self::Db>,
        file: &NewFile,
        direct: &DirectUpload,
    ) -> impl Future<Output = Result<()>> + Send {
        super::sql::insert_direct_by_steps::<Self>(pool, file, direct)
    }

    /// Starts waiting for a key change's notification to come back.
    fn listen_for_echo(pool: &Pool<Self::Db>) -> impl Future<Output = Self::Echo> + Send;

    /// The key-change signals this process listens to, if the backend has them.
    fn key_changes(
        pool: &Pool<Self::Db>,
        keys: &Arc<KeyCache>,
    ) -> impl Future<Output = Result<Option<Box<dyn KeyChanges>>>> + Send;
}
