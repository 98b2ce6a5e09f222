//! Queries on the reference billing ledger (schema `ledger`), and the row
//! models they use, one module per concern. The catalogue jobs read and
//! write the ledger only through these functions.
//!
//! Every function takes the client: every statement filters on `client_id`.
//! Batch functions take whole batches (arrays bound as parameters and
//! `unnest`ed) so that processing a batch costs a few statements, not a few
//! per work item. Money is `i64` minor units; see the migration's header.

pub mod billing;
pub mod rating;
pub mod sync;
pub mod transactions;

pub use billing::{
    accounts_due, apply_billing, billing_inputs, BillingApplied, BillingInput, DueAccount,
    DueSubscription, PeriodRoll,
};
pub use rating::{
    bill_units_ending_on, rate_tiers, rating_inputs, record_rating, BillUnitEnding, RateTierRow,
    RatingInput, ServiceRating,
};
pub use sync::{
    true_ups_by_id, unsynced_true_ups, unsynced_usage_by_account, unsynced_usage_transactions,
    TransactionToSync, UnsyncedTrueUp, UnsyncedUsage,
};
pub use transactions::{
    insert_transactions, record_sync_results, true_up_key, usage_adj_key, usage_key,
    NewTransaction, SyncResult, ERROR, PENDING, SYNCED, TRUE_UP, USAGE, USAGE_ADJ,
};
