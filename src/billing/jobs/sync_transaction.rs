//! SYNC_TRANSACTION: sends monetized usage transactions (USAGE, USAGE_ADJ)
//! that are not yet synchronized to core Aria. One work item is one
//! account's unsynchronized transactions in one currency, up to the highest
//! id seen when planning; a batch goes to core Aria in one call (split into
//! chunks by the client).
//!
//! Each transaction is marked SYNCED with core Aria's reference, or ERROR
//! with core Aria's own code, which becomes the item's error code. When core
//! Aria cannot be reached, the transactions are marked ERROR with
//! SYNC_ENDPOINT_UNAVAILABLE and the whole batch fails, so the engine
//! retries it.
//!
//! Idempotent: core Aria receives every transaction's idempotency key and
//! applies each key once; a replayed batch finds the already SYNCED
//! transactions left out of its query and resends only the rest.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::catalogue::{CatalogueEntry, CatalogueJob, SYNC_TRANSACTION};
use super::ledger_job::{ledger_conn, ledger_error, paged_plan, payload, to_payload, PLAN_PAGE};
use crate::billing::core_aria::{CoreAriaClient, CoreError};
use crate::billing::ledger::store::{self as ledger, SyncResult, TransactionToSync};
use crate::proto::core_v1::UsageTransaction;
use crate::scheduling::job::{
    ItemOutcome, JobContext, JobError, PlanStream, PlannedItem, WorkItem,
};

/// The JSON input of one SYNC_TRANSACTION work item: the account's
/// transactions to send. Processing sends the account's unsynchronized
/// transactions in `currency` up to `through_transaction_id`, read from the
/// ledger; the ids listed are those pending when planned, for
/// troubleshooting. Fields added after the first release default when
/// absent, so items planned earlier still process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTransactionPayload {
    /// The account (also the item's account).
    #[serde(default)]
    pub account_id: String,
    /// The currency of the aggregation.
    pub currency: String,
    /// The ids of the transactions pending when planned, in order.
    #[serde(default)]
    pub transaction_ids: Vec<i64>,
    /// The item covers the account's unsynchronized transactions in the
    /// currency up to this id.
    pub through_transaction_id: i64,
    /// How many there were when planned.
    pub transactions: i64,
    /// Their total when planned, in minor units.
    pub amount_minor: i64,
}

/// The SYNC_TRANSACTION job.
#[derive(Debug, Clone)]
pub struct SyncTransaction {
    core: CoreAriaClient,
}

impl SyncTransaction {
    /// The job, sending to core Aria through `core`.
    pub fn new(core: CoreAriaClient) -> Self {
        Self { core }
    }
}

/// The usage transaction as core Aria's interface carries it.
pub(crate) fn to_core(t: &TransactionToSync) -> UsageTransaction {
    UsageTransaction {
        idempotency_key: t.idempotency_key.clone(),
        account_id: t.account_id.clone(),
        transaction_type: t.transaction_type.clone(),
        service_id: t.service_id.clone().unwrap_or_default(),
        quantity: t.quantity.unwrap_or(0),
        amount_minor: t.amount_minor,
        currency: t.currency.clone(),
        period_start: t.period_start.map(|d| d.to_string()).unwrap_or_default(),
        period_end: t.period_end.map(|d| d.to_string()).unwrap_or_default(),
        ledger_transaction_id: t.transaction_id.to_string(),
    }
}

