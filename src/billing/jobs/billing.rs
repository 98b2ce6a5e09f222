//! BILLING: for each account whose anniversary bills on the business date
//! (days 29-31 on the last day of shorter months), closes each active
//! subscription's bill unit ending on that date, opens the next period,
//! grants the new period's allowances and fresh accumulators, and where the
//! usage eligible for a minimum commitment fell below it, creates a TRUE_UP
//! transaction for the difference, pending sync (SYNC_BILLING_TRANSACTIONS
//! sends it; BILLING never talks to core Aria, so it never fails on sync).
//!
//! Idempotent: closing a closed unit, opening an existing period (unique per
//! subscription and start) and granting existing balances change nothing,
//! and the true-up's key `TRUE_UP:BU<id>` is inserted ON CONFLICT DO
//! NOTHING, so a retry never creates a second one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::catalogue::{CatalogueEntry, CatalogueJob, BILLING};
use super::ledger_job::{ledger_conn, ledger_error, paged_plan, payload, to_payload, PLAN_PAGE};
use crate::billing::ledger::rules::{anniversary_days_due_on, true_up_amount, AnniversaryDay};
use crate::billing::ledger::store::{
    self as ledger, BillingInput, DueSubscription, NewTransaction, PeriodRoll, TRUE_UP,
};
use crate::scheduling::job::{
    ItemOutcome, JobContext, JobError, PlanStream, PlannedItem, WorkItem,
};

/// Error code: the account does not exist (any more).
pub const ACCOUNT_NOT_FOUND: &str = "ACCOUNT_NOT_FOUND";
/// Error code: the account is not ACTIVE.
pub const ACCOUNT_INACTIVE: &str = "ACCOUNT_INACTIVE";
/// Error code: the account has no active subscription to bill.
pub const NO_ACTIVE_SUBSCRIPTION: &str = "NO_ACTIVE_SUBSCRIPTION";
/// Error code: an active subscription has no bill unit ending on the date
/// (nor one running through it).
pub const BILL_UNIT_NOT_FOUND: &str = "BILL_UNIT_NOT_FOUND";
/// Error code: the ending period has usage that did not go through the
/// second rating pass, so its true-up cannot be computed.
pub const USAGE_NOT_RATED: &str = "USAGE_NOT_RATED";
/// Error code: the account's anniversary day is not 1 to 31.
pub const INVALID_ANNIVERSARY: &str = "INVALID_ANNIVERSARY";

/// The JSON input of one BILLING work item: the account billed and, for
/// whoever troubleshoots it, its active subscriptions with the bill units
/// that end on the billing date and their commitments, as planned.
/// Processing reads the account, subscriptions, bill units and usage from
/// the ledger; fields added after the first release default when absent,
/// so items planned earlier still process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingPayload {
    /// The account (also the item's account).
    #[serde(default)]
    pub account_id: String,
    /// The account's anniversary day when planned.
    pub anniversary_day: i16,
    /// The date billed: the business date.
    pub billing_date: NaiveDate,
    /// The account's currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Its active subscriptions, by id.
    #[serde(default)]
    pub subscriptions: Vec<DueSubscription>,
}

/// The BILLING job.
#[derive(Debug, Clone, Default)]
pub struct Billing;

impl Billing {
    /// The job.
    pub fn new() -> Self {
        Self
    }
}

/// What billing one account on `date` does: the period rolls and true-ups
/// to write, or the account's error.
fn bill_account(
    account_id: &str,
    rows: &[BillingInput],
    date: NaiveDate,
) -> Result<(Vec<PeriodRoll>, Vec<NewTransaction>), ItemOutcome> {
    let not_found = || {
        ItemOutcome::error(
            ACCOUNT_NOT_FOUND,
            format!("account {account_id} does not exist"),
        )
    };
    let first = rows.first().ok_or_else(not_found)?;
    let Some(status) = &first.account_status else {
        return Err(not_found());
    };
    if status != "ACTIVE" {
        return Err(ItemOutcome::error(
            ACCOUNT_INACTIVE,
            format!("account {} is {status}", first.account_id),
        ));
    }
    let anniversary = first
        .anniversary_day
        .and_then(|d| u32::try_from(d).ok())
        .and_then(AnniversaryDay::new)
        .ok_or_else(|| {
            ItemOutcome::error(
                INVALID_ANNIVERSARY,
                format!(
                    "account {} has anniversary day {:?}",
                    first.account_id, first.anniversary_day
                ),
            )
        })?;
    if first.subscription_id.is_none() {
        return Err(ItemOutcome::error(
            NO_ACTIVE_SUBSCRIPTION,
            format!("account {} has no active subscription", first.account_id),
        ));
    }
    let currency = first.currency.clone().unwrap_or_default();
    let next = anniversary.period_starting(date);
    let mut rolls = Vec::new();
    let mut true_ups = Vec::new();
    for row in rows {
        let Some(subscription_id) = row.subscription_id.clone() else {
            return Err(ItemOutcome::error(
                NO_ACTIVE_SUBSCRIPTION,
                format!("account {} has no active subscription", row.account_id),
            ));
        };
        let Some(bill_unit_id) = row.bill_unit_id else {
            if row.has_bill_unit_containing_date {
                // Started after the last billing date: not due yet.
                continue;
            }
            return Err(ItemOutcome::error(
                BILL_UNIT_NOT_FOUND,
                format!("subscription {subscription_id} has no bill unit ending on {date}"),
            ));
        };
        if row.has_usage && !row.bill_unit_rated && !row.bill_unit_closed {
            return Err(ItemOutcome::error(
                USAGE_NOT_RATED,
                format!(
                    "bill unit {bill_unit_id} of subscription {subscription_id} has usage not \
                     rated by BILLTIME_USAGE_RATING"
                ),
            ));
        }
        rolls.push(PeriodRoll {
            ending_bill_unit_id: bill_unit_id,
            subscription_id: subscription_id.clone(),
            account_id: row.account_id.clone(),
            next_start: next.start,
            next_end: next.end,
        });
        if let Some(commitment) = row.minimum_commitment_minor {
            let amount = true_up_amount(commitment, row.eligible_usage_minor);
            if amount > 0 {
                true_ups.push(NewTransaction {
                    account_id: row.account_id.clone(),
                    subscription_id: Some(subscription_id),
                    bill_unit_id: Some(bill_unit_id),
                    service_id: None,
                    transaction_type: TRUE_UP.to_string(),
                    quantity: None,
                    amount_minor: amount,
                    currency: currency.clone(),
                    idempotency_key: ledger::true_up_key(bill_unit_id),
                    detail: serde_json::json!({
                        "minimum_commitment_minor": commitment,
                        "eligible_usage_minor": row.eligible_usage_minor,
                        "period_start": row.period_start,
                        "period_end": date,
                    }),
                });
            }
        }
    }
    Ok((rolls, true_ups))
}

