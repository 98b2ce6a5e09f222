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

use crate::scheduling::domain::JobPosition;

/// A stored job position read back; out of range means the row is corrupt.
pub(crate) fn stored_position(value: i32) -> Result<JobPosition, DbError> {
    JobPosition::try_from(value).map_err(|e| DbError::Corrupt(format!("job position {value}: {e}")))
}

/// A stored "job acted on, or 0" read back.
pub(crate) fn stored_position_or_none(value: i32) -> Result<Option<JobPosition>, DbError> {
    match value {
        0 => Ok(None),
        n => stored_position(n).map(Some),
    }
}
