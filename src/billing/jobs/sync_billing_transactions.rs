//! SYNC_BILLING_TRANSACTIONS: sends the TRUE_UP transactions BILLING
//! created to core Aria, each as one true-up order, as a step of its own so
//! that BILLING never fails on sync trouble. One work item is one TRUE_UP
//! not yet synchronized; a batch's orders go to core Aria in one
//! CreateTrueUpOrders call (split into chunks by the client), each order
//! with its own result.
//!
//! A TRUE_UP is marked SYNCED with core Aria's order id, or ERROR with core
//! Aria's own code (the item's error code). When core Aria cannot be
//! reached, the unsent TRUE_UPs are marked ERROR with
//! SYNC_ENDPOINT_UNAVAILABLE and the batch fails, so the engine retries it.
//!
//! Idempotent: an item whose TRUE_UP is already SYNCED is processed without
//! a call, and core Aria creates one order per idempotency key
//! (`TRUE_UP:BU<id>`), so a replayed call returns the original order.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::catalogue::{CatalogueEntry, CatalogueJob, SYNC_BILLING_TRANSACTIONS};
use super::ledger_job::{ledger_conn, ledger_error, paged_plan, payload, to_payload, PLAN_PAGE};
use crate::billing::core_aria::CoreAriaClient;
use crate::billing::ledger::store::{self as ledger, SyncResult, TransactionToSync, SYNCED};
use crate::proto::core_v1::TrueUpOrder;
use crate::scheduling::job::{
    ItemOutcome, JobContext, JobError, PlanStream, PlannedItem, WorkItem,
};

/// Error code: the TRUE_UP of the item does not exist.
pub const TRANSACTION_NOT_FOUND: &str = "TRANSACTION_NOT_FOUND";

/// The JSON input of one SYNC_BILLING_TRANSACTIONS work item: the TRUE_UP
/// and what its true-up order says. Processing reads the TRUE_UP from the
/// ledger by id; fields added after the first release default when absent,
/// so items planned earlier still process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrueUpSyncPayload {
    /// The TRUE_UP transaction.
    pub transaction_id: i64,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// The account invoiced.
    #[serde(default)]
    pub account_id: String,
    /// The subscription trued up.
    #[serde(default)]
    pub subscription_id: Option<String>,
    /// The bill unit (period) trued up.
    #[serde(default)]
    pub bill_unit_id: Option<i64>,
    /// Its amount, in minor units.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: String,
    /// The period's first date.
    #[serde(default)]
    pub period_start: Option<NaiveDate>,
    /// The period's end (exclusive).
    #[serde(default)]
    pub period_end: Option<NaiveDate>,
    /// The period's minimum commitment, in minor units.
    #[serde(default)]
    pub minimum_commitment_minor: Option<i64>,
    /// The period's usage eligible for it, in minor units.
    #[serde(default)]
    pub eligible_usage_minor: Option<i64>,
}

/// The SYNC_BILLING_TRANSACTIONS job.
#[derive(Debug, Clone)]
pub struct SyncBillingTransactions {
    core: CoreAriaClient,
}

impl SyncBillingTransactions {
    /// The job, sending to core Aria through `core`.
    pub fn new(core: CoreAriaClient) -> Self {
        Self { core }
    }
}

/// The true-up order of a TRUE_UP, as core Aria's interface carries it.
fn order(t: &TransactionToSync) -> TrueUpOrder {
    let detail = |field: &str| t.detail.get(field).and_then(|v| v.as_i64()).unwrap_or(0);
    TrueUpOrder {
        idempotency_key: t.idempotency_key.clone(),
        account_id: t.account_id.clone(),
        amount_minor: t.amount_minor,
        currency: t.currency.clone(),
        period_start: t.period_start.map(|d| d.to_string()).unwrap_or_default(),
        period_end: t.period_end.map(|d| d.to_string()).unwrap_or_default(),
        minimum_commitment_minor: detail("minimum_commitment_minor"),
        eligible_usage_minor: detail("eligible_usage_minor"),
        ledger_transaction_id: t.transaction_id.to_string(),
    }
}

