//! The product's four catalogue jobs: names, descriptions and what one work
//! item of each is, and [`CatalogueJob`], through which each job module
//! states its entry once and gets the engine's [`JobType`] from it.

use async_trait::async_trait;

use crate::scheduling::job::{ItemOutcome, JobContext, JobError, JobType, PlanStream, WorkItem};

/// Name, description and work item of a catalogue job.
#[derive(Debug, Clone, Copy)]
pub struct CatalogueEntry {
    /// Catalogue name.
    pub name: &'static str,
    /// From the product documentation ("Available Jobs").
    pub description: &'static str,
    /// What one work item is.
    pub work_item: &'static str,
}

/// BILLTIME_USAGE_RATING.
pub const BILLTIME_USAGE_RATING: CatalogueEntry = CatalogueEntry {
    name: "BILLTIME_USAGE_RATING",
    description: "Handles the second stage of two-pass usage rating (volume rating). The first \
                  stage accumulates usage during the billing cycle; this job reprocesses those \
                  usage records using the accumulator balance from the first stage.",
    work_item: "one subscription's bill unit whose billing period ends on the business date",
};

/// SYNC_TRANSACTION.
pub const SYNC_TRANSACTION: CatalogueEntry = CatalogueEntry {
    name: "SYNC_TRANSACTION",
    description: "Synchronizes monetized usage transactions with core Aria. Transactions can \
                  synchronize multiple times per day. Including this job in the daily schedule \
                  ensures any delta transactions synchronize with the billing application before \
                  the job schedule closes.",
    work_item: "one account's pending monetized usage transactions",
};

/// BILLING.
pub const BILLING: CatalogueEntry = CatalogueEntry {
    name: "BILLING",
    description: "Triggers granting of allowances and accumulators for recurring services, and \
                  applies true-up for Minimum Commitments when usage eligible for the commitment \
                  falls below the commitment value. Creates a monetized non-usage transaction of \
                  type TRUE-UP and synchronizes it with core Aria. Invoicing and statement \
                  generation remain managed by core Aria.",
    work_item: "one account whose billing anniversary falls on the business date",
};

/// SYNC_BILLING_TRANSACTIONS.
pub const SYNC_BILLING_TRANSACTIONS: CatalogueEntry = CatalogueEntry {
    name: "SYNC_BILLING_TRANSACTIONS",
    description: "Sends true-up records from the Billing job to core Aria as a separate step, so \
                  that the Billing job does not fail due to synchronization issues between Aria \
                  Allegro and core Aria.",
    work_item: "one TRUE_UP transaction pending synchronization",
};

/// The catalogue in the recommended schedule order.
pub const CATALOGUE: [CatalogueEntry; 4] = [
    BILLTIME_USAGE_RATING,
    SYNC_TRANSACTION,
    BILLING,
    SYNC_BILLING_TRANSACTIONS,
];

/// A catalogue job: its [`CatalogueEntry`] and its two pieces of work. Every
/// `CatalogueJob` is a [`JobType`] whose name, description and work item
/// come from its entry, so the four jobs do not repeat them.
#[async_trait]
pub trait CatalogueJob: Send + Sync + 'static {
    /// The job's entry in the catalogue.
    const ENTRY: CatalogueEntry;
    /// See [`JobType::plan`].
    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError>;
    /// See [`JobType::process`].
    async fn process(
        &self,
        ctx: &JobContext,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError>;
}

#[async_trait]
impl<J: CatalogueJob> JobType for J {
    fn name(&self) -> &str {
        J::ENTRY.name
    }

    fn description(&self) -> &str {
        J::ENTRY.description
    }

    fn work_item(&self) -> &str {
        J::ENTRY.work_item
    }

    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError> {
        CatalogueJob::plan(self, ctx).await
    }

    async fn process(
        &self,
        ctx: &JobContext,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError> {
        CatalogueJob::process(self, ctx, items).await
    }
}
