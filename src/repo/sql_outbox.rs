//! The `OutboxRepo` of both backends: event endpoints, deliveries and attempts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dialect::{Arg, Conn, DbId, DbTime, Dialect};
use super::sql::{DeliveryRow, EventRow, SqlRepo};
use super::{
    AttemptLog, AttemptRecord, DeliveryRecord, DueDelivery, EndpointChange, EndpointRecord,
    EventRecord, OutboxRepo, PageCursor, RepoError, Result,
};

/// An endpoint's columns, as [`EndpointRow`] reads them.
macro_rules! endpoint_columns {
    () => {
        "id, client_id, url, event_types, secret, created_at, previous_secret, \
         previous_secret_until, disabled_at"
    };
}

/// An endpoint as stored.
#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: DbId,
    client_id: String,
    url: String,
    event_types: Option<String>,
    secret: String,
    created_at: DbTime,
    previous_secret: Option<String>,
    previous_secret_until: Option<DbTime>,
    disabled_at: Option<DbTime>,
}

impl EndpointRow {
    fn record(self) -> Result<EndpointRecord> {
        let event_types = self
            .event_types
            .map(|raw| {
                let names: Vec<String> = serde_json::from_str(&raw)
                    .map_err(|e| RepoError::Corrupt(format!("event types {raw}: {e}")))?;
                crate::event_model::parse_types(names.iter().map(String::as_str))
                    .map_err(|e| RepoError::Corrupt(e.to_string()))
            })
            .transpose()?
            .flatten();
        Ok(EndpointRecord {
            id: self.id.0,
            client_id: self.client_id,
            url: self.url,
            event_types,
            secret: self.secret,
            created_at: self.created_at.0,
            previous_secret: self
                .previous_secret
                .zip(self.previous_secret_until.map(|t| t.0)),
            disabled_at: self.disabled_at.map(|t| t.0),
        })
    }
}

/// An endpoint's types as stored: a JSON array of names; `None`: every type.
fn types_json(types: Option<&[EventType]>) -> Option<String> {
    types.map(|types| {
        serde_json::to_string(&types.iter().map(|t| t.as_str()).collect::<Vec<_>>())
            .expect("names serialize")
    })
}
use crate::event_model::EventType;

