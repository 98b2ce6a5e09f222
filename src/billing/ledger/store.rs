//! Queries on the reference billing ledger (schema `ledger`), and the row
//! models they use. The catalogue jobs read and write the ledger only
//! through these functions.
//!
//! Every function takes the client: every statement filters on `client_id`.
//! Batch functions take whole batches (arrays bound as parameters and
//! `unnest`ed) so that processing a batch costs a few statements, not a few
//! per work item. Money is `i64` minor units; see the migration's header.

use chrono::NaiveDate;
use diesel::sql_types::{Array, BigInt, Bool, Date, Integer, Jsonb, Nullable, SmallInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

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

// ---------------------------------------------------------------------------
// BILLTIME_USAGE_RATING
// ---------------------------------------------------------------------------

/// A bill unit ending on a date: one work item of BILLTIME_USAGE_RATING.
#[derive(Debug, Clone, QueryableByName)]
pub struct BillUnitEnding {
    /// The bill unit.
    #[diesel(sql_type = BigInt)]
    pub bill_unit_id: i64,
    /// Its subscription.
    #[diesel(sql_type = Text)]
    pub subscription_id: String,
    /// Its account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// First date of the period.
    #[diesel(sql_type = Date)]
    pub period_start: NaiveDate,
    /// First date after the period.
    #[diesel(sql_type = Date)]
    pub period_end: NaiveDate,
}

/// Up to `limit` bill units whose period ends on `period_end`, in
/// (account, bill unit) order after `after`. An index range scan.
pub async fn bill_units_ending_on(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    period_end: NaiveDate,
    after: Option<(&str, i64)>,
    limit: i64,
) -> Result<Vec<BillUnitEnding>, DbError> {
    let select = "SELECT bill_unit_id, subscription_id, account_id, period_start, period_end \
                  FROM ledger.bill_units WHERE client_id = $1 AND period_end = $2";
    let rows = match after {
        None => {
            diesel::sql_query(format!(
                "{select} ORDER BY account_id, bill_unit_id LIMIT $3"
            ))
            .bind::<Text, _>(client_id.to_string())
            .bind::<Date, _>(period_end)
            .bind::<BigInt, _>(limit)
            .load(conn)
            .await?
        }
        Some((account_id, bill_unit_id)) => {
            diesel::sql_query(format!(
                "{select} AND (account_id, bill_unit_id) > ($3, $4) \
                 ORDER BY account_id, bill_unit_id LIMIT $5"
            ))
            .bind::<Text, _>(client_id.to_string())
            .bind::<Date, _>(period_end)
            .bind::<Text, _>(account_id.to_string())
            .bind::<BigInt, _>(bill_unit_id)
            .bind::<BigInt, _>(limit)
            .load(conn)
            .await?
        }
    };
    Ok(rows)
}

/// What the second pass needs of one recurring service in one bill unit.
#[derive(Debug, Clone, QueryableByName)]
pub struct RatingInput {
    /// The bill unit.
    #[diesel(sql_type = BigInt)]
    pub bill_unit_id: i64,
    /// Its account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// Its subscription.
    #[diesel(sql_type = Text)]
    pub subscription_id: String,
    /// First date of the period.
    #[diesel(sql_type = Date)]
    pub period_start: NaiveDate,
    /// First date after the period.
    #[diesel(sql_type = Date)]
    pub period_end: NaiveDate,
    /// The account's currency.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// The subscription's plan.
    #[diesel(sql_type = Text)]
    pub plan_code: String,
    /// The recurring service.
    #[diesel(sql_type = Text)]
    pub service_id: String,
    /// Whether a rate schedule exists for (plan, service, currency).
    #[diesel(sql_type = Bool)]
    pub rate_schedule_found: bool,
    /// The period's accumulator balance; `None` when the period has none.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub accumulator_balance: Option<i64>,
    /// Number of usage records of the service in the period.
    #[diesel(sql_type = BigInt)]
    pub usage_records: i64,
    /// Total quantity of those records.
    #[diesel(sql_type = BigInt)]
    pub usage_quantity: i64,
    /// Quantity not covered by the allowance (what is charged).
    #[diesel(sql_type = BigInt)]
    pub billable_quantity: i64,
    /// Sum of the records' first-pass amounts.
    #[diesel(sql_type = BigInt)]
    pub first_pass_amount_minor: i64,
}

/// The rating inputs of the given bill units: one row per recurring service
/// of each bill unit's subscription, ordered by (bill unit, service). A bill
/// unit that does not exist (or whose subscription has no service) has no
/// rows.
pub async fn rating_inputs(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    bill_unit_ids: &[i64],
) -> Result<Vec<RatingInput>, DbError> {
    Ok(diesel::sql_query(
        "SELECT bu.bill_unit_id, bu.account_id, bu.subscription_id, bu.period_start, \
                bu.period_end, a.currency, s.plan_code, ss.service_id, \
                (rs.plan_code IS NOT NULL) AS rate_schedule_found, \
                acc.balance AS accumulator_balance, \
                COALESCE(u.records, 0)::bigint AS usage_records, \
                COALESCE(u.quantity, 0)::bigint AS usage_quantity, \
                COALESCE(u.billable, 0)::bigint AS billable_quantity, \
                COALESCE(u.first_pass, 0)::bigint AS first_pass_amount_minor \
         FROM ledger.bill_units bu \
         JOIN ledger.accounts a \
           ON a.client_id = bu.client_id AND a.account_id = bu.account_id \
         JOIN ledger.subscriptions s \
           ON s.client_id = bu.client_id AND s.subscription_id = bu.subscription_id \
         JOIN ledger.subscription_services ss \
           ON ss.client_id = s.client_id AND ss.subscription_id = s.subscription_id \
         LEFT JOIN ledger.rate_schedules rs \
           ON rs.client_id = bu.client_id AND rs.plan_code = s.plan_code \
          AND rs.service_id = ss.service_id AND rs.currency = a.currency \
         LEFT JOIN ledger.balances acc \
           ON acc.client_id = bu.client_id AND acc.bill_unit_id = bu.bill_unit_id \
          AND acc.service_id = ss.service_id AND acc.balance_type = 'ACCUMULATOR' \
         LEFT JOIN LATERAL ( \
             SELECT count(*) AS records, sum(ur.quantity) AS quantity, \
                    sum(ur.quantity - ur.allowance_used) AS billable, \
                    sum(ur.first_pass_amount_minor) AS first_pass \
             FROM ledger.usage_records ur \
             WHERE ur.client_id = bu.client_id AND ur.bill_unit_id = bu.bill_unit_id \
               AND ur.service_id = ss.service_id) u ON true \
         WHERE bu.client_id = $1 AND bu.bill_unit_id = ANY($2) \
         ORDER BY bu.bill_unit_id, ss.service_id",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<BigInt>, _>(bill_unit_ids.to_vec())
    .load(conn)
    .await?)
}

/// One tier of a rate schedule.
#[derive(Debug, Clone, QueryableByName)]
pub struct RateTierRow {
    /// The schedule's plan.
    #[diesel(sql_type = Text)]
    pub plan_code: String,
    /// The schedule's service.
    #[diesel(sql_type = Text)]
    pub service_id: String,
    /// The schedule's currency.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Position in the schedule.
    #[diesel(sql_type = Integer)]
    pub tier_no: i32,
    /// Lowest balance covered (inclusive).
    #[diesel(sql_type = BigInt)]
    pub from_quantity: i64,
    /// First balance not covered (exclusive); `None`: unbounded.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub to_quantity: Option<i64>,
    /// Minor units per unit.
    #[diesel(sql_type = BigInt)]
    pub unit_price_minor: i64,
}

/// Every tier of the rate schedules named by (plan, service, currency).
pub async fn rate_tiers(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    schedules: &[(String, String, String)],
) -> Result<Vec<RateTierRow>, DbError> {
    if schedules.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(
        "SELECT t.plan_code, t.service_id, t.currency, t.tier_no, t.from_quantity, \
                t.to_quantity, t.unit_price_minor \
         FROM unnest($2::text[], $3::text[], $4::text[]) AS k(plan_code, service_id, currency) \
         JOIN ledger.rate_tiers t \
           ON t.client_id = $1 AND t.plan_code = k.plan_code \
          AND t.service_id = k.service_id AND t.currency = k.currency \
         ORDER BY t.plan_code, t.service_id, t.currency, t.tier_no",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(schedules.iter().map(|s| s.0.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(schedules.iter().map(|s| s.1.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(schedules.iter().map(|s| s.2.clone()).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// The second-pass result of one service in one bill unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRating {
    /// The bill unit.
    pub bill_unit_id: i64,
    /// The service.
    pub service_id: String,
    /// The volume tier selected by the accumulator.
    pub tier_no: i32,
    /// That tier's unit price, applied to every record's billable quantity.
    pub unit_price_minor: i64,
}

/// Writes the second pass of a batch in one database transaction: the
/// USAGE_ADJ transactions (skipping keys that exist), each usage record's
/// second-pass tier and amount, and the bill units' rating time (kept from
/// the first rating). Returns the number of adjustments inserted.
pub async fn record_rating(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    ratings: &[ServiceRating],
    adjustments: &[NewTransaction],
) -> Result<usize, DbError> {
    let mut bill_unit_ids: Vec<i64> = ratings.iter().map(|r| r.bill_unit_id).collect();
    bill_unit_ids.sort_unstable();
    bill_unit_ids.dedup();
    let client = client_id.to_string();
    conn.transaction(async |conn| -> Result<usize, DbError> {
        let inserted = insert_transactions(conn, &client, adjustments).await?;
        diesel::sql_query(
            "UPDATE ledger.usage_records ur \
             SET second_pass_tier = r.tier_no, \
                 second_pass_amount_minor = (ur.quantity - ur.allowance_used) * r.unit_price_minor \
             FROM unnest($2::bigint[], $3::text[], $4::int[], $5::bigint[]) \
                 AS r(bill_unit_id, service_id, tier_no, unit_price_minor) \
             WHERE ur.client_id = $1 AND ur.bill_unit_id = ANY($6) \
               AND ur.bill_unit_id = r.bill_unit_id AND ur.service_id = r.service_id",
        )
        .bind::<Text, _>(client.clone())
        .bind::<Array<BigInt>, _>(ratings.iter().map(|r| r.bill_unit_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            ratings
                .iter()
                .map(|r| r.service_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Integer>, _>(ratings.iter().map(|r| r.tier_no).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(
            ratings
                .iter()
                .map(|r| r.unit_price_minor)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(bill_unit_ids.clone())
        .execute(conn)
        .await?;
        diesel::sql_query(
            "UPDATE ledger.bill_units SET rate_time = now() \
             WHERE client_id = $1 AND bill_unit_id = ANY($2) AND rate_time IS NULL",
        )
        .bind::<Text, _>(client.clone())
        .bind::<Array<BigInt>, _>(bill_unit_ids.clone())
        .execute(conn)
        .await?;
        Ok(inserted)
    })
    .await
}

// ---------------------------------------------------------------------------
// SYNC_TRANSACTION and SYNC_BILLING_TRANSACTIONS
// ---------------------------------------------------------------------------

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

/// The unsynchronized USAGE and USAGE_ADJ transactions of each (account,
/// currency, through id) work item, up to its through id, ordered by
/// (account, id).
pub async fn unsynced_usage_transactions(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    items: &[(String, String, i64)],
) -> Result<Vec<TransactionToSync>, DbError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(format!(
        "SELECT {TRANSACTION_TO_SYNC} \
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
    /// Amount in minor units.
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Its idempotency key.
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
}

/// Up to `limit` unsynchronized TRUE_UP transactions with an id above
/// `after_id`, from the partial index of unsynchronized true-ups.
pub async fn unsynced_true_ups(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    after_id: i64,
    limit: i64,
) -> Result<Vec<UnsyncedTrueUp>, DbError> {
    Ok(diesel::sql_query(
        "SELECT transaction_id, account_id, amount_minor, currency, idempotency_key \
         FROM ledger.transactions \
         WHERE client_id = $1 AND sync_status <> 'SYNCED' AND transaction_type = 'TRUE_UP' \
           AND transaction_id > $2 \
         ORDER BY transaction_id LIMIT $3",
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

// ---------------------------------------------------------------------------
// BILLING
// ---------------------------------------------------------------------------

/// An account due for billing: one work item of BILLING.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueAccount {
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// Its anniversary day.
    #[diesel(sql_type = SmallInt)]
    pub anniversary_day: i16,
}

/// Up to `limit` accounts not CLOSED whose anniversary day is in
/// `first_day..=last_day`, after `after` in (anniversary day, account)
/// order: a range scan of `accounts_due_idx`.
pub async fn accounts_due(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    first_day: i16,
    last_day: i16,
    after: Option<(i16, &str)>,
    limit: i64,
) -> Result<Vec<DueAccount>, DbError> {
    let (day, account) = after.unwrap_or((0, ""));
    Ok(diesel::sql_query(
        "SELECT account_id, anniversary_day FROM ledger.accounts \
         WHERE client_id = $1 AND status <> 'CLOSED' \
           AND anniversary_day BETWEEN $2 AND $3 \
           AND (anniversary_day, account_id) > ($4, $5) \
         ORDER BY anniversary_day, account_id LIMIT $6",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<SmallInt, _>(first_day)
    .bind::<SmallInt, _>(last_day)
    .bind::<SmallInt, _>(day)
    .bind::<Text, _>(account.to_string())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// What BILLING needs of one account and one of its active subscriptions.
/// An account without an active subscription has one row with no
/// subscription; an unknown account has one row with no status.
#[derive(Debug, Clone, QueryableByName)]
pub struct BillingInput {
    /// The account asked for.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// Its status; `None` when it does not exist.
    #[diesel(sql_type = Nullable<Text>)]
    pub account_status: Option<String>,
    /// Its anniversary day.
    #[diesel(sql_type = Nullable<SmallInt>)]
    pub anniversary_day: Option<i16>,
    /// Its currency.
    #[diesel(sql_type = Nullable<Text>)]
    pub currency: Option<String>,
    /// An active subscription of the account.
    #[diesel(sql_type = Nullable<Text>)]
    pub subscription_id: Option<String>,
    /// Its minimum commitment per period, in minor units.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub minimum_commitment_minor: Option<i64>,
    /// The subscription's bill unit ending on the billing date.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub bill_unit_id: Option<i64>,
    /// Its first date.
    #[diesel(sql_type = Nullable<Date>)]
    pub period_start: Option<NaiveDate>,
    /// Whether it is already CLOSED.
    #[diesel(sql_type = Bool)]
    pub bill_unit_closed: bool,
    /// Whether its usage went through the second pass.
    #[diesel(sql_type = Bool)]
    pub bill_unit_rated: bool,
    /// Whether it has usage records.
    #[diesel(sql_type = Bool)]
    pub has_usage: bool,
    /// Sum of its USAGE and USAGE_ADJ amounts of commitment-eligible
    /// services, in minor units.
    #[diesel(sql_type = BigInt)]
    pub eligible_usage_minor: i64,
    /// Whether the subscription has a bill unit that contains the billing
    /// date (and so is not due when none ends on it).
    #[diesel(sql_type = Bool)]
    pub has_bill_unit_containing_date: bool,
}

/// The billing inputs of `account_ids` for the billing date `date`, ordered
/// by (account, subscription).
pub async fn billing_inputs(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    account_ids: &[String],
    date: NaiveDate,
) -> Result<Vec<BillingInput>, DbError> {
    Ok(diesel::sql_query(
        "SELECT w.account_id, a.status AS account_status, a.anniversary_day, a.currency, \
                s.subscription_id, s.minimum_commitment_minor, \
                bu.bill_unit_id, bu.period_start, \
                COALESCE(bu.status = 'CLOSED', false) AS bill_unit_closed, \
                (bu.rate_time IS NOT NULL) AS bill_unit_rated, \
                (bu.bill_unit_id IS NOT NULL AND EXISTS ( \
                    SELECT 1 FROM ledger.usage_records ur \
                    WHERE ur.client_id = bu.client_id AND ur.bill_unit_id = bu.bill_unit_id)) \
                    AS has_usage, \
                COALESCE(( \
                    SELECT sum(t.amount_minor) FROM ledger.transactions t \
                    JOIN ledger.services sv \
                      ON sv.client_id = t.client_id AND sv.service_id = t.service_id \
                    WHERE t.client_id = bu.client_id AND t.bill_unit_id = bu.bill_unit_id \
                      AND t.transaction_type IN ('USAGE', 'USAGE_ADJ') \
                      AND sv.commitment_eligible), 0)::bigint AS eligible_usage_minor, \
                (s.subscription_id IS NOT NULL AND EXISTS ( \
                    SELECT 1 FROM ledger.bill_units cur \
                    WHERE cur.client_id = s.client_id AND cur.subscription_id = s.subscription_id \
                      AND cur.period_start <= $3 AND $3 < cur.period_end)) \
                    AS has_bill_unit_containing_date \
         FROM unnest($2::text[]) AS w(account_id) \
         LEFT JOIN ledger.accounts a ON a.client_id = $1 AND a.account_id = w.account_id \
         LEFT JOIN ledger.subscriptions s \
           ON s.client_id = a.client_id AND s.account_id = a.account_id AND s.status = 'ACTIVE' \
         LEFT JOIN ledger.bill_units bu \
           ON bu.client_id = s.client_id AND bu.subscription_id = s.subscription_id \
          AND bu.period_end = $3 \
         ORDER BY w.account_id, s.subscription_id",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<Array<Text>, _>(account_ids.to_vec())
    .bind::<Date, _>(date)
    .load(conn)
    .await?)
}

/// Closing one bill unit and opening the next period of its subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodRoll {
    /// The bill unit that ends.
    pub ending_bill_unit_id: i64,
    /// Its subscription.
    pub subscription_id: String,
    /// Its account.
    pub account_id: String,
    /// First date of the next period (the billing date).
    pub next_start: NaiveDate,
    /// First date after the next period.
    pub next_end: NaiveDate,
}

/// What [`apply_billing`] changed; zero everywhere on a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillingApplied {
    /// Bill units closed.
    pub closed: usize,
    /// Bill units opened.
    pub opened: usize,
    /// Allowance and accumulator rows granted.
    pub balances_granted: usize,
    /// TRUE_UP transactions created.
    pub true_ups: usize,
}

/// Applies the billing of a batch in one database transaction: closes the
/// ending bill units, opens the next ones, grants each new period's
/// allowances and fresh accumulators, and inserts the true-ups. Every step
/// is idempotent (closing a closed unit, opening an existing period,
/// granting existing balances and inserting an existing key change
/// nothing), so replaying a batch creates nothing twice.
pub async fn apply_billing(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    rolls: &[PeriodRoll],
    true_ups: &[NewTransaction],
) -> Result<BillingApplied, DbError> {
    let client = client_id.to_string();
    conn.transaction(async |conn| -> Result<BillingApplied, DbError> {
        let mut applied = BillingApplied::default();
        if !rolls.is_empty() {
            applied.closed = diesel::sql_query(
                "UPDATE ledger.bill_units SET status = 'CLOSED', close_time = now() \
                 WHERE client_id = $1 AND bill_unit_id = ANY($2) AND status = 'OPEN'",
            )
            .bind::<Text, _>(client.clone())
            .bind::<Array<BigInt>, _>(
                rolls
                    .iter()
                    .map(|r| r.ending_bill_unit_id)
                    .collect::<Vec<_>>(),
            )
            .execute(conn)
            .await?;
            let subscriptions: Vec<String> =
                rolls.iter().map(|r| r.subscription_id.clone()).collect();
            let starts: Vec<NaiveDate> = rolls.iter().map(|r| r.next_start).collect();
            applied.opened = diesel::sql_query(
                "INSERT INTO ledger.bill_units \
                     (client_id, subscription_id, account_id, period_start, period_end) \
                 SELECT $1, n.* FROM unnest($2::text[], $3::text[], $4::date[], $5::date[]) \
                     AS n(subscription_id, account_id, period_start, period_end) \
                 ON CONFLICT ON CONSTRAINT bill_units_subscription_period_key DO NOTHING",
            )
            .bind::<Text, _>(client.clone())
            .bind::<Array<Text>, _>(subscriptions.clone())
            .bind::<Array<Text>, _>(
                rolls
                    .iter()
                    .map(|r| r.account_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Date>, _>(starts.clone())
            .bind::<Array<Date>, _>(rolls.iter().map(|r| r.next_end).collect::<Vec<_>>())
            .execute(conn)
            .await?;
            applied.balances_granted = diesel::sql_query(
                "INSERT INTO ledger.balances \
                     (client_id, bill_unit_id, service_id, balance_type, granted, balance) \
                 SELECT bu.client_id, bu.bill_unit_id, ss.service_id, k.balance_type, \
                        CASE k.balance_type WHEN 'ALLOWANCE' THEN ss.allowance_units ELSE 0 END, \
                        CASE k.balance_type WHEN 'ALLOWANCE' THEN ss.allowance_units ELSE 0 END \
                 FROM unnest($2::text[], $3::date[]) AS n(subscription_id, period_start) \
                 JOIN ledger.bill_units bu \
                   ON bu.client_id = $1 AND bu.subscription_id = n.subscription_id \
                  AND bu.period_start = n.period_start \
                 JOIN ledger.subscription_services ss \
                   ON ss.client_id = bu.client_id AND ss.subscription_id = bu.subscription_id \
                 CROSS JOIN (VALUES ('ALLOWANCE'), ('ACCUMULATOR')) AS k(balance_type) \
                 ON CONFLICT DO NOTHING",
            )
            .bind::<Text, _>(client.clone())
            .bind::<Array<Text>, _>(subscriptions)
            .bind::<Array<Date>, _>(starts)
            .execute(conn)
            .await?;
        }
        applied.true_ups = insert_transactions(conn, &client, true_ups).await?;
        Ok(applied)
    })
    .await
}

// ---------------------------------------------------------------------------
// Demo ledger
// ---------------------------------------------------------------------------

/// The shape of a demo ledger; see [`crate::billing::demo`].
#[derive(Debug, Clone)]
pub struct DemoLedgerSpec {
    /// Number of accounts, `A0000001` upward.
    pub accounts: i64,
    /// The date the demo is loaded for: the open bill units are those
    /// containing the day before it.
    pub business_date: NaiveDate,
    /// For each anniversary day 1 to 31 (index 0 is day 1): the open period
    /// containing the day before the business date.
    pub open_periods: Vec<(NaiveDate, NaiveDate)>,
    /// The anniversary days that bill on the business date: rating faults
    /// are kept off these days so the business date's run gets past rating.
    pub due_days: Vec<i16>,
}

/// Removes every ledger row of `client_id`.
pub async fn delete_client_ledger(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> Result<(), DbError> {
    for table in [
        "transactions",
        "balances",
        "usage_records",
        "bill_units",
        "subscription_services",
        "subscriptions",
        "rate_tiers",
        "rate_schedules",
        "services",
        "accounts",
    ] {
        diesel::sql_query(format!("DELETE FROM ledger.{table} WHERE client_id = $1"))
            .bind::<Text, _>(client_id.to_string())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Row counts of a loaded demo ledger.
#[derive(Debug, Clone, Default, QueryableByName)]
pub struct LedgerCounts {
    /// Accounts.
    #[diesel(sql_type = BigInt)]
    pub accounts: i64,
    /// Subscriptions.
    #[diesel(sql_type = BigInt)]
    pub subscriptions: i64,
    /// Bill units.
    #[diesel(sql_type = BigInt)]
    pub bill_units: i64,
    /// Usage records.
    #[diesel(sql_type = BigInt)]
    pub usage_records: i64,
    /// Monetized transactions.
    #[diesel(sql_type = BigInt)]
    pub transactions: i64,
}

/// Replaces the ledger of `client_id` with a generated one, set-based (a
/// dozen `INSERT ... SELECT` over `generate_series`, about 30 s for 100,000
/// accounts on two cores), in one database transaction, then analyzes the
/// ledger tables. The account number `n` drives every choice, so the same
/// spec always yields the same ledger:
///
/// - anniversary day `n mod 31 + 1`, so every day 1 to 31 has accounts;
/// - currency USD, every 7th EUR, every 11th GBP; a few CAD, for which no
///   rate schedule exists (`RATE_SCHEDULE_NOT_FOUND`);
/// - plan STANDARD, a few LEGACY_2019 whose voice tiers have a gap
///   (`TIER_GAP`), a few accumulators off by 7 (`ACCUMULATOR_MISMATCH`):
///   these three only on anniversary days not due on the business date, so
///   that date's run gets past rating;
/// - a few SUSPENDED accounts (`ACCOUNT_INACTIVE`) and cancelled
///   subscriptions (`NO_ACTIVE_SUBSCRIPTION`) on every day;
/// - a voice service on every subscription, data on two in three;
///   allowances; usage totals spread over every tier; minimum commitments
///   on one subscription in three, some met and some not;
/// - first-pass USAGE transactions SYNCED, except those of the day before
///   the business date, PENDING.
pub async fn load_demo_ledger(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    spec: &DemoLedgerSpec,
) -> Result<LedgerCounts, DbError> {
    let client = client_id.to_string();
    conn.transaction(async |conn| -> Result<LedgerCounts, DbError> {
        delete_client_ledger(conn, &client).await?;
        diesel::sql_query(
            "CREATE TEMP TABLE demo_spec ON COMMIT DROP AS \
             SELECT $1::bigint AS accounts, $2::date AS business_date",
        )
        .bind::<BigInt, _>(spec.accounts)
        .bind::<Date, _>(spec.business_date)
        .execute(conn)
        .await?;
        diesel::sql_query(
            "CREATE TEMP TABLE demo_periods ON COMMIT DROP AS \
             SELECT p.day::smallint AS day, p.period_start, p.period_end, \
                    p.day::smallint = ANY($3) AS due \
             FROM unnest($1::date[], $2::date[]) WITH ORDINALITY \
                 AS p(period_start, period_end, day)",
        )
        .bind::<Array<Date>, _>(spec.open_periods.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind::<Array<Date>, _>(spec.open_periods.iter().map(|p| p.1).collect::<Vec<_>>())
        .bind::<Array<SmallInt>, _>(spec.due_days.clone())
        .execute(conn)
        .await?;
        for statement in DEMO_LEDGER {
            if statement.contains("$1") {
                diesel::sql_query(*statement)
                    .bind::<Text, _>(client.clone())
                    .execute(conn)
                    .await?;
            } else {
                diesel::sql_query(*statement).execute(conn).await?;
            }
        }
        Ok(diesel::sql_query(
            "SELECT (SELECT count(*) FROM ledger.accounts WHERE client_id = $1) AS accounts, \
                    (SELECT count(*) FROM ledger.subscriptions WHERE client_id = $1) \
                        AS subscriptions, \
                    (SELECT count(*) FROM ledger.bill_units WHERE client_id = $1) AS bill_units, \
                    (SELECT count(*) FROM ledger.usage_records WHERE client_id = $1) \
                        AS usage_records, \
                    (SELECT count(*) FROM ledger.transactions WHERE client_id = $1) \
                        AS transactions",
        )
        .bind::<Text, _>(client.clone())
        .get_result(conn)
        .await?)
    })
    .await
}

/// The statements that generate a demo ledger, each taking the client as
/// `$1` (or nothing) and reading the spec from the temporary tables
/// `demo_spec` (number of accounts, business date) and `demo_periods` (the
/// open period of each anniversary day, and whether the day is due on the
/// business date). Intermediate results go to analyzed temporary tables so
/// every join is a hash join over rows with statistics.
///
/// Rates: voice per minute 5 below 1,000 min, 4 below 5,000, then 3 minor
/// units; data per MB 2 below 2,000 MB, then 1. The LEGACY_2019 voice
/// schedule jumps from 1,000 to 1,500 (a tier gap).
///
/// In `demo_accounts`, `fault_kind` picks the few broken accounts: in every
/// 29th block of 31 accounts (one account of each anniversary day) every
/// account gets a fault, the kind cycling through 1 SUSPENDED, 2 cancelled
/// subscription, 3 LEGACY_2019 plan, 4 CAD currency, 5 accumulator off.
const DEMO_LEDGER: &[&str] = &[
    "INSERT INTO ledger.services (client_id, service_id, name, unit_of_measure, commitment_eligible) \
     VALUES ($1, 'VOICE_MIN', 'Voice minutes', 'minute', true), \
            ($1, 'DATA_MB', 'Mobile data', 'MB', true)",
    "INSERT INTO ledger.rate_schedules (client_id, plan_code, service_id, currency, name) \
     SELECT $1, p, s, c, p || ' ' || s || ' ' || c \
     FROM unnest(ARRAY['STANDARD', 'LEGACY_2019']) p, unnest(ARRAY['VOICE_MIN', 'DATA_MB']) s, \
          unnest(ARRAY['USD', 'EUR', 'GBP']) c",
    "INSERT INTO ledger.rate_tiers (client_id, plan_code, service_id, currency, tier_no, \
         from_quantity, to_quantity, unit_price_minor) \
     SELECT $1, rs.plan_code, rs.service_id, rs.currency, t.tier_no, \
            CASE WHEN rs.plan_code = 'LEGACY_2019' AND t.service_id = 'VOICE_MIN' \
                      AND t.tier_no = 2 THEN 1500 ELSE t.from_q END, \
            t.to_q, t.price \
     FROM ledger.rate_schedules rs \
     JOIN (VALUES ('VOICE_MIN', 1, 0, 1000, 5), ('VOICE_MIN', 2, 1000, 5000, 4), \
                  ('VOICE_MIN', 3, 5000, NULL, 3), \
                  ('DATA_MB', 1, 0, 2000, 2), ('DATA_MB', 2, 2000, NULL, 1)) \
          AS t(service_id, tier_no, from_q, to_q, price) ON t.service_id = rs.service_id \
     WHERE rs.client_id = $1",
    // Fault kinds 1-2 hit BILLING; 3-5 hit rating and are kept off the
    // days due on the business date.
    "CREATE TEMP TABLE demo_accounts ON COMMIT DROP AS \
     SELECT a.n, 'A' || lpad(a.n::text, 7, '0') AS account_id, \
            'S' || lpad(a.n::text, 7, '0') AS subscription_id, a.day, f.fault_kind, \
            CASE WHEN f.fault_kind = 4 THEN 'CAD' WHEN a.n % 11 = 0 THEN 'GBP' \
                 WHEN a.n % 7 = 0 THEN 'EUR' ELSE 'USD' END AS currency, \
            p.period_start, p.period_end, a.business_date \
     FROM ( \
         SELECT n, (n % 31 + 1)::smallint AS day, spec.business_date, \
                CASE WHEN (n / 31) % 29 = 7 THEN ((n / 31 / 29) % 5) + 1 ELSE 0 END::int \
                    AS fault_kind \
         FROM demo_spec spec, generate_series(1, spec.accounts) AS n) a \
     JOIN demo_periods p ON p.day = a.day \
     CROSS JOIN LATERAL ( \
         SELECT CASE WHEN a.fault_kind >= 3 AND p.due THEN 0 ELSE a.fault_kind END \
             AS fault_kind) f",
    "ANALYZE demo_accounts",
    "INSERT INTO ledger.accounts (client_id, account_id, status, anniversary_day, currency, time_zone) \
     SELECT $1, account_id, CASE WHEN fault_kind = 1 THEN 'SUSPENDED' ELSE 'ACTIVE' END, day, \
            currency, \
            (ARRAY['America/New_York', 'America/Chicago', 'America/Los_Angeles', \
                   'Europe/London', 'Europe/Berlin', 'Asia/Tokyo'])[n % 6 + 1] \
     FROM demo_accounts",
    // One subscription each; a third carry a minimum commitment of 25.00,
    // 60.00 or 150.00.
    "INSERT INTO ledger.subscriptions (client_id, subscription_id, account_id, plan_code, status, \
         minimum_commitment_minor, start_date) \
     SELECT $1, subscription_id, account_id, \
            CASE WHEN fault_kind = 3 THEN 'LEGACY_2019' ELSE 'STANDARD' END, \
            CASE WHEN fault_kind = 2 THEN 'CANCELLED' ELSE 'ACTIVE' END, \
            CASE WHEN n % 3 = 0 THEN (ARRAY[2500, 6000, 15000])[n % 9 / 3 + 1] END, \
            period_start - 365 \
     FROM demo_accounts",
    // The open bill unit of every active subscription.
    "INSERT INTO ledger.bill_units (client_id, subscription_id, account_id, period_start, period_end) \
     SELECT $1, subscription_id, account_id, period_start, period_end \
     FROM demo_accounts WHERE fault_kind <> 2",
    // Each subscription's recurring services: voice (100 free minutes) on
    // every one, data (500 free MB) on two in three; with the period's
    // usage total, spread over every tier (a hash of n and the service),
    // none for one subscription in 17.
    "CREATE TEMP TABLE demo_units ON COMMIT DROP AS \
     SELECT a.n, a.account_id, a.subscription_id, a.currency, a.fault_kind, a.period_start, \
            a.business_date, bu.bill_unit_id, s.service_id, s.allowance, s.entry_price, \
            CASE WHEN a.n % 17 = 0 THEN 0 \
                 ELSE (hashint4(a.n::int + s.salt)::bigint & 8191) % s.spread END AS total \
     FROM demo_accounts a \
     JOIN (VALUES ('VOICE_MIN', 100, 5, 7000, 0), ('DATA_MB', 500, 2, 4000, 100003)) \
         AS s(service_id, allowance, entry_price, spread, salt) \
       ON s.service_id = 'VOICE_MIN' OR a.n % 3 <> 1 \
     LEFT JOIN ledger.bill_units bu \
       ON bu.client_id = $1 AND bu.subscription_id = a.subscription_id",
    "ANALYZE demo_units",
    "INSERT INTO ledger.subscription_services (client_id, subscription_id, service_id, allowance_units) \
     SELECT $1, subscription_id, service_id, allowance FROM demo_units",
    // Two usage records per service with usage: 60% early in the period,
    // the rest later (on the day before the business date for one account
    // in four). The allowance covers the first record first; the first
    // pass priced the rest at the entry tier.
    "INSERT INTO ledger.usage_records (client_id, account_id, subscription_id, bill_unit_id, \
         service_id, usage_date, quantity, allowance_used, first_pass_tier, first_pass_amount_minor) \
     SELECT $1, u.account_id, u.subscription_id, u.bill_unit_id, u.service_id, r.usage_date, \
            r.quantity, r.allowance_used, 1, (r.quantity - r.allowance_used) * u.entry_price \
     FROM demo_units u \
     CROSS JOIN LATERAL ( \
         SELECT u.total * 3 / 5 AS first, u.total - u.total * 3 / 5 AS second, \
                u.business_date - u.period_start AS days) q \
     CROSS JOIN LATERAL (VALUES \
         (u.period_start + (u.n % 7 % q.days)::int, q.first, LEAST(q.first, u.allowance)), \
         (CASE WHEN u.n % 4 = 0 THEN u.business_date - 1 \
               ELSE u.period_start + ((u.n % 5 + 10) % q.days)::int END, \
          q.second, LEAST(q.second, u.allowance - LEAST(q.first, u.allowance)))) \
         AS r(usage_date, quantity, allowance_used) \
     WHERE u.bill_unit_id IS NOT NULL AND u.total > 0",
    // Balances of the open periods: allowance left, and the accumulator
    // equal to the usage (off by 7 for fault kind 5).
    "INSERT INTO ledger.balances (client_id, bill_unit_id, service_id, balance_type, granted, balance) \
     SELECT $1, u.bill_unit_id, u.service_id, k.balance_type, \
            CASE k.balance_type WHEN 'ALLOWANCE' THEN u.allowance ELSE 0 END, \
            CASE k.balance_type \
                 WHEN 'ALLOWANCE' THEN u.allowance - LEAST(u.total, u.allowance) \
                 ELSE u.total + CASE WHEN u.fault_kind = 5 THEN 7 ELSE 0 END END \
     FROM demo_units u \
     CROSS JOIN (VALUES ('ALLOWANCE'), ('ACCUMULATOR')) AS k(balance_type) \
     WHERE u.bill_unit_id IS NOT NULL",
    // First-pass USAGE transactions: synced, except those of the day before
    // the business date, which SYNC_TRANSACTION still has to send.
    "INSERT INTO ledger.transactions (client_id, account_id, subscription_id, bill_unit_id, \
         service_id, transaction_type, quantity, amount_minor, currency, idempotency_key, \
         sync_status, sync_attempts, last_sync_time, core_reference, create_time) \
     SELECT $1, ur.account_id, ur.subscription_id, ur.bill_unit_id, ur.service_id, 'USAGE', \
            ur.quantity, ur.first_pass_amount_minor, a.currency, 'USAGE:U' || ur.usage_id, \
            CASE WHEN p.pending THEN 'PENDING' ELSE 'SYNCED' END, \
            CASE WHEN p.pending THEN 0 ELSE 1 END, \
            CASE WHEN p.pending THEN NULL ELSE (ur.usage_date + 1)::timestamptz END, \
            CASE WHEN p.pending THEN NULL ELSE 'DEMO-U' || ur.usage_id END, \
            ur.usage_date::timestamptz \
     FROM ledger.usage_records ur \
     JOIN demo_accounts a ON a.account_id = ur.account_id \
     CROSS JOIN LATERAL (SELECT ur.usage_date >= a.business_date - 1 AS pending) p \
     WHERE ur.client_id = $1 AND ur.first_pass_amount_minor > 0",
    // Statistics for the jobs' queries right away, whether or not
    // autovacuum runs.
    "ANALYZE ledger.accounts, ledger.subscriptions, ledger.subscription_services, \
     ledger.bill_units, ledger.usage_records, ledger.balances, ledger.transactions, \
     ledger.rate_tiers, ledger.rate_schedules, ledger.services",
];