#[async_trait]
impl CatalogueJob for SyncTransaction {
    const ENTRY: CatalogueEntry = SYNC_TRANSACTION;

    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError> {
        let (db, client_id) = (ctx.db.clone(), ctx.client_id.clone());
        Ok(paged_plan(move |after: Option<(String, String)>| {
            let (db, client_id) = (db.clone(), client_id.clone());
            async move {
                let mut conn = db.conn().await.map_err(ledger_error)?;
                let rows = ledger::unsynced_usage_by_account(
                    &mut conn,
                    &client_id,
                    after.as_ref().map(|(a, c)| (a.as_str(), c.as_str())),
                    PLAN_PAGE,
                )
                .await
                .map_err(ledger_error)?;
                let next = rows
                    .last()
                    .map(|r| (r.account_id.clone(), r.currency.clone()));
                let items = rows
                    .into_iter()
                    .map(|r| PlannedItem {
                        payload: to_payload(&SyncTransactionPayload {
                            account_id: r.account_id.clone(),
                            currency: r.currency,
                            transaction_ids: r.transaction_ids,
                            through_transaction_id: r.through_transaction_id,
                            transactions: r.transactions,
                            amount_minor: r.amount_minor,
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
        let payloads: Vec<Result<SyncTransactionPayload, ItemOutcome>> =
            items.iter().map(payload).collect();
        let wanted: Vec<(String, String, i64)> = items
            .iter()
            .zip(&payloads)
            .filter_map(|(item, p)| {
                p.as_ref().ok().map(|p| {
                    (
                        item.account_id.clone(),
                        p.currency.clone(),
                        p.through_transaction_id,
                    )
                })
            })
            .collect();
        let started = std::time::Instant::now();
        let mut conn = ledger_conn(ctx).await?;
        let transactions = ledger::unsynced_usage_transactions(&mut conn, &ctx.client_id, &wanted)
            .await
            .map_err(ledger_error)?;

        let read = started.elapsed();
        let sent = if transactions.is_empty() {
            Vec::new()
        } else {
            let outgoing = transactions.iter().map(to_core).collect();
            match self
                .core
                .record_usage_transactions(&ctx.client_id, outgoing)
                .await
            {
                Ok(results) => results,
                Err(e) => {
                    record_call_failure(&mut conn, ctx, &transactions, &e).await;
                    return Err(e.into());
                }
            }
        };

        let called = started.elapsed();
        // Record every transaction's result; gather each item's failures.
        let mut results = Vec::with_capacity(sent.len());
        let mut failures: HashMap<(String, String), Vec<(String, String, String)>> = HashMap::new();
        for (t, r) in transactions.iter().zip(&sent) {
            match &r.error_code {
                None => results.push((
                    t.transaction_id,
                    SyncResult::Synced {
                        core_reference: r.core_transaction_id.clone(),
                    },
                )),
                Some(code) => {
                    results.push((
                        t.transaction_id,
                        SyncResult::Failed {
                            code: code.clone(),
                            reason: r.error_message.clone(),
                        },
                    ));
                    failures
                        .entry((t.account_id.clone(), t.currency.clone()))
                        .or_default()
                        .push((
                            code.clone(),
                            t.idempotency_key.clone(),
                            r.error_message.clone(),
                        ));
                }
            }
        }
        ledger::record_sync_results(&mut conn, &ctx.client_id, &results)
            .await
            .map_err(ledger_error)?;
        tracing::debug!(
            items = items.len(),
            transactions = transactions.len(),
            read_ms = read.as_secs_f64() * 1e3,
            call_ms = (called - read).as_secs_f64() * 1e3,
            record_ms = (started.elapsed() - called).as_secs_f64() * 1e3,
            "usage transactions synced"
        );
        let sent_per_item = transactions.iter().fold(HashMap::new(), |mut m, t| {
            *m.entry((t.account_id.clone(), t.currency.clone()))
                .or_insert(0usize) += 1;
            m
        });

        Ok(items
            .iter()
            .zip(payloads)
            .map(|(item, p)| {
                let p = match p {
                    Ok(p) => p,
                    Err(outcome) => return outcome,
                };
                let key = (item.account_id.clone(), p.currency.clone());
                match failures.get(&key) {
                    None => ItemOutcome::Processed,
                    Some(failed) => {
                        let (code, first_key, message) = &failed[0];
                        ItemOutcome::error(
                            code.clone(),
                            format!(
                                "core Aria rejected {} of {} {} transactions of the account; \
                                 first {first_key}: {message}",
                                failed.len(),
                                sent_per_item.get(&key).copied().unwrap_or(0),
                                p.currency
                            ),
                        )
                    }
                }
            })
            .collect())
    }
}

/// Marks every transaction of a failed call ERROR with the call's code, so
/// the ledger shows what happened; a failure to record is logged, not
/// returned, since the call's error is the one the engine must see.
async fn record_call_failure(
    conn: &mut crate::db::Conn,
    ctx: &JobContext,
    transactions: &[TransactionToSync],
    error: &CoreError,
) {
    let failed: Vec<(i64, SyncResult)> = transactions
        .iter()
        .map(|t| {
            (
                t.transaction_id,
                SyncResult::Failed {
                    code: error.code().to_string(),
                    reason: error.to_string(),
                },
            )
        })
        .collect();
    if let Err(e) = ledger::record_sync_results(conn, &ctx.client_id, &failed).await {
        tracing::warn!(error = %e, "could not record the failed sync attempt");
    }
}
