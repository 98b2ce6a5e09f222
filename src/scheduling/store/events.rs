//! The status event log: rows written in the transaction of the change they
//! describe, numbered per client, plus one `NOTIFY` per transaction so every
//! replica wakes its watchers.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::sql_types::{Array, BigInt, Date, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::DbError;
use crate::scheduling::domain::event::EventBody;

/// The channel every replica listens on; the payload is the client id.
pub const CHANNEL: &str = "allegro_events";

/// Which execution events are about.
#[derive(Debug, Clone)]
pub struct EventTarget {
    /// The client (the sequence's scope).
    pub client_id: String,
    /// The execution.
    pub execution_id: Uuid,
    /// Its configuration.
    pub config_id: Uuid,
    /// Its business date.
    pub business_date: NaiveDate,
}

#[derive(QueryableByName)]
struct Last {
    #[diesel(sql_type = Nullable<BigInt>)]
    n: Option<i64>,
}

/// Appends events in the caller's transaction and notifies listeners at
/// commit. Returns the last sequence written.
pub async fn append(
    conn: &mut AsyncPgConnection,
    target: &EventTarget,
    bodies: &[EventBody],
) -> Result<Option<i64>, DbError> {
    if bodies.is_empty() {
        return Ok(None);
    }
    let json: Vec<serde_json::Value> = bodies.iter().map(event_json).collect();
    let rows: Vec<Last> = diesel::sql_query(
        "WITH s AS ( \
             INSERT INTO client_event_sequences (client_id, last_sequence) VALUES ($1, $2) \
             ON CONFLICT (client_id) DO UPDATE \
                 SET last_sequence = client_event_sequences.last_sequence + $2 \
             RETURNING last_sequence), \
         ins AS ( \
             INSERT INTO execution_events (client_id, sequence, execution_id, config_id, business_date, body) \
             SELECT $1, s.last_sequence - $2 + t.ord, $3, $4, $5, t.body \
             FROM s, unnest($6::jsonb[]) WITH ORDINALITY AS t(body, ord) \
             RETURNING sequence) \
         SELECT max(sequence) AS n FROM ins, (SELECT pg_notify($7, $1)) AS notified",
    )
    .bind::<Text, _>(&target.client_id)
    .bind::<BigInt, _>(bodies.len() as i64)
    .bind::<SqlUuid, _>(target.execution_id)
    .bind::<SqlUuid, _>(target.config_id)
    .bind::<Date, _>(target.business_date)
    .bind::<Array<Jsonb>, _>(json)
    .bind::<Text, _>(CHANNEL)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().and_then(|r| r.n))
}

/// A stored event.
#[derive(Debug, Clone, QueryableByName)]
pub struct EventRow {
    /// Per-client sequence.
    #[diesel(sql_type = BigInt)]
    pub sequence: i64,
    /// Execution.
    #[diesel(sql_type = SqlUuid)]
    pub execution_id: Uuid,
    /// Configuration.
    #[diesel(sql_type = SqlUuid)]
    pub config_id: Uuid,
    /// Business date.
    #[diesel(sql_type = Date)]
    pub business_date: NaiveDate,
    /// The event.
    #[diesel(sql_type = Jsonb)]
    pub body: serde_json::Value,
    /// Commit time.
    #[diesel(sql_type = Timestamptz)]
    pub time: DateTime<Utc>,
}

/// Up to `limit` events of a client after `after`, in order.
pub async fn after(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT sequence, execution_id, config_id, business_date, body, time \
         FROM execution_events WHERE client_id = $1 AND sequence > $2 \
         ORDER BY sequence LIMIT $3",
    )
    .bind::<Text, _>(client_id)
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Bounds {
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last: Option<i64>,
}

/// The oldest retained and the last written sequence of a client.
pub async fn bounds(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> Result<(Option<i64>, Option<i64>), DbError> {
    let rows: Vec<Bounds> = diesel::sql_query(
        "SELECT (SELECT min(sequence) FROM execution_events WHERE client_id = $1) AS oldest, \
                (SELECT last_sequence FROM client_event_sequences WHERE client_id = $1) AS last",
    )
    .bind::<Text, _>(client_id)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .next()
        .map(|b| (b.oldest, b.last))
        .unwrap_or((None, None)))
}

/// Deletes events older than `keep`; how many went.
pub async fn prune(conn: &mut AsyncPgConnection, keep_secs: f64) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "DELETE FROM execution_events WHERE time < now() - make_interval(secs => $1)",
    )
    .bind::<diesel::sql_types::Double, _>(keep_secs)
    .execute(conn)
    .await?)
}

/// An event body as stored JSON.
// Invariant: event bodies are plain data, which always serializes.
#[allow(clippy::expect_used)]
fn event_json(body: &EventBody) -> serde_json::Value {
    serde_json::to_value(body).expect("event serializes")
}
