//! BILLTIME_USAGE_RATING: the second pass of two-pass usage rating (volume
//! rating). For each bill unit whose period ends on the business date, the
//! accumulator balance of each recurring service selects one rate tier; the
//! period's billable usage (quantity not covered by the allowance) is
//! re-rated at that tier, and the difference to the first pass is written
//! as a USAGE_ADJ transaction pending sync.
//!
//! Idempotent: the adjustment of a (bill unit, service) has the key
//! `USAGE_ADJ:BU<id>:<service>` and is inserted ON CONFLICT DO NOTHING, so a
//! replayed batch writes no second adjustment; the usage records' second
//! pass columns are overwritten with the same values.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::catalogue::{CatalogueEntry, CatalogueJob, BILLTIME_USAGE_RATING};
use super::ledger_job::{ledger_conn, ledger_error, paged_plan, payload, to_payload, PLAN_PAGE};
use crate::billing::ledger::rules::{select_tier, RateTier};
use crate::billing::ledger::store::{
    self as ledger, NewTransaction, RatingInput, ServiceRating, USAGE_ADJ,
};
use crate::scheduling::job::{
    ItemOutcome, JobContext, JobError, PlanStream, PlannedItem, WorkItem,
};

/// Error code: the bill unit of the item no longer exists, or its
/// subscription has no recurring service.
pub const BILL_UNIT_NOT_FOUND: &str = "BILL_UNIT_NOT_FOUND";
/// Error code: no rate schedule for the subscription's plan, the service
/// and the account's currency.
pub const RATE_SCHEDULE_NOT_FOUND: &str = "RATE_SCHEDULE_NOT_FOUND";
/// Error code: the accumulator is missing or disagrees with the usage.
pub const ACCUMULATOR_MISMATCH: &str = "ACCUMULATOR_MISMATCH";

/// The JSON input of one BILLTIME_USAGE_RATING work item: the bill unit to
/// re-rate and, for whoever troubleshoots it, whose it is and what prices
/// it. Processing reads the bill unit's usage, balances and rates from the
/// ledger; fields added after the first release default when absent, so
/// items planned earlier still process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingPayload {
    /// The account billed.
    #[serde(default)]
    pub account_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// The bill unit to re-rate.
    pub bill_unit_id: i64,
    /// Its first date.
    pub period_start: NaiveDate,
    /// Its end (exclusive): the business date.
    pub period_end: NaiveDate,
    /// The account's currency, which picks the rate schedule.
    #[serde(default)]
    pub currency: Option<String>,
    /// The subscription's plan, which picks the rate schedule.
    #[serde(default)]
    pub plan_code: Option<String>,
    /// The recurring services re-rated.
    #[serde(default)]
    pub services: Vec<String>,
}

/// The BILLTIME_USAGE_RATING job.
#[derive(Debug, Clone, Default)]
pub struct BilltimeUsageRating;

impl BilltimeUsageRating {
    /// The job.
    pub fn new() -> Self {
        Self
    }
}

/// The rating of one service of a bill unit, or why it failed.
fn rate_service(
    input: &RatingInput,
    tiers: &HashMap<(String, String, String), Vec<RateTier>>,
) -> Result<(ServiceRating, Option<NewTransaction>), ItemOutcome> {
    if !input.rate_schedule_found {
        return Err(ItemOutcome::error(
            RATE_SCHEDULE_NOT_FOUND,
            format!(
                "no rate schedule for plan {}, service {} in {}",
                input.plan_code, input.service_id, input.currency
            ),
        ));
    }
    let accumulator = match input.accumulator_balance {
        Some(balance) => balance,
        // A period without usage needs no accumulator to be priced.
        None if input.usage_records == 0 => 0,
        None => {
            return Err(ItemOutcome::error(
                ACCUMULATOR_MISMATCH,
                format!(
                    "no {} accumulator in bill unit {} but {} usage records",
                    input.service_id, input.bill_unit_id, input.usage_records
                ),
            ))
        }
    };
    if accumulator != input.usage_quantity {
        return Err(ItemOutcome::error(
            ACCUMULATOR_MISMATCH,
            format!(
                "{} accumulator of bill unit {} is {} but its usage records total {}",
                input.service_id, input.bill_unit_id, accumulator, input.usage_quantity
            ),
        ));
    }
    let key = (
        input.plan_code.clone(),
        input.service_id.clone(),
        input.currency.clone(),
    );
    let schedule = tiers.get(&key).map(Vec::as_slice).unwrap_or_default();
    let rule_error = |e: crate::billing::ledger::rules::BillingRuleError| {
        ItemOutcome::error(
            e.code(),
            format!(
                "rate schedule {} / {} / {}: {e}",
                input.plan_code, input.service_id, input.currency
            ),
        )
    };
    let tier = select_tier(schedule, accumulator).map_err(rule_error)?;
    let rerated = tier.price(input.billable_quantity).map_err(rule_error)?;
    let adjustment = rerated
        .checked_sub(input.first_pass_amount_minor)
        .ok_or_else(|| {
            ItemOutcome::error(
                "AMOUNT_OVERFLOW",
                format!(
                    "adjustment {rerated} - {} overflows",
                    input.first_pass_amount_minor
                ),
            )
        })?;
    let rating = ServiceRating {
        bill_unit_id: input.bill_unit_id,
        service_id: input.service_id.clone(),
        tier_no: tier.tier_no,
        unit_price_minor: tier.unit_price_minor,
    };
    let transaction = (adjustment != 0).then(|| NewTransaction {
        account_id: input.account_id.clone(),
        subscription_id: Some(input.subscription_id.clone()),
        bill_unit_id: Some(input.bill_unit_id),
        service_id: Some(input.service_id.clone()),
        transaction_type: USAGE_ADJ.to_string(),
        quantity: None,
        amount_minor: adjustment,
        currency: input.currency.clone(),
        idempotency_key: ledger::usage_adj_key(input.bill_unit_id, &input.service_id),
        detail: serde_json::json!({
            "accumulator_balance": accumulator,
            "tier_no": tier.tier_no,
            "unit_price_minor": tier.unit_price_minor,
            "billable_quantity": input.billable_quantity,
            "rerated_amount_minor": rerated,
            "first_pass_amount_minor": input.first_pass_amount_minor,
            "period_start": input.period_start,
            "period_end": input.period_end,
        }),
    });
    Ok((rating, transaction))
}

