//! What BILLING reads and writes: the accounts due on a date (its plan), each
//! account's billing inputs, and the period rolls and true-ups of a batch.

use chrono::NaiveDate;
use diesel::sql_types::{Array, BigInt, Bool, Date, Jsonb, Nullable, SmallInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::transactions::{insert_transactions, NewTransaction};
use crate::db::DbError;

/// An account due for billing: one work item of BILLING.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueAccount {
    /// The account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// Its anniversary day.
    #[diesel(sql_type = SmallInt)]
    pub anniversary_day: i16,
    /// Its currency.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Its active subscriptions, for the payload: a JSON array of
    /// [`DueSubscription`]s.
    #[diesel(sql_type = Jsonb)]
    pub subscriptions: serde_json::Value,
}

/// An active subscription of a due account, as planned: the bill unit that
/// ends on the billing date (if any) and the commitment it is held to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DueSubscription {
    /// The subscription.
    pub subscription_id: String,
    /// Its bill unit ending on the billing date.
    pub bill_unit_id: Option<i64>,
    /// That bill unit's first date.
    pub period_start: Option<NaiveDate>,
    /// That bill unit's end (exclusive): the billing date.
    pub period_end: Option<NaiveDate>,
    /// The minimum commitment per period, in minor units.
    pub minimum_commitment_minor: Option<i64>,
}

/// Up to `limit` accounts not CLOSED whose anniversary day is in
/// `first_day..=last_day`, after `after` in (anniversary day, account)
/// order: a range scan of `accounts_due_idx`, with each account's active
/// subscriptions and their bill units ending on `date` (key lookups per
/// account) for the work item's payload.
pub async fn accounts_due(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    first_day: i16,
    last_day: i16,
    date: NaiveDate,
    after: Option<(i16, &str)>,
    limit: i64,
) -> Result<Vec<DueAccount>, DbError> {
    let (day, account) = after.unwrap_or((0, ""));
    Ok(diesel::sql_query(
        "SELECT a.account_id, a.anniversary_day, a.currency, \
                COALESCE(s.subscriptions, '[]'::jsonb) AS subscriptions \
         FROM ledger.accounts a \
         LEFT JOIN LATERAL ( \
             SELECT jsonb_agg(jsonb_build_object( \
                        'subscription_id', s.subscription_id, \
                        'bill_unit_id', bu.bill_unit_id, \
                        'period_start', bu.period_start, \
                        'period_end', bu.period_end, \
                        'minimum_commitment_minor', s.minimum_commitment_minor) \
                    ORDER BY s.subscription_id) AS subscriptions \
             FROM ledger.subscriptions s \
             LEFT JOIN ledger.bill_units bu \
               ON bu.client_id = s.client_id AND bu.subscription_id = s.subscription_id \
              AND bu.period_end = $7 \
             WHERE s.client_id = a.client_id AND s.account_id = a.account_id \
               AND s.status = 'ACTIVE') s ON true \
         WHERE a.client_id = $1 AND a.status <> 'CLOSED' \
           AND a.anniversary_day BETWEEN $2 AND $3 \
           AND (a.anniversary_day, a.account_id) > ($4, $5) \
         ORDER BY a.anniversary_day, a.account_id LIMIT $6",
    )
    .bind::<Text, _>(client_id.to_string())
    .bind::<SmallInt, _>(first_day)
    .bind::<SmallInt, _>(last_day)
    .bind::<SmallInt, _>(day)
    .bind::<Text, _>(account.to_string())
    .bind::<BigInt, _>(limit)
    .bind::<Date, _>(date)
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
