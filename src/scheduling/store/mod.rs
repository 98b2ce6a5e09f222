//! The scheduling wing's SQL: configurations, executions, work items and
//! batches, status events. Every query goes through diesel-async; functions
//! take a connection so callers choose the transaction.

pub mod actions;
pub mod api_keys;
pub mod configs;
pub mod drill_down;
pub mod events;
pub mod execution_reads;
pub mod executions;
pub mod gauges;
pub mod planning;
pub mod retention;
pub mod schema;
pub mod work;

pub use crate::db::{Conn, Db, DbError};
