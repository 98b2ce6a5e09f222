//! The joint between the two wings: what a job type is ([`JobType`]) and
//! the registry the engine runs them from. The engine knows jobs only
//! through this module; the billing catalogue implements it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use futures_util::stream::BoxStream;

use crate::db::Db;
pub use crate::scheduling::domain::work_item::{ItemOutcome, PlannedItem, WorkItem};

/// A failure of a whole plan or batch (not of one item): the engine retries
/// the batch, and after its attempts are spent errors every item with `code`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct JobError {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable reason.
    pub reason: String,
}

impl JobError {
    /// A job error with a code and a reason.
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// What a job sees of the execution it runs in.
#[derive(Clone)]
pub struct JobContext {
    /// The client whose data the job works on.
    pub client_id: String,
    /// The business date of the execution.
    pub business_date: NaiveDate,
    /// The service's database, for jobs that read or write business data.
    pub db: Db,
}

/// Chunks of planned items; the engine inserts each chunk in bulk.
pub type PlanStream = BoxStream<'static, Result<Vec<PlannedItem>, JobError>>;

/// A job type: how to enumerate its work items for a date and how to process
/// a batch of them. Processing must be idempotent: a batch whose lease
/// expired is processed again by another worker.
#[async_trait]
pub trait JobType: Send + Sync + 'static {
    /// Catalogue name, e.g. `BILLING`.
    fn name(&self) -> &str;
    /// What the job does.
    fn description(&self) -> &str;
    /// What one work item is.
    fn work_item(&self) -> &str;
    /// Enumerates the job's work items for `ctx.business_date`, in chunks.
    async fn plan(&self, ctx: &JobContext) -> Result<PlanStream, JobError>;
    /// Processes a batch; returns one outcome per item, in the same order.
    async fn process(
        &self,
        ctx: &JobContext,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError>;
}

/// The job types this service runs, by name, in catalogue order.
#[derive(Clone, Default)]
pub struct JobRegistry {
    by_name: BTreeMap<String, Arc<dyn JobType>>,
    order: Vec<String>,
}

impl JobRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job type (replacing one of the same name).
    pub fn register(&mut self, job: Arc<dyn JobType>) -> &mut Self {
        let name = job.name().to_string();
        if self.by_name.insert(name.clone(), job).is_none() {
            self.order.push(name);
        }
        self
    }

    /// The job type named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn JobType>> {
        self.by_name.get(name).cloned()
    }

    /// Every job type in catalogue order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn JobType>> {
        self.order.iter().map(|n| &self.by_name[n])
    }

    /// The set of names, for validating configurations.
    pub fn names(&self) -> HashSet<String> {
        self.by_name.keys().cloned().collect()
    }
}
