//! The runtime: executes the actions on executions, plans work items, claims
//! batches under a lease and advances executions job by job.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::Error;
use crate::jobs::JobRegistry;
use crate::store::{configs, Db};

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
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            workers: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
        }
    }
}

struct Inner {
    db: Db,
    registry: JobRegistry,
    settings: EngineSettings,
    worker_id: Uuid,
}

/// Handle on the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine on `db` running the job types of `registry`.
    pub fn new(db: Db, registry: JobRegistry, settings: EngineSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                registry,
                settings,
                worker_id: Uuid::new_v4(),
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

    /// Identifies this process's leases.
    pub fn worker_id(&self) -> Uuid {
        self.inner.worker_id
    }

    /// Starts this process's worker tasks; they stop when `shutdown` is
    /// cancelled, after finishing the batch in hand.
    pub fn spawn_workers(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = shutdown;
        Vec::new()
    }

    /// Deletes a configuration and its executions.
    pub async fn delete_config(&self, client: &str, config_id: Uuid) -> Result<(), Error> {
        let mut conn = self.db().conn().await?;
        if !configs::delete(&mut conn, client, config_id).await? {
            return Err(Error::NotFound {
                resource: "job schedule config",
                id: config_id.to_string(),
            });
        }
        Ok(())
    }
}
