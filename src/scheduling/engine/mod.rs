//! The runtime: the workers that plan work items, claim batches under a
//! lease and advance executions job by job (`worker`), the scheduler of
//! automatic runs ([`scheduler`]), and the one way an execution's change is
//! written ([`transition`]). The use cases drive it; it never calls them.

pub mod liveness;
mod planner;
pub mod retention;
pub mod runtime;
pub mod scheduler;
pub mod transition;
pub mod window;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::Clock;
use crate::db::Db;
use crate::observability::metrics::EngineMetrics;
use crate::scheduling::domain::JobPosition;
use crate::scheduling::job::JobRegistry;
use crate::scheduling::store::events::EventTarget;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Work items per batch.
    pub batch_size: usize,
    /// Concurrent worker tasks in this process.
    pub workers: usize,
    /// How long a claimed batch or plan stays with its worker before another
    /// process may take it over.
    pub lease: Duration,
    /// How often an idle worker looks for work when nothing woke it.
    pub poll_interval: Duration,
    /// Whether this process runs the scheduler of automatic runs.
    pub scheduler: bool,
    /// How often the scheduler looks for due runs and exception windows.
    pub scheduler_tick: Duration,
    /// Automatic runs due at most this long ago are still started after
    /// downtime; older ones are recorded as missed.
    pub catch_up: Duration,
    /// Label work item metrics by client too (unbounded series: off by
    /// default).
    pub metrics_by_client: bool,
}

/// What a worker needs to know of a batch's job run (it never changes),
/// cached by job run id.
#[derive(Debug, Clone)]
pub(crate) struct JobRunIdentity {
    /// Position of the job in its execution.
    pub position: JobPosition,
    /// Its job type.
    pub job_type: String,
    /// Where its events go.
    pub target: EventTarget,
}

struct Inner {
    db: Db,
    registry: JobRegistry,
    settings: EngineSettings,
    worker_id: Uuid,
    wake: Notify,
    clock: Arc<dyn Clock>,
    identities: Mutex<HashMap<i64, JobRunIdentity>>,
    metrics: EngineMetrics,
    /// When this process's engine was made, the origin of `last_work_ms`.
    started: std::time::Instant,
    /// Milliseconds after `started` (plus one, so 0 means never) at which a
    /// worker last finished planning a job or processing a batch.
    last_work_ms: std::sync::atomic::AtomicU64,
    /// Workers planning or processing right now.
    busy_workers: std::sync::atomic::AtomicUsize,
}

/// A worker planning a job or processing a batch, from claim to settle.
pub(crate) struct Busy<'a>(&'a Engine);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.note_work();
        self.0
            .inner
            .busy_workers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long after a worker's last batch the engine still counts as
/// processing (a little more than a worker's poll between batches).
const PROCESSING_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

/// Handle on the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine on `db` running the job types of `registry`; `clock` is
    /// the system clock in production, a manual one in tests.
    pub fn new(
        db: Db,
        registry: JobRegistry,
        settings: EngineSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let metrics = EngineMetrics::new(settings.metrics_by_client);
        Self {
            inner: Arc::new(Inner {
                db,
                registry,
                settings,
                worker_id: Uuid::new_v4(),
                wake: Notify::new(),
                clock,
                identities: Mutex::new(HashMap::new()),
                metrics,
                started: std::time::Instant::now(),
                last_work_ms: std::sync::atomic::AtomicU64::new(0),
                busy_workers: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The job types this engine runs.
    pub fn registry(&self) -> &JobRegistry {
        &self.inner.registry
    }

    /// The engine's tunables.
    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// The clock the scheduler and the API read "now" from.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// What the engine and the scheduler record for `/metrics`.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    /// Identifies this process's leases.
    pub fn worker_id(&self) -> Uuid {
        self.inner.worker_id
    }

    /// Whether this process's workers are planning or processing now (or
    /// finished a batch within the last `PROCESSING_WINDOW`): the request
    /// side then yields database capacity to them (see
    /// `UseCases::with_read_gate`).
    pub fn is_processing(&self) -> bool {
        if self
            .inner
            .busy_workers
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            return true;
        }
        let last = self
            .inner
            .last_work_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        last != 0
            && self.millis_since_start().saturating_sub(last) < PROCESSING_WINDOW.as_millis() as u64
    }

    /// Marks a worker busy until the guard is dropped.
    pub(crate) fn busy(&self) -> Busy<'_> {
        self.inner
            .busy_workers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Busy(self)
    }

    /// Notes that a worker just planned a job or processed a batch.
    fn note_work(&self) {
        self.inner.last_work_ms.store(
            self.millis_since_start(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Wakes idle workers: new work may be claimable.
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Starts this process's worker tasks on `runtime` (the engine's own,
    /// see [`runtime::EngineRuntime`]) or, with `None`, on the caller's;
    /// they stop when `shutdown` is cancelled, after settling the batch in
    /// hand.
    pub fn spawn_workers(
        &self,
        runtime: Option<&tokio::runtime::Handle>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.settings().workers)
            .map(|index| {
                let work = worker::run(self.clone(), shutdown.clone(), index);
                match runtime {
                    Some(runtime) => runtime.spawn(work),
                    None => tokio::spawn(work),
                }
            })
            .collect()
    }

    fn identity(&self, job_run_id: i64) -> Option<JobRunIdentity> {
        let map = self
            .inner
            .identities
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(&job_run_id).cloned()
    }

    fn remember(&self, job_run_id: i64, identity: JobRunIdentity) {
        let mut map = self
            .inner
            .identities
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(job_run_id, identity);
    }

    async fn idle(&self, shutdown: &tokio_util::sync::CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.inner.wake.notified() => {}
            _ = tokio::time::sleep(self.settings().poll_interval) => {}
        }
    }
}
