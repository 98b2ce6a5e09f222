//! The runtime: carries out the actions on executions ([`actions`]), and
//! runs the workers ([`worker`]) that plan work items, claim batches under a
//! lease and advance executions job by job.

pub mod actions;
pub mod scheduler;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use diesel_async::AsyncConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::scheduling::domain::event::{changes, EventBody};
use crate::scheduling::domain::Error;
use crate::scheduling::job::JobRegistry;
use crate::scheduling::store::events::{self, EventTarget};
use crate::scheduling::store::executions::{self, LoadedExecution};
use crate::scheduling::store::{configs, work, Db};

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
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            workers: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            scheduler: true,
            scheduler_tick: Duration::from_secs(1),
            catch_up: Duration::from_secs(24 * 3600),
        }
    }
}

/// Immutable facts about a job run, cached by workers.
#[derive(Debug, Clone)]
pub(crate) struct JobRunFacts {
    pub position: u32,
    pub job_type: String,
    pub target: EventTarget,
}

struct Inner {
    db: Db,
    registry: JobRegistry,
    settings: EngineSettings,
    worker_id: Uuid,
    wake: Notify,
    clock: Arc<dyn Clock>,
    facts: Mutex<HashMap<i64, JobRunFacts>>,
}

/// Handle on the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine on `db` running the job types of `registry`, on the system
    /// clock.
    pub fn new(db: Db, registry: JobRegistry, settings: EngineSettings) -> Self {
        Self::with_clock(db, registry, settings, Arc::new(SystemClock))
    }

    /// The same with an injected clock (tests move time with it).
    pub fn with_clock(
        db: Db,
        registry: JobRegistry,
        settings: EngineSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                registry,
                settings,
                worker_id: Uuid::new_v4(),
                wake: Notify::new(),
                clock,
                facts: Mutex::new(HashMap::new()),
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

    /// Identifies this process's leases.
    pub fn worker_id(&self) -> Uuid {
        self.inner.worker_id
    }

    /// Wakes idle workers: new work may be claimable.
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Starts this process's worker tasks; they stop when `shutdown` is
    /// cancelled, after settling the batch in hand.
    pub fn spawn_workers(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.settings().workers)
            .map(|index| tokio::spawn(worker::run(self.clone(), shutdown.clone(), index)))
            .collect()
    }

    /// Runs one step of work if any is claimable: plans a job or processes
    /// a batch. Returns whether it did something. Workers loop on this;
    /// tests and benchmarks may call it directly.
    pub async fn work_once(&self) -> Result<bool, Error> {
        worker::work_once(self).await
    }

    /// Deletes a configuration and its executions. Refused while one of its
    /// executions has work in flight.
    pub async fn delete_config(&self, client: &str, config_id: Uuid) -> Result<(), Error> {
        let mut conn = self.db().conn().await?;
        let client = client.to_string();
        conn.transaction::<_, Error, _>(async move |conn| {
            if executions::config_has_running(conn, config_id).await? {
                return Err(Error::precondition(
                    "EXECUTION_RUNNING",
                    "an execution of this configuration is running; wait for it, or reset \
                         it with cancel_in_flight, then delete",
                ));
            }
            let runs = executions::job_run_ids_of_config(conn, config_id).await?;
            work::discard(conn, &runs).await?;
            if !configs::delete(conn, &client, config_id).await? {
                return Err(Error::NotFound {
                    resource: "job schedule config",
                    id: config_id.to_string(),
                });
            }
            Ok(())
        })
        .await
    }

    /// Reads an execution without locking.
    pub async fn get_execution(
        &self,
        client: &str,
        config_id: Uuid,
        date: NaiveDate,
    ) -> Result<LoadedExecution, Error> {
        let mut conn = self.db().conn().await?;
        executions::load(&mut conn, client, config_id, date, false)
            .await?
            .ok_or_else(|| not_found(config_id, date))
    }

    pub(crate) fn facts(&self, job_run_id: i64) -> Option<JobRunFacts> {
        self.inner
            .facts
            .lock()
            .expect("facts lock")
            .get(&job_run_id)
            .cloned()
    }

    pub(crate) fn remember(&self, job_run_id: i64, facts: JobRunFacts) {
        let mut map = self.inner.facts.lock().expect("facts lock");
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(job_run_id, facts);
    }

    async fn idle(&self, shutdown: &tokio_util::sync::CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.inner.wake.notified() => {}
            _ = tokio::time::sleep(self.settings().poll_interval) => {}
        }
    }
}

/// NOT_FOUND for an execution.
pub(crate) fn not_found(config_id: Uuid, date: NaiveDate) -> Error {
    Error::NotFound {
        resource: "execution",
        id: format!("of config {config_id} for {date}"),
    }
}

/// The event target of an execution.
pub(crate) fn target_of(loaded: &LoadedExecution) -> EventTarget {
    EventTarget {
        client_id: loaded.row.client_id.clone(),
        execution_id: loaded.row.execution_id,
        config_id: loaded.row.config_id,
        business_date: loaded.row.business_date,
    }
}

/// Saves a transition and writes its events (plus `extra`), in the caller's
/// transaction.
pub(crate) async fn save_transition(
    conn: &mut diesel_async::AsyncPgConnection,
    loaded: &LoadedExecution,
    after: &crate::scheduling::domain::execution::ExecutionState,
    extra: Vec<EventBody>,
) -> Result<(), Error> {
    executions::save(conn, loaded, after).await?;
    let mut bodies = changes(&loaded.state, after);
    bodies.extend(extra);
    events::append(conn, &target_of(loaded), &bodies).await?;
    Ok(())
}