#[async_trait]
impl CatalogueJob for Billing {
    const ENTRY: CatalogueEntry = BILLING;

    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError> {
        let date = ctx.business_date;
        let days = anniversary_days_due_on(date);
        let first_day = days.first().map_or(1, |d| d.day()) as i16;
        let last_day = days.last().map_or(0, |d| d.day()) as i16;
        let (db, client_id) = (ctx.db.clone(), ctx.client_id.clone());
        Ok(paged_plan(move |after: Option<(i16, String)>| {
            let (db, client_id) = (db.clone(), client_id.clone());
            async move {
                let mut conn = db.conn().await.map_err(ledger_error)?;
                let rows = ledger::accounts_due(
                    &mut conn,
                    &client_id,
                    first_day,
                    last_day,
                    date,
                    after.as_ref().map(|(d, a)| (*d, a.as_str())),
                    PLAN_PAGE,
                )
                .await
                .map_err(ledger_error)?;
                let next = rows
                    .last()
                    .map(|r| (r.anniversary_day, r.account_id.clone()));
                let items = rows
                    .into_iter()
                    .map(|r| {
                        let subscriptions = serde_json::from_value(r.subscriptions)
                            .map_err(|e| JobError::new("LEDGER_QUERY_FAILED", e.to_string()))?;
                        Ok(PlannedItem {
                            payload: to_payload(&BillingPayload {
                                account_id: r.account_id.clone(),
                                anniversary_day: r.anniversary_day,
                                billing_date: date,
                                currency: Some(r.currency),
                                subscriptions,
                            }),
                            account_id: r.account_id,
                        })
                    })
                    .collect::<Result<_, JobError>>()?;
                Ok((items, next))
            }
        }))
    }

    async fn process(
        &self,
        ctx: &JobContext,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError> {
        let payloads: Vec<Result<BillingPayload, ItemOutcome>> =
            items.iter().map(payload).collect();
        let accounts: Vec<String> = items
            .iter()
            .zip(&payloads)
            .filter(|(_, p)| p.is_ok())
            .map(|(i, _)| i.account_id.clone())
            .collect();
        let mut conn = ledger_conn(ctx).await?;
        let inputs =
            ledger::billing_inputs(&mut conn, &ctx.client_id, &accounts, ctx.business_date)
                .await
                .map_err(ledger_error)?;
        let mut by_account: BTreeMap<String, Vec<BillingInput>> = BTreeMap::new();
        for input in inputs {
            by_account
                .entry(input.account_id.clone())
                .or_default()
                .push(input);
        }

        let mut rolls = Vec::new();
        let mut true_ups = Vec::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, p) in items.iter().zip(payloads) {
            if let Err(outcome) = p {
                outcomes.push(outcome);
                continue;
            }
            let rows = by_account
                .get(&item.account_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match bill_account(&item.account_id, rows, ctx.business_date) {
                Ok((r, t)) => {
                    rolls.extend(r);
                    true_ups.extend(t);
                    outcomes.push(ItemOutcome::Processed);
                }
                Err(outcome) => outcomes.push(outcome),
            }
        }
        if !rolls.is_empty() || !true_ups.is_empty() {
            let applied = ledger::apply_billing(&mut conn, &ctx.client_id, &rolls, &true_ups)
                .await
                .map_err(ledger_error)?;
            tracing::debug!(client_id = %ctx.client_id, ?applied, "billing applied");
        }
        Ok(outcomes)
    }
}
