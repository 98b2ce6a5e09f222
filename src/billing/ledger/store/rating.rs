//! What BILLTIME_USAGE_RATING reads and writes: the bill units ending on a
//! date (its plan), each bill unit's rating inputs and rate tiers, and the
//! second pass's results.

use chrono::NaiveDate;
use diesel::sql_types::{Array, BigInt, Bool, Date, Integer, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::transactions::{insert_transactions, NewTransaction};
use crate::db::DbError;

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
    /// The account's currency (`None` if the account is missing).
    #[diesel(sql_type = Nullable<Text>)]
    pub currency: Option<String>,
    /// The subscription's plan (`None` if the subscription is missing).
    #[diesel(sql_type = Nullable<Text>)]
    pub plan_code: Option<String>,
    /// The subscription's recurring services, in order: what is re-rated.
    #[diesel(sql_type = Array<Text>)]
    pub services: Vec<String>,
}

/// Up to `limit` bill units whose period ends on `period_end`, in
/// (account, bill unit) order after `after`, with the account's currency,
/// the plan and the services that price them (for the work item's
/// payload). An index range scan, and key lookups per bill unit.
pub async fn bill_units_ending_on(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    period_end: NaiveDate,
    after: Option<(&str, i64)>,
    limit: i64,
) -> Result<Vec<BillUnitEnding>, DbError> {
    let select = "SELECT bu.bill_unit_id, bu.subscription_id, bu.account_id, bu.period_start, \
                         bu.period_end, a.currency, s.plan_code, \
                         ARRAY(SELECT ss.service_id FROM ledger.subscription_services ss \
                               WHERE ss.client_id = bu.client_id \
                                 AND ss.subscription_id = bu.subscription_id \
                               ORDER BY ss.service_id) AS services \
                  FROM ledger.bill_units bu \
                  LEFT JOIN ledger.accounts a \
                    ON a.client_id = bu.client_id AND a.account_id = bu.account_id \
                  LEFT JOIN ledger.subscriptions s \
                    ON s.client_id = bu.client_id AND s.subscription_id = bu.subscription_id \
                  WHERE bu.client_id = $1 AND bu.period_end = $2";
    let rows = match after {
        None => {
            diesel::sql_query(format!(
                "{select} ORDER BY bu.account_id, bu.bill_unit_id LIMIT $3"
            ))
            .bind::<Text, _>(client_id.to_string())
            .bind::<Date, _>(period_end)
            .bind::<BigInt, _>(limit)
            .load(conn)
            .await?
        }
        Some((account_id, bill_unit_id)) => {
            diesel::sql_query(format!(
                "{select} AND (bu.account_id, bu.bill_unit_id) > ($3, $4) \
                 ORDER BY bu.account_id, bu.bill_unit_id LIMIT $5"
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
