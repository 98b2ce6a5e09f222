//! The scheduling product: what an operator or a calling service sees.
//!
//! Layers, outside in (an arrow only ever points down):
//! - [`api`]: the gRPC front end. Decode, validate, call a use case, encode;
//!   errors become `tonic::Status` in one place ([`api::status`]).
//! - [`usecases`]: one module per product concept (configurations,
//!   execution actions, execution queries, status stream). Every front end
//!   calls these functions; no rule lives in a handler.
//! - [`engine`]: the runtime that plans work items, claims batches under a
//!   lease and advances executions; [`engine::scheduler`] starts automatic
//!   runs.
//! - [`watch`]: the process-wide event hub and a watcher's session.
//! - [`domain`]: the pure core: configuration rules, the calendar, the
//!   execution state machine, events. No I/O, no diesel.
//! - [`store`]: every SQL statement of this wing, through diesel-async.
//! - [`job`]: the trait the catalogue implements, the one joint with the
//!   billing wing.

pub mod api;
pub mod domain;
pub mod engine;
mod error;
pub mod job;
pub mod store;
pub mod usecases;
pub mod watch;

pub use error::Error;