#[async_trait]
impl CatalogueJob for BilltimeUsageRating {
    const ENTRY: CatalogueEntry = BILLTIME_USAGE_RATING;

    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError> {
        let (db, client_id, date) = (ctx.db.clone(), ctx.client_id.clone(), ctx.business_date);
        Ok(paged_plan(move |after: Option<(String, i64)>| {
            let (db, client_id) = (db.clone(), client_id.clone());
            async move {
                let mut conn = db.conn().await.map_err(ledger_error)?;
                let rows = ledger::bill_units_ending_on(
                    &mut conn,
                    &client_id,
                    date,
                    after.as_ref().map(|(a, b)| (a.as_str(), *b)),
                    PLAN_PAGE,
                )
                .await
                .map_err(ledger_error)?;
                let next = rows.last().map(|r| (r.account_id.clone(), r.bill_unit_id));
                let items = rows
                    .into_iter()
                    .map(|r| PlannedItem {
                        payload: to_payload(&RatingPayload {
                            account_id: r.account_id.clone(),
                            subscription_id: r.subscription_id,
                            bill_unit_id: r.bill_unit_id,
                            period_start: r.period_start,
                            period_end: r.period_end,
                            currency: r.currency,
                            plan_code: r.plan_code,
                            services: r.services,
                        }),
                        account_id: r.account_id,
                    })
                    .collect();
                Ok((items, next))
            }
        }))
    }

    async fn process(
        &self,
        ctx: &JobContext,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError> {
        let payloads: Vec<Result<RatingPayload, ItemOutcome>> = items.iter().map(payload).collect();
        let bill_unit_ids: Vec<i64> = payloads
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|p| p.bill_unit_id))
            .collect();
        let mut conn = ledger_conn(ctx).await?;
        let inputs = ledger::rating_inputs(&mut conn, &ctx.client_id, &bill_unit_ids)
            .await
            .map_err(ledger_error)?;
        let mut by_bill_unit: BTreeMap<i64, Vec<RatingInput>> = BTreeMap::new();
        for input in inputs {
            by_bill_unit
                .entry(input.bill_unit_id)
                .or_default()
                .push(input);
        }
        let mut schedules: Vec<(String, String, String)> = by_bill_unit
            .values()
            .flatten()
            .filter(|i| i.rate_schedule_found)
            .map(|i| {
                (
                    i.plan_code.clone(),
                    i.service_id.clone(),
                    i.currency.clone(),
                )
            })
            .collect();
        schedules.sort();
        schedules.dedup();
        let mut tiers: HashMap<(String, String, String), Vec<RateTier>> = HashMap::new();
        for t in ledger::rate_tiers(&mut conn, &ctx.client_id, &schedules)
            .await
            .map_err(ledger_error)?
        {
            tiers
                .entry((t.plan_code, t.service_id, t.currency))
                .or_default()
                .push(RateTier {
                    tier_no: t.tier_no,
                    from_quantity: t.from_quantity,
                    to_quantity: t.to_quantity,
                    unit_price_minor: t.unit_price_minor,
                });
        }

        let mut ratings = Vec::new();
        let mut adjustments = Vec::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for p in payloads {
            let p = match p {
                Ok(p) => p,
                Err(outcome) => {
                    outcomes.push(outcome);
                    continue;
                }
            };
            let Some(services) = by_bill_unit.get(&p.bill_unit_id) else {
                outcomes.push(ItemOutcome::error(
                    BILL_UNIT_NOT_FOUND,
                    format!(
                        "bill unit {} of subscription {} does not exist or its subscription \
                         has no recurring service",
                        p.bill_unit_id, p.subscription_id
                    ),
                ));
                continue;
            };
            match services
                .iter()
                .map(|s| rate_service(s, &tiers))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(rated) => {
                    for (rating, adjustment) in rated {
                        ratings.push(rating);
                        adjustments.extend(adjustment);
                    }
                    outcomes.push(ItemOutcome::Processed);
                }
                Err(outcome) => outcomes.push(outcome),
            }
        }
        if !ratings.is_empty() {
            let inserted = ledger::record_rating(&mut conn, &ctx.client_id, &ratings, &adjustments)
                .await
                .map_err(ledger_error)?;
            tracing::debug!(
                client_id = %ctx.client_id,
                services = ratings.len(),
                adjustments = adjustments.len(),
                inserted,
                "second-pass rating written"
            );
        }
        Ok(outcomes)
    }
}
