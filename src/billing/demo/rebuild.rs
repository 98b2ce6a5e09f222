//! Building the dropped indexes of a large load again while the load goes
//! on: a table's indexes are built as soon as its rows are committed,
//! beside the copies of the other tables, so the index builds fill the
//! time the copies spend waiting on the database's write-ahead log instead
//! of all coming after the last copy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use super::bulk::{self, DroppedIndex};
use super::generate::Table;
use super::DemoError;

/// The dropped indexes of one load, table by table, and the builds started.
pub struct IndexRebuilds {
    url: String,
    /// Set until every table is copied (see [`bulk::create_indexes`]).
    copies_running: Arc<AtomicBool>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Indexes not yet being built, by table.
    waiting: HashMap<String, Vec<DroppedIndex>>,
    /// Tables copied so far.
    copied: usize,
    builds: Vec<JoinHandle<Result<(), tokio_postgres::Error>>>,
}

impl IndexRebuilds {
    /// Rebuilds of `dropped` for a load into `url`.
    pub fn new(url: &str, dropped: &[DroppedIndex]) -> Self {
        let mut waiting: HashMap<String, Vec<DroppedIndex>> = HashMap::new();
        for index in dropped {
            waiting
                .entry(index.table.clone())
                .or_default()
                .push(index.clone());
        }
        Self {
            url: url.to_string(),
            copies_running: Arc::new(AtomicBool::new(true)),
            state: Mutex::new(State {
                waiting,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rows of `table` are committed: its indexes start building
    /// (keys first, as dropped).
    pub fn copied(&self, table: Table) {
        let mut state = self.state();
        state.copied += 1;
        if state.copied == Table::ALL.len() {
            self.copies_running.store(false, Ordering::Release);
        }
        if let Some(indexes) = state.waiting.remove(table.name()) {
            let url = self.url.clone();
            let copies_running = Arc::clone(&self.copies_running);
            let build =
                tokio::spawn(
                    async move { bulk::create_indexes(&url, &indexes, &copies_running).await },
                );
            state.builds.push(build);
        }
    }

    /// Builds whatever has not started (a stream failed before copying its
    /// table: the indexes come back whether or not the rows went in) and
    /// waits for every build; the first error, if any.
    pub async fn finish(self) -> Result<(), DemoError> {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.copies_running.store(false, Ordering::Release);
        let rest: Vec<DroppedIndex> = state.waiting.into_values().flatten().collect();
        let mut result = bulk::create_indexes(&self.url, &rest, &self.copies_running)
            .await
            .map_err(DemoError::from);
        for build in state.builds {
            let built = match build.await {
                Ok(built) => built.map_err(DemoError::from),
                Err(e) => Err(DemoError::IndexBuild(e.to_string())),
            };
            if result.is_ok() {
                result = built;
            }
        }
        result
    }
}