#[async_trait]
impl<D: Dialect> OutboxRepo for SqlRepo<D> {
    async fn create_endpoint(&self, endpoint: &EndpointRecord) -> Result<()> {
        let types = types_json(endpoint.event_types.as_deref());
        D::query(
            "INSERT INTO event_endpoints (id, client_id, url, event_types, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(endpoint.id)
        .bind(&endpoint.client_id)
        .bind(&endpoint.url)
        .bind(types)
        .bind(&endpoint.secret)
        .bind(endpoint.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_endpoints(&self, client_id: Option<&str>) -> Result<Vec<EndpointRecord>> {
        let rows: Vec<EndpointRow> = D::query(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM event_endpoints \
             WHERE deleted_at IS NULL AND ($1 IS NULL OR client_id = $1) \
             ORDER BY created_at, id"
        ))
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(EndpointRow::record).collect()
    }

    async fn update_endpoint(
        &self,
        client_id: &str,
        id: Uuid,
        change: &EndpointChange,
        now: DateTime<Utc>,
    ) -> Result<Option<EndpointRecord>> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let found: Option<EndpointRow> = D::query(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM event_endpoints WHERE id = $1 AND client_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        if let Some(url) = &change.url {
            D::query("UPDATE event_endpoints SET url = $2 WHERE id = $1")
                .bind(id)
                .bind(url.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(types) = &change.event_types {
            D::query("UPDATE event_endpoints SET event_types = $2 WHERE id = $1")
                .bind(id)
                .bind(types_json(types.as_deref()))
                .execute(&mut *tx)
                .await?;
        }
        match change.disabled {
            Some(true) => Self::disable_in(&mut tx, id, now, "endpoint disabled").await?,
            Some(false) => {
                D::query(
                    "UPDATE event_endpoints SET disabled_at = NULL, failing_since = NULL \
                     WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            None => {}
        }
        let row: EndpointRow = D::query(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM event_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.record().map(Some)
    }

    async fn rotate_secret(
        &self,
        client_id: &str,
        id: Uuid,
        secret: &str,
        overlap_until: DateTime<Utc>,
    ) -> Result<bool> {
        let done = D::query(
            "UPDATE event_endpoints SET previous_secret = secret, \
                    previous_secret_until = $4, secret = $3 \
             WHERE id = $1 AND client_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(client_id)
        .bind(secret)
        .bind(overlap_until)
        .execute(&self.pool)
        .await?;
        Ok(done == 1)
    }

    async fn endpoint_failed(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        disable_before: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        D::query(
            "UPDATE event_endpoints SET failing_since = $2 \
             WHERE id = $1 AND failing_since IS NULL",
        )
        .bind(id)
        .bind(at)
        .execute(&self.relaxed)
        .await?;
        let Some(before) = disable_before else {
            return Ok(false);
        };
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let due: Option<(DbId,)> = D::query(
            "SELECT id FROM event_endpoints \
             WHERE id = $1 AND deleted_at IS NULL AND disabled_at IS NULL \
               AND failing_since <= $2",
        )
        .bind(id)
        .bind(before)
        .fetch_optional(&mut *tx)
        .await?;
        if due.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::disable_in(
            &mut tx,
            id,
            at,
            "endpoint disabled after failing every attempt",
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_endpoint(&self, client_id: Option<&str>, endpoint_id: Uuid) -> Result<bool> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let done = D::query(
            "UPDATE event_endpoints SET deleted_at = $3 \
             WHERE id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR client_id = $2)",
        )
        .bind(endpoint_id)
        .bind(client_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::fail_pending_in(&mut tx, endpoint_id, "endpoint removed").await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        per_endpoint: u32,
    ) -> Result<Vec<DueDelivery>> {
        // A lease on the relaxed pool, as the jobs' (`claim_jobs`).
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            DbId,
            DbId,
            i32,
            String,
            String,
            Option<String>,
            String,
            DbTime,
        )> = D::query(D::CLAIM_DELIVERIES)
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .bind(i64::from(per_endpoint))
            .fetch_all(&self.relaxed)
            .await?;
        rows.into_iter()
            .map(
                |(
                    event_id,
                    endpoint_id,
                    attempt_count,
                    url,
                    secret,
                    previous,
                    body,
                    created_at,
                )| {
                    Ok(DueDelivery {
                        event_created_at: created_at.0,
                        event_id: event_id.0,
                        endpoint_id: endpoint_id.0,
                        attempt_count,
                        url,
                        secret,
                        previous_secret: previous,
                        body,
                    })
                },
            )
            .collect()
    }

    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<bool> {
        // Relaxed: a lost record only means the delivery is sent again (at least once).
        D::record_attempt(&self.relaxed, attempt).await
    }

    async fn list_events(
        &self,
        client_id: &str,
        event_type: Option<EventType>,
        cursor: Option<PageCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        let rows: Vec<EventRow> = D::query(
            "SELECT id, client_id, event_type, body, created_at FROM events \
             WHERE client_id = $1 AND ($2 IS NULL OR event_type = $2) \
               AND ($3 IS NULL OR created_at < $3 OR (created_at = $3 AND id < $4)) \
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .bind(client_id)
        .bind(event_type.map(EventType::as_str))
        .bind(cursor.map(|c| c.created_at))
        .bind(cursor.map(|c| c.id))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows
            .into_iter()
            .map(EventRecord::try_from)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let deliveries: Vec<DeliveryRow> = D::query(D::DELIVERIES_OF)
            .bind(Arg::ids(&ids))
            .fetch_all(&self.pool)
            .await?;
        for row in deliveries {
            let event_id = row.event_id.0;
            if let Some(event) = events.iter_mut().find(|e| e.id == event_id) {
                event.deliveries.push(row.try_into()?);
            }
        }
        Ok(events)
    }

    async fn get_event(&self, client_id: &str, event_id: Uuid) -> Result<Option<EventRecord>> {
        let row: Option<EventRow> = D::query(
            "SELECT id, client_id, event_type, body, created_at FROM events \
             WHERE id = $1 AND client_id = $2",
        )
        .bind(event_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut event = EventRecord::try_from(row)?;
        let deliveries: Vec<DeliveryRow> = D::query(D::DELIVERIES_OF)
            .bind(Arg::ids(&[event_id]))
            .fetch_all(&self.pool)
            .await?;
        event.deliveries = deliveries
            .into_iter()
            .map(DeliveryRecord::try_from)
            .collect::<Result<_>>()?;
        let attempts: Vec<(DbId, i32, DbTime, i64, Option<i32>, Option<String>)> = D::query(
            "SELECT endpoint_id, attempt, attempted_at, duration_ms, response_status_code, \
                    error_message \
             FROM delivery_attempts WHERE event_id = $1 ORDER BY endpoint_id, attempt",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        for (endpoint_id, attempt, attempted_at, duration_ms, code, error) in attempts {
            let endpoint_id = endpoint_id.0;
            if let Some(delivery) = event
                .deliveries
                .iter_mut()
                .find(|d| d.endpoint_id == endpoint_id)
            {
                delivery.attempts.push(AttemptLog {
                    attempt,
                    attempted_at: attempted_at.0,
                    duration_ms,
                    response_status_code: code,
                    error_message: error,
                });
            }
        }
        Ok(Some(event))
    }

    async fn redeliver(&self, client_id: &str, event_id: Uuid, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let event_type: Option<(String,)> =
            D::query("SELECT event_type FROM events WHERE id = $1 AND client_id = $2")
                .bind(event_id)
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((event_type,)) = event_type else {
            tx.rollback().await?;
            return Ok(false);
        };
        let event_type: EventType = event_type
            .parse()
            .map_err(|e: crate::event_model::EndpointError| RepoError::Corrupt(e.to_string()))?;
        D::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, \
                    leased_until = NULL \
             WHERE event_id = $1 AND endpoint_id IN \
                 (SELECT id FROM event_endpoints \
                  WHERE deleted_at IS NULL AND disabled_at IS NULL)",
        )
        .bind(event_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::fan_out(&mut tx, event_id, client_id, event_type, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl<D: Dialect> SqlRepo<D> {
    /// Disables an endpoint at `at` (if it is not already) and fails its pending deliveries
    /// with `why`: enabling it again redelivers nothing by itself.
    async fn disable_in(conn: &mut Conn<D>, id: Uuid, at: DateTime<Utc>, why: &str) -> Result<()> {
        D::query(
            "UPDATE event_endpoints SET disabled_at = COALESCE(disabled_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        Self::fail_pending_in(conn, id, why).await
    }

    /// Fails an endpoint's pending deliveries with `why` (it was removed or disabled).
    async fn fail_pending_in(conn: &mut Conn<D>, id: Uuid, why: &str) -> Result<()> {
        D::query(
            "UPDATE deliveries SET status = 'failed', leased_until = NULL, error_message = $2 \
             WHERE endpoint_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(why)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
