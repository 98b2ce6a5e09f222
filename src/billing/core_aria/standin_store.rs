//! Queries on the stand-in core Aria's records (schema `core_standin`): what
//! it accepted, once per idempotency key, and what it refused.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::DbError;

/// A usage transaction as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingUsage {
    /// Unique per client.
    pub idempotency_key: String,
    /// The account charged.
    pub account_id: String,
    /// `USAGE` or `USAGE_ADJ`.
    pub transaction_type: String,
    /// The usage service.
    pub service_id: String,
    /// Units of usage.
    pub quantity: i64,
    /// Signed amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The sender's id, for tracing.
    pub ledger_transaction_id: String,
}

/// A usage transaction accepted now or before.
#[derive(Debug, Clone, QueryableByName)]
pub struct AcceptedUsage {
    /// Its key.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// The stand-in's number for it.
    #[diesel(sql_type = BigInt)]
    pub core_transaction_no: i64,
    /// Whether the key had been accepted before.
    #[diesel(sql_type = Bool)]
    pub replayed: bool,
}

/// Accepts usage transactions (keys unique within `incoming`): a new key is
/// recorded; a known key with the same account, type, amount and currency
/// is a replay (its receive count goes up, nothing else changes). A known
/// key with different content is left out of the result: the caller
/// reports the conflict.
pub async fn accept_usage(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    incoming: &[IncomingUsage],
) -> Result<Vec<AcceptedUsage>, DbError> {
    if incoming.is_empty() {
        return Ok(Vec::new());
    }
    let col = |f: fn(&IncomingUsage) -> String| incoming.iter().map(f).collect::<Vec<_>>();
    Ok(diesel::sql_query(
        "INSERT INTO core_standin.usage_transactions AS u (client_id, idempotency_key, \
             account_id, transaction_type, service_id, quantity, amount_minor, currency, \
             ledger_transaction_id) \
         SELECT $1, t.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], \
             $6::bigint[], $7::bigint[], $8::text[], $9::text[]) \
             AS t(idempotency_key, account_id, transaction_type, service_id, quantity, \
                  amount_minor, currency, ledger_transaction_id) \
         ON CONFLICT (client_id, idempotency_key) DO UPDATE \
             SET receive_count = u.receive_count + 1, last_receive_time = now() \
             WHERE u.account_id = EXCLUDED.account_id \
               AND u.transaction_type = EXCLUDED.transaction_type \
               AND u.amount_minor = EXCLUDED.amount_minor \
               AND u.currency = EXCLUDED.currency \
         RETURNING u.idempotency_key, u.core_transaction_no, u.receive_count > 1 AS replayed",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(col(|t| t.idempotency_key.clone()))
    .bind::<Array<Text>, _>(col(|t| t.account_id.clone()))
    .bind::<Array<Text>, _>(col(|t| t.transaction_type.clone()))
    .bind::<Array<Text>, _>(col(|t| t.service_id.clone()))
    .bind::<Array<BigInt>, _>(incoming.iter().map(|t| t.quantity).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(incoming.iter().map(|t| t.amount_minor).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(col(|t| t.currency.clone()))
    .bind::<Array<Text>, _>(col(|t| t.ledger_transaction_id.clone()))
    .load(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Key {
    #[diesel(sql_type = Text)]
    idempotency_key: String,
}

/// Which of `keys` were accepted before, as usage transactions (`orders`
/// false) or as true-up orders (`orders` true).
pub async fn accepted_keys(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    keys: &[String],
    orders: bool,
) -> Result<Vec<String>, DbError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let table = if orders {
        "core_standin.true_up_orders"
    } else {
        "core_standin.usage_transactions"
    };
    let rows: Vec<Key> = diesel::sql_query(format!(
        "SELECT idempotency_key FROM {table} \
         WHERE client_id = $1 AND idempotency_key = ANY($2)"
    ))
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(keys.to_vec())
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|k| k.idempotency_key).collect())
}

/// A true-up order as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingTrueUp {
    /// Unique per client.
    pub idempotency_key: String,
    /// The account invoiced.
    pub account_id: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// First date of the period, `YYYY-MM-DD`.
    pub period_start: String,
    /// First date after the period.
    pub period_end: String,
    /// The period's commitment.
    pub minimum_commitment_minor: i64,
    /// The period's eligible usage.
    pub eligible_usage_minor: i64,
    /// The sender's id, for tracing.
    pub ledger_transaction_id: String,
}

/// A true-up order created now or before.
#[derive(Debug, Clone, QueryableByName)]
pub struct AcceptedOrder {
    /// Its key.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// The stand-in's number for the order.
    #[diesel(sql_type = BigInt)]
    pub order_no: i64,
    /// Whether the key had been accepted before.
    #[diesel(sql_type = Bool)]
    pub replayed: bool,
}

/// Creates true-up orders once per key (keys unique within `orders`), in
/// one statement: a new key creates its order; a known key with the same
/// account, amount and currency is a replay and returns the original
/// order. A key known with different content is left out of the result:
/// the caller reports the conflict.
pub async fn accept_true_ups(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    orders: &[IncomingTrueUp],
) -> Result<Vec<AcceptedOrder>, DbError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let col = |f: fn(&IncomingTrueUp) -> String| orders.iter().map(f).collect::<Vec<_>>();
    let num = |f: fn(&IncomingTrueUp) -> i64| orders.iter().map(f).collect::<Vec<_>>();
    Ok(diesel::sql_query(
        "INSERT INTO core_standin.true_up_orders AS o (client_id, idempotency_key, account_id, \
             amount_minor, currency, period_start, period_end, minimum_commitment_minor, \
             eligible_usage_minor, ledger_transaction_id) \
         SELECT $1, t.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], \
             $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[]) \
             AS t(idempotency_key, account_id, amount_minor, currency, period_start, \
                  period_end, minimum_commitment_minor, eligible_usage_minor, \
                  ledger_transaction_id) \
         ON CONFLICT (client_id, idempotency_key) DO UPDATE \
             SET receive_count = o.receive_count + 1, last_receive_time = now() \
             WHERE o.account_id = EXCLUDED.account_id \
               AND o.amount_minor = EXCLUDED.amount_minor \
               AND o.currency = EXCLUDED.currency \
         RETURNING o.idempotency_key, o.order_no, o.receive_count > 1 AS replayed",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(col(|o| o.idempotency_key.clone()))
    .bind::<Array<Text>, _>(col(|o| o.account_id.clone()))
    .bind::<Array<BigInt>, _>(num(|o| o.amount_minor))
    .bind::<Array<Text>, _>(col(|o| o.currency.clone()))
    .bind::<Array<Text>, _>(col(|o| o.period_start.clone()))
    .bind::<Array<Text>, _>(col(|o| o.period_end.clone()))
    .bind::<Array<BigInt>, _>(num(|o| o.minimum_commitment_minor))
    .bind::<Array<BigInt>, _>(num(|o| o.eligible_usage_minor))
    .bind::<Array<Text>, _>(col(|o| o.ledger_transaction_id.clone()))
    .load(conn)
    .await?)
}

/// A refused request, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRejection {
    /// The key refused.
    pub idempotency_key: String,
    /// The account of the request.
    pub account_id: String,
    /// `USAGE_TRANSACTION` or `TRUE_UP_ORDER`.
    pub request_kind: String,
    /// The code returned.
    pub error_code: String,
    /// The message returned.
    pub error_message: String,
}

/// Records refused requests.
pub async fn record_rejections(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    rejections: &[NewRejection],
) -> Result<(), DbError> {
    if rejections.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&NewRejection) -> String| rejections.iter().map(f).collect::<Vec<_>>();
    diesel::sql_query(
        "INSERT INTO core_standin.rejections (client_id, idempotency_key, account_id, \
             request_kind, error_code, error_message) \
         SELECT $1, r.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             AS r(idempotency_key, account_id, request_kind, error_code, error_message)",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(col(|r| r.idempotency_key.clone()))
    .bind::<Array<Text>, _>(col(|r| r.account_id.clone()))
    .bind::<Array<Text>, _>(col(|r| r.request_kind.clone()))
    .bind::<Array<Text>, _>(col(|r| r.error_code.clone()))
    .bind::<Array<Text>, _>(col(|r| r.error_message.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

/// A recorded usage transaction.
#[derive(Debug, Clone, QueryableByName)]
pub struct ReceivedUsageRow {
    /// Its client.
    #[diesel(sql_type = Text)]
    pub client_id: String,
    /// Its key.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// The stand-in's number.
    #[diesel(sql_type = BigInt)]
    pub core_transaction_no: i64,
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// `USAGE` or `USAGE_ADJ`.
    #[diesel(sql_type = Text)]
    pub transaction_type: String,
    /// The service.
    #[diesel(sql_type = Text)]
    pub service_id: String,
    /// Units.
    #[diesel(sql_type = BigInt)]
    pub quantity: i64,
    /// Minor units.
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Times received.
    #[diesel(sql_type = Integer)]
    pub receive_count: i32,
    /// First received.
    #[diesel(sql_type = Timestamptz)]
    pub first_receive_time: DateTime<Utc>,
}

/// A recorded true-up order.
#[derive(Debug, Clone, QueryableByName)]
pub struct ReceivedOrderRow {
    /// Its client.
    #[diesel(sql_type = Text)]
    pub client_id: String,
    /// Its key.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// The stand-in's number.
    #[diesel(sql_type = BigInt)]
    pub order_no: i64,
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// Minor units.
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Period start.
    #[diesel(sql_type = Text)]
    pub period_start: String,
    /// Period end.
    #[diesel(sql_type = Text)]
    pub period_end: String,
    /// Times received.
    #[diesel(sql_type = Integer)]
    pub receive_count: i32,
    /// First received.
    #[diesel(sql_type = Timestamptz)]
    pub first_receive_time: DateTime<Utc>,
}

/// A recorded rejection.
#[derive(Debug, Clone, QueryableByName)]
pub struct RejectionRow {
    /// Its client.
    #[diesel(sql_type = Text)]
    pub client_id: String,
    /// The key refused.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// `USAGE_TRANSACTION` or `TRUE_UP_ORDER`.
    #[diesel(sql_type = Text)]
    pub request_kind: String,
    /// Code returned.
    #[diesel(sql_type = Text)]
    pub error_code: String,
    /// Message returned.
    #[diesel(sql_type = Text)]
    pub error_message: String,
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub receive_time: DateTime<Utc>,
}

/// Everything recorded for one client, oldest first, up to `limit` of each
/// kind; an empty account means any of the client's accounts. The client is
/// always a filter: a read-back never mixes clients.
pub async fn list_received(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    account_id: &str,
    limit: i64,
) -> Result<
    (
        Vec<ReceivedUsageRow>,
        Vec<ReceivedOrderRow>,
        Vec<RejectionRow>,
    ),
    DbError,
> {
    let filter = "client_id = $1 AND ($2 = '' OR account_id = $2)";
    let usage = diesel::sql_query(format!(
        "SELECT client_id, idempotency_key, core_transaction_no, account_id, transaction_type, \
                service_id, quantity, amount_minor, currency, receive_count, first_receive_time \
         FROM core_standin.usage_transactions WHERE {filter} \
         ORDER BY core_transaction_no LIMIT $3"
    ))
    .bind::<Text, _>(client_id.to_string())
    .bind::<Text, _>(account_id.to_string())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let orders = diesel::sql_query(format!(
        "SELECT client_id, idempotency_key, order_no, account_id, amount_minor, currency, \
                period_start, period_end, receive_count, first_receive_time \
         FROM core_standin.true_up_orders WHERE {filter} ORDER BY order_no LIMIT $3"
    ))
    .bind::<Text, _>(client_id.to_string())
    .bind::<Text, _>(account_id.to_string())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let rejections = diesel::sql_query(format!(
        "SELECT client_id, idempotency_key, account_id, request_kind, error_code, error_message, \
                receive_time \
         FROM core_standin.rejections WHERE {filter} ORDER BY rejection_no LIMIT $3"
    ))
    .bind::<Text, _>(client_id.to_string())
    .bind::<Text, _>(account_id.to_string())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok((usage, orders, rejections))
}
