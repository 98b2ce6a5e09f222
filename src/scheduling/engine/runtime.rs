//! The engine's own threads.
//!
//! Workers plan, claim and settle batches on a tokio runtime of their own.
//! On the server's runtime they would share run queues with every request
//! task: under a burst of API calls (hundreds of tasks) each step of a
//! worker (claim, load items, settle) waits its turn behind them, and batch
//! throughput falls with the read load. On their own threads the operating
//! system shares the cores between the two sets of threads, and the
//! engine's threads, which mostly wait on PostgreSQL, get a core as soon as
//! they wake.

use tokio::runtime::{Builder, Handle, Runtime};

/// A runtime for the engine's workers, shut down when dropped (without
/// blocking, so it may be dropped inside another runtime).
pub struct EngineRuntime {
    runtime: Option<Runtime>,
}

impl EngineRuntime {
    /// Starts `threads` worker threads named `allegro-engine`.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("allegro-engine")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Where the engine's tasks are spawned.
    pub fn handle(&self) -> Option<Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for EngineRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
