//! The use cases of the scheduling product: every read and action a front
//! end offers, in one place. The gRPC API calls these functions, and so
//! would any other front end; no rule lives in a front end.
//!
//! One module per product concept:
//! - [`configurations`]: create, read, list, update (field mask, etag, the
//!   unpause rule), delete, upcoming runs;
//! - [`execution_actions`] and [`execution_recovery`]: Create, Recreate,
//!   Process, Trigger job; Retry job, Reprocess, Reset;
//! - [`execution_queries`]: an execution, the list, job statistics and the
//!   drill-down, the action history;
//! - [`status_stream`]: a watcher's live stream;
//! - [`access`]: API keys (issue, list, revoke) and the key directory the
//!   authentication layer reads.
//!
//! Inputs arrive parsed (ids, dates, drafts): a front end turns its request
//! into these types and its errors come back as [`Error`].

pub mod access;
pub mod configurations;
pub mod execution_actions;
pub mod execution_queries;
pub mod execution_recovery;
pub mod status_stream;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::{Conn, Db, DbError};
use crate::scheduling::domain::config::JobScheduleConfig;
use crate::scheduling::engine::Engine;
use crate::scheduling::store::configs;
use crate::scheduling::watch::EventHub;
use crate::scheduling::Error;

pub use crate::scheduling::domain::execution::ExecutionKey;
pub use crate::scheduling::engine::transition::Actor;
pub use execution_actions::ActionOutcome;

/// The handle every front end holds: the engine (database, job registry,
/// clock), the process's event hub, and the shutdown signal that ends
/// status streams. Cheap to clone.
#[derive(Clone)]
pub struct UseCases {
    engine: Engine,
    /// The pool requests read and write through; the engine's workers
    /// have their own.
    db: Db,
    hub: EventHub,
    shutdown: CancellationToken,
    /// Places for requests on the database while the engine processes.
    gate: Option<ReadGate>,
}

/// While the engine's workers are processing, requests take the database
/// through a few places only (half the cores by default), and wait for one at no
/// cost: on a small machine fifty readers at once would otherwise take the
/// cores the batches settle on, and a billing day is what the service is
/// for. When the engine is idle, requests use the whole request pool.
#[derive(Clone)]
struct ReadGate {
    places: Arc<Semaphore>,
    wait: Duration,
}

/// A request's connection; while the engine processes it also holds a
/// place at the `ReadGate`, given back with the connection.
pub struct RequestConn {
    conn: Conn,
    _place: Option<OwnedSemaphorePermit>,
}

impl Deref for RequestConn {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for RequestConn {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// One page of a listing and the key to continue after it (`None` on the
/// last page). Front ends turn the key into their own page token.
#[derive(Debug, Clone)]
pub struct Page<T, K> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The key of the last item, when more follow.
    pub next: Option<K>,
}

impl<T, K> Page<T, K> {
    /// A page from up to `limit + 1` fetched items: the extra one only says
    /// that more follow.
    fn from_fetched(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> K) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more { items.last().map(key) } else { None };
        Self { items, next }
    }
}

impl UseCases {
    /// The use cases on `engine`, with `hub` feeding status streams until
    /// `shutdown`.
    pub fn new(engine: Engine, hub: EventHub, shutdown: CancellationToken) -> Self {
        Self {
            db: engine.db().clone(),
            engine,
            hub,
            shutdown,
            gate: None,
        }
    }

    /// The same use cases with requests on their own pool `db`, apart from
    /// the engine's connections.
    pub fn with_request_pool(mut self, db: Db) -> Self {
        self.db = db;
        self
    }

    /// The same use cases with at most `places` requests on the database
    /// at once while the engine is processing (0: no limit); a request
    /// waits up to `wait` for a place, then answers UNAVAILABLE like an
    /// exhausted pool.
    pub fn with_read_gate(mut self, places: usize, wait: Duration) -> Self {
        self.gate = (places > 0).then(|| ReadGate {
            places: Arc::new(Semaphore::new(places)),
            wait,
        });
        self
    }

    /// The pool requests use.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The engine underneath (its registry answers the job catalogue).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    async fn conn(&self) -> Result<RequestConn, Error> {
        let place = match &self.gate {
            Some(gate) if self.engine.is_processing() => Some(
                tokio::time::timeout(gate.wait, gate.places.clone().acquire_owned())
                    .await
                    .map_err(|_| {
                        DbError::Pool("no place for a request while the engine processes".into())
                    })?
                    .map_err(|_| DbError::Pool("the request gate is closed".into()))?,
            ),
            _ => None,
        };
        Ok(RequestConn {
            conn: self.db.conn().await?,
            _place: place,
        })
    }
}

/// The configuration `config_id` of `client`, NOT_FOUND when it does not
/// exist.
async fn load_config(
    conn: &mut AsyncPgConnection,
    client: &str,
    config_id: Uuid,
) -> Result<JobScheduleConfig, Error> {
    configs::load(conn, client, config_id)
        .await?
        .ok_or_else(|| Error::not_found("job schedule config", config_id.to_string()))
}
