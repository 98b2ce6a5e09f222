//! Monetized transactions: their types, sync statuses and idempotency keys,
//! the idempotent insert every job that creates transactions goes through,
//! and the recording of sync attempts the two sync jobs share.

use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::DbError;

/// Transaction type of first-pass usage charges.
pub const USAGE: &str = "USAGE";
/// Transaction type of second-pass (volume rating) corrections.
pub const USAGE_ADJ: &str = "USAGE_ADJ";
/// Transaction type of minimum-commitment true-ups.
pub const TRUE_UP: &str = "TRUE_UP";

/// Sync status of a transaction core Aria has not accepted yet.
pub const PENDING: &str = "PENDING";
/// Sync status of a transaction core Aria accepted.
pub const SYNCED: &str = "SYNCED";
/// Sync status of a transaction whose last sync attempt failed.
pub const ERROR: &str = "ERROR";

/// The idempotency key of the USAGE_ADJ of one service in one bill unit:
/// the second pass corrects a period's service once.
pub fn usage_adj_key(bill_unit_id: i64, service_id: &str) -> String {
    format!("USAGE_ADJ:BU{bill_unit_id}:{service_id}")
}

/// The idempotency key of the TRUE_UP of one bill unit: a period is trued up
/// once.
pub fn true_up_key(bill_unit_id: i64) -> String {
    format!("TRUE_UP:BU{bill_unit_id}")
}

/// The idempotency key of the first-pass USAGE transaction of one usage
/// record.
pub fn usage_key(usage_id: i64) -> String {
    format!("USAGE:U{usage_id}")
}

/// A monetized transaction to insert. Inserting is idempotent: a key that
/// exists already is left as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransaction {
    /// The account charged.
    pub account_id: String,
    /// The subscription it comes from.
    pub subscription_id: Option<String>,
    /// The billing period it belongs to.
    pub bill_unit_id: Option<i64>,
    /// The usage service, for usage transactions.
    pub service_id: Option<String>,
    /// `USAGE`, `USAGE_ADJ`, `TRUE_UP`, ...
    pub transaction_type: String,
    /// Units of usage the amount is for.
    pub quantity: Option<i64>,
    /// Signed amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Unique per client; see [`usage_adj_key`] and [`true_up_key`].
    pub idempotency_key: String,
    /// How the amount was arrived at.
    pub detail: serde_json::Value,
}

/// Inserts transactions pending sync, skipping keys that exist already; the
/// number actually inserted.
pub async fn insert_transactions(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    transactions: &[NewTransaction],
) -> Result<usize, DbError> {
    if transactions.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&NewTransaction) -> String| transactions.iter().map(f).collect::<Vec<_>>();
    let n = diesel::sql_query(
        "INSERT INTO ledger.transactions (client_id, account_id, subscription_id, bill_unit_id, \
             service_id, transaction_type, quantity, amount_minor, currency, idempotency_key, detail) \
         SELECT $1, t.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
             $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::jsonb[]) \
             AS t(account_id, subscription_id, bill_unit_id, service_id, transaction_type, \
                  quantity, amount_minor, currency, idempotency_key, detail) \
         ON CONFLICT ON CONSTRAINT transactions_idempotency_key DO NOTHING",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(col(|t| t.account_id.clone()))
    .bind::<Array<Nullable<Text>>, _>(
        transactions
            .iter()
            .map(|t| t.subscription_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<BigInt>>, _>(
        transactions
            .iter()
            .map(|t| t.bill_unit_id)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        transactions
            .iter()
            .map(|t| t.service_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(col(|t| t.transaction_type.clone()))
    .bind::<Array<Nullable<BigInt>>, _>(transactions.iter().map(|t| t.quantity).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(
        transactions
            .iter()
            .map(|t| t.amount_minor)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(col(|t| t.currency.clone()))
    .bind::<Array<Text>, _>(col(|t| t.idempotency_key.clone()))
    .bind::<Array<Jsonb>, _>(
        transactions
            .iter()
            .map(|t| t.detail.clone())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(n)
}

/// The result of one attempt to send a transaction to core Aria.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResult {
    /// Core Aria accepted it under this reference.
    Synced {
        /// Core Aria's transaction or order id.
        core_reference: String,
    },
    /// The attempt failed with this code and reason.
    Failed {
        /// Core Aria's code, or `SYNC_ENDPOINT_UNAVAILABLE`.
        code: String,
        /// Why.
        reason: String,
    },
}

/// Records sync attempts: SYNCED with core's reference, or ERROR with the
/// code and reason. A transaction already SYNCED is never set back to ERROR
/// (a late failure of a concurrent retry changes nothing).
pub async fn record_sync_results(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    results: &[(i64, SyncResult)],
) -> Result<usize, DbError> {
    if results.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(results.len());
    let mut statuses = Vec::with_capacity(results.len());
    let mut codes = Vec::with_capacity(results.len());
    let mut reasons = Vec::with_capacity(results.len());
    let mut references = Vec::with_capacity(results.len());
    for (id, result) in results {
        ids.push(*id);
        match result {
            SyncResult::Synced { core_reference } => {
                statuses.push(SYNCED.to_string());
                codes.push(None);
                reasons.push(None);
                references.push(Some(core_reference.clone()));
            }
            SyncResult::Failed { code, reason } => {
                statuses.push(ERROR.to_string());
                codes.push(Some(code.clone()));
                reasons.push(Some(reason.clone()));
                references.push(None);
            }
        }
    }
    let n = diesel::sql_query(
        "UPDATE ledger.transactions t SET sync_status = r.status, sync_error_code = r.code, \
             sync_error_reason = r.reason, \
             core_reference = COALESCE(r.core_reference, t.core_reference), \
             sync_attempts = t.sync_attempts + 1, last_sync_time = now() \
         FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             AS r(transaction_id, status, code, reason, core_reference) \
         WHERE t.client_id = $1 AND t.transaction_id = ANY($2) \
           AND t.transaction_id = r.transaction_id AND t.sync_status <> 'SYNCED'",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<Text>, _>(statuses)
    .bind::<Array<Nullable<Text>>, _>(codes)
    .bind::<Array<Nullable<Text>>, _>(reasons)
    .bind::<Array<Nullable<Text>>, _>(references)
    .execute(conn)
    .await?;
    Ok(n)
}
