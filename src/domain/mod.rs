//! The pure core of the scheduler: rules and state, no I/O.

pub mod billing;
pub mod config;
pub mod error;
pub mod time_of_day;

pub use error::{Error, FieldViolation};
