//! What the two sync jobs read: the unsynchronized usage transactions per
//! (account, currency) for SYNC_TRANSACTION and the unsynchronized TRUE_UPs
//! for SYNC_BILLING_TRANSACTIONS, each with what core Aria needs of them.

use chrono::NaiveDate;
use diesel::sql_types::{Array, BigInt, Date, Jsonb, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::DbError;

/// The unsynchronized usage transactions of one account in one currency:
/// one work item of SYNC_TRANSACTION.
#[derive(Debug, Clone, QueryableByName)]
pub struct UnsyncedUsage {
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// The currency.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// How many transactions.
    #[diesel(sql_type = BigInt)]
    pub transactions: i64,
    /// Their ids, in order: what the item sends (for the payload).
    #[diesel(sql_type = Array<BigInt>)]
    pub transaction_ids: Vec<i64>,
    /// The highest transaction id among them: the item covers up to it.
    #[diesel(sql_type = BigInt)]
    pub through_transaction_id: i64,
    /// Their total, in minor units.
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
}

/// Up to `limit` (account, currency) groups of unsynchronized USAGE and
/// USAGE_ADJ transactions, after `after`, from the partial index of
/// unsynchronized usage.
pub async fn unsynced_usage_by_account(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<UnsyncedUsage>, DbError> {
    let (filter, next) = match after {
        None => ("", 2),
        Some(_) => ("AND (account_id, currency) > ($2, $3)", 4),
    };
    let sql = format!(
        "SELECT account_id, currency, count(*)::bigint AS transactions, \
                array_agg(transaction_id ORDER BY transaction_id) AS transaction_ids, \
                max(transaction_id) AS through_transaction_id, \
                sum(amount_minor)::bigint AS amount_minor \
         FROM ledger.transactions \
         WHERE client_id = $1 AND sync_status <> 'SYNCED' \
           AND transaction_type IN ('USAGE', 'USAGE_ADJ') {filter} \
         GROUP BY account_id, currency ORDER BY account_id, currency LIMIT ${next}"
    );
    let query = diesel::sql_query(sql).bind::<Text, _>(client_id.to_string());
    let rows = match after {
        None => query.bind::<BigInt, _>(limit).load(conn).await?,
        Some((account_id, currency)) => {
            query
                .bind::<Text, _>(account_id.to_string())
                .bind::<Text, _>(currency.to_string())
                .bind::<BigInt, _>(limit)
                .load(conn)
                .await?
        }
    };
    Ok(rows)
}

/// A transaction to send to core Aria.
#[derive(Debug, Clone, QueryableByName)]
pub struct TransactionToSync {
    /// Ledger id.
    #[diesel(sql_type = BigInt)]
    pub transaction_id: i64,
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// `USAGE`, `USAGE_ADJ` or `TRUE_UP`.
    #[diesel(sql_type = Text)]
    pub transaction_type: String,
    /// The usage service, if any.
    #[diesel(sql_type = Nullable<Text>)]
    pub service_id: Option<String>,
    /// Units of usage, if any.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub quantity: Option<i64>,
    /// Signed amount in minor units.
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Unique per client; core Aria applies it once.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// PENDING, SYNCED or ERROR.
    #[diesel(sql_type = Text)]
    pub sync_status: String,
    /// Core Aria's reference once synced.
    #[diesel(sql_type = Nullable<Text>)]
    pub core_reference: Option<String>,
    /// How the amount was arrived at.
    #[diesel(sql_type = Jsonb)]
    pub detail: serde_json::Value,
    /// The billing period's first date, if the transaction has one.
    #[diesel(sql_type = Nullable<Date>)]
    pub period_start: Option<NaiveDate>,
    /// The billing period's end (exclusive), if any.
    #[diesel(sql_type = Nullable<Date>)]
    pub period_end: Option<NaiveDate>,
}

const TRANSACTION_TO_SYNC: &str = "t.transaction_id, t.account_id, t.transaction_type, \
     t.service_id, t.quantity, t.amount_minor, t.currency, t.idempotency_key, t.sync_status, \
     t.core_reference, t.detail, bu.period_start, bu.period_end";

/// [`TRANSACTION_TO_SYNC`] without the detail, which core Aria's usage
/// interface does not carry: no need to read and parse it per transaction.
const USAGE_TO_SYNC: &str = "t.transaction_id, t.account_id, t.transaction_type, \
     t.service_id, t.quantity, t.amount_minor, t.currency, t.idempotency_key, t.sync_status, \
     t.core_reference, '{}'::jsonb AS detail, bu.period_start, bu.period_end";

/// The unsynchronized USAGE and USAGE_ADJ transactions of each (account,
/// currency, through id) work item, up to its through id, ordered by
/// (account, id). Their detail is left empty.
pub async fn unsynced_usage_transactions(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    items: &[(String, String, i64)],
) -> Result<Vec<TransactionToSync>, DbError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(format!(
        "SELECT {USAGE_TO_SYNC} \
         FROM unnest($2::text[], $3::text[], $4::bigint[]) AS w(account_id, currency, through) \
         JOIN ledger.transactions t \
           ON t.client_id = $1 AND t.account_id = w.account_id AND t.currency = w.currency \
          AND t.transaction_id <= w.through AND t.sync_status <> 'SYNCED' \
          AND t.transaction_type IN ('USAGE', 'USAGE_ADJ') \
         LEFT JOIN ledger.bill_units bu \
           ON bu.client_id = t.client_id AND bu.bill_unit_id = t.bill_unit_id \
         ORDER BY t.account_id, t.transaction_id"
    ))
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(items.iter().map(|i| i.0.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(items.iter().map(|i| i.1.clone()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(items.iter().map(|i| i.2).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// An unsynchronized TRUE_UP: one work item of SYNC_BILLING_TRANSACTIONS.
#[derive(Debug, Clone, QueryableByName)]
pub struct UnsyncedTrueUp {
    /// Ledger id.
    #[diesel(sql_type = BigInt)]
    pub transaction_id: i64,
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// The subscription trued up.
    #[diesel(sql_type = Nullable<Text>)]
    pub subscription_id: Option<String>,
    /// The bill unit (period) trued up.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub bill_unit_id: Option<i64>,
    /// Amount in minor units.
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Its idempotency key.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// The period's first date.
    #[diesel(sql_type = Nullable<Date>)]
    pub period_start: Option<NaiveDate>,
    /// The period's end (exclusive).
    #[diesel(sql_type = Nullable<Date>)]
    pub period_end: Option<NaiveDate>,
    /// The commitment, from the transaction's detail.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub minimum_commitment_minor: Option<i64>,
    /// The eligible usage it fell short of, from the detail.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub eligible_usage_minor: Option<i64>,
}

/// Up to `limit` unsynchronized TRUE_UP transactions with an id above
/// `after_id`, from the partial index of unsynchronized true-ups, with
/// their period and the amounts the order carries (for the payload).
pub async fn unsynced_true_ups(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    after_id: i64,
    limit: i64,
) -> Result<Vec<UnsyncedTrueUp>, DbError> {
    Ok(diesel::sql_query(
        "SELECT t.transaction_id, t.account_id, t.subscription_id, t.bill_unit_id, \
                t.amount_minor, t.currency, t.idempotency_key, bu.period_start, bu.period_end, \
                (t.detail->>'minimum_commitment_minor')::bigint AS minimum_commitment_minor, \
                (t.detail->>'eligible_usage_minor')::bigint AS eligible_usage_minor \
         FROM ledger.transactions t \
         LEFT JOIN ledger.bill_units bu \
           ON bu.client_id = t.client_id AND bu.bill_unit_id = t.bill_unit_id \
         WHERE t.client_id = $1 AND t.sync_status <> 'SYNCED' AND t.transaction_type = 'TRUE_UP' \
           AND t.transaction_id > $2 \
         ORDER BY t.transaction_id LIMIT $3",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<BigInt, _>(after_id)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// The TRUE_UP transactions with these ids (whatever their sync status).
pub async fn true_ups_by_id(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    transaction_ids: &[i64],
) -> Result<Vec<TransactionToSync>, DbError> {
    Ok(diesel::sql_query(format!(
        "SELECT {TRANSACTION_TO_SYNC} \
         FROM ledger.transactions t \
         LEFT JOIN ledger.bill_units bu \
           ON bu.client_id = t.client_id AND bu.bill_unit_id = t.bill_unit_id \
         WHERE t.client_id = $1 AND t.transaction_id = ANY($2) \
           AND t.transaction_type = 'TRUE_UP' \
         ORDER BY t.transaction_id"
    ))
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<BigInt>, _>(transaction_ids.to_vec())
    .load(conn)
    .await?)
}