#[async_trait]
impl CatalogueJob for SyncBillingTransactions {
    const ENTRY: CatalogueEntry = SYNC_BILLING_TRANSACTIONS;

    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError> {
        let (db, client_id) = (ctx.db.clone(), ctx.client_id.clone());
        Ok(paged_plan(move |after: Option<i64>| {
            let (db, client_id) = (db.clone(), client_id.clone());
            async move {
                let mut conn = db.conn().await.map_err(ledger_error)?;
                let rows =
                    ledger::unsynced_true_ups(&mut conn, &client_id, after.unwrap_or(0), PLAN_PAGE)
                        .await
                        .map_err(ledger_error)?;
                let next = rows.last().map(|r| r.transaction_id);
                let items = rows
                    .into_iter()
                    .map(|r| PlannedItem {
                        payload: to_payload(&TrueUpSyncPayload {
                            transaction_id: r.transaction_id,
                            idempotency_key: r.idempotency_key,
                            account_id: r.account_id.clone(),
                            subscription_id: r.subscription_id,
                            bill_unit_id: r.bill_unit_id,
                            amount_minor: r.amount_minor,
                            currency: r.currency,
                            period_start: r.period_start,
                            period_end: r.period_end,
                            minimum_commitment_minor: r.minimum_commitment_minor,
                            eligible_usage_minor: r.eligible_usage_minor,
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
        let payloads: Vec<Result<TrueUpSyncPayload, ItemOutcome>> =
            items.iter().map(payload).collect();
        let ids: Vec<i64> = payloads
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|p| p.transaction_id))
            .collect();
        let mut conn = ledger_conn(ctx).await?;
        let found: HashMap<i64, TransactionToSync> =
            ledger::true_ups_by_id(&mut conn, &ctx.client_id, &ids)
                .await
                .map_err(ledger_error)?
                .into_iter()
                .map(|t| (t.transaction_id, t))
                .collect();

        // Send every TRUE_UP not yet synced, the batch's orders in one call.
        let mut to_send: Vec<&TransactionToSync> =
            found.values().filter(|t| t.sync_status != SYNCED).collect();
        to_send.sort_by_key(|t| t.transaction_id);
        let orders: Vec<TrueUpOrder> = to_send.iter().map(|t| order(t)).collect();
        let answers = if orders.is_empty() {
            Vec::new()
        } else {
            match self
                .core
                .create_true_up_orders(&ctx.client_id, orders)
                .await
            {
                Ok(answers) => answers,
                Err(e) => {
                    // Nothing of the call is known: every order is marked
                    // with the call's error, and the retry resends them all
                    // (core Aria's keys make any that went through replays).
                    let failed: Vec<(i64, SyncResult)> = to_send
                        .iter()
                        .map(|t| {
                            let result = SyncResult::Failed {
                                code: e.code().to_string(),
                                reason: e.to_string(),
                            };
                            (t.transaction_id, result)
                        })
                        .collect();
                    if let Err(record) =
                        ledger::record_sync_results(&mut conn, &ctx.client_id, &failed).await
                    {
                        tracing::warn!(error = %record, "could not record the failed sync attempt");
                    }
                    return Err(e.into());
                }
            }
        };

        let mut results = Vec::with_capacity(answers.len());
        let mut rejected: HashMap<i64, (String, String)> = HashMap::new();
        for (t, answer) in to_send.iter().zip(answers) {
            let result = match answer.error_code {
                None => SyncResult::Synced {
                    core_reference: answer.order_id,
                },
                Some(code) => {
                    rejected.insert(
                        t.transaction_id,
                        (code.clone(), answer.error_message.clone()),
                    );
                    SyncResult::Failed {
                        code,
                        reason: answer.error_message,
                    }
                }
            };
            results.push((t.transaction_id, result));
        }
        ledger::record_sync_results(&mut conn, &ctx.client_id, &results)
            .await
            .map_err(ledger_error)?;

        Ok(payloads
            .into_iter()
            .map(|p| {
                let p = match p {
                    Ok(p) => p,
                    Err(outcome) => return outcome,
                };
                if !found.contains_key(&p.transaction_id) {
                    return ItemOutcome::error(
                        TRANSACTION_NOT_FOUND,
                        format!("TRUE_UP transaction {} does not exist", p.transaction_id),
                    );
                }
                match rejected.get(&p.transaction_id) {
                    None => ItemOutcome::Processed,
                    Some((code, message)) => ItemOutcome::error(
                        code.clone(),
                        format!(
                            "core Aria refused the true-up order {}: {message}",
                            p.idempotency_key
                        ),
                    ),
                }
            })
            .collect())
    }
}
