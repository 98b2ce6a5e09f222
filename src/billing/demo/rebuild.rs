//! Building the dropped indexes of a large load again while the load goes
//! on: a table's indexes are built as soon as every part has committed its
//! rows of that table, beside the copies of the tables after it, so the
//! index builds fill the time the copies spend waiting on the database's
//! write-ahead log instead of all coming after the last copy.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::task::JoinHandle;

use super::bulk::{self, DroppedIndex};
use super::generate::Table;
use super::DemoError;

/// The dropped indexes of one load, table by table, and the builds started.
pub struct IndexRebuilds {
    url: String,
    parts: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Indexes not yet being built, by table.
    waiting: HashMap<String, Vec<DroppedIndex>>,
    /// Parts that have committed each table.
    copied: HashMap<Table, usize>,
    builds: Vec<JoinHandle<Result<(), tokio_postgres::Error>>>,
}

impl IndexRebuilds {
    /// Rebuilds of `dropped` for a load in `parts` parts into `url`.
    pub fn new(url: &str, dropped: &[DroppedIndex], parts: usize) -> Self {
        let mut waiting: HashMap<String, Vec<DroppedIndex>> = HashMap::new();
        for index in dropped {
            waiting
                .entry(index.table.clone())
                .or_default()
                .push(index.clone());
        }
        Self {
            url: url.to_string(),
            parts,
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

    /// One part committed its rows of `table`: once all have, the table's
    /// indexes start building (largest first, as dropped).
    pub fn copied(&self, table: Table) {
        let mut state = self.state();
        let done = state.copied.entry(table).or_default();
        *done += 1;
        if *done == self.parts {
            if let Some(indexes) = state.waiting.remove(table.name()) {
                let url = self.url.clone();
                let build = tokio::spawn(async move { bulk::create_indexes(&url, &indexes).await });
                state.builds.push(build);
            }
        }
    }

    /// Builds whatever has not started (a part failed before copying its
    /// table: the indexes come back whether or not the rows went in) and
    /// waits for every build; the first error, if any.
    pub async fn finish(self) -> Result<(), DemoError> {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rest: Vec<DroppedIndex> = state.waiting.into_values().flatten().collect();
        let mut result = bulk::create_indexes(&self.url, &rest)
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
