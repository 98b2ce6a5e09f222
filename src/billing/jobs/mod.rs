//! The four catalogue jobs, one module each, implementing
//! [`JobType`](crate::scheduling::job::JobType) on the reference ledger.

use std::sync::Arc;

use crate::billing::core_aria::CoreAriaClient;
use crate::scheduling::job::JobRegistry;

pub mod billing;
pub mod catalogue;
mod ledger_job;
pub mod sync_billing_transactions;
pub mod sync_transaction;
pub mod usage_rating;

/// The registry of the product's catalogue jobs, in the recommended
/// schedule order, working on the reference ledger and synchronizing with
/// core Aria through `core`.
pub fn catalogue_registry(core: CoreAriaClient) -> JobRegistry {
    let mut registry = JobRegistry::new();
    registry
        .register(Arc::new(usage_rating::BilltimeUsageRating::new()))
        .register(Arc::new(sync_transaction::SyncTransaction::new(
            core.clone(),
        )))
        .register(Arc::new(billing::Billing::new()))
        .register(Arc::new(
            sync_billing_transactions::SyncBillingTransactions::new(core),
        ));
    registry
}
