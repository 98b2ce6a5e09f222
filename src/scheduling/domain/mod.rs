//! The pure core of the scheduler: rules and state, no I/O.

pub mod access;
pub mod available_actions;
pub mod calendar;
pub mod config;
pub mod drill_down;
pub mod error;
pub mod event;
pub mod execution;
pub mod limits;
pub mod position;
pub mod recurrence;
pub mod time_of_day;
pub mod work_item;

pub use error::{Error, FieldViolation};
pub use position::JobPosition;
