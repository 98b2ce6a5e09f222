//! The billing catalogue: the reference ledger, the four catalogue jobs,
//! core Aria (client and stand-in) and the demo ledger. It reaches the
//! scheduling wing only through [`crate::scheduling::job`]: its jobs
//! implement `JobType` and [`catalogue_registry`] hands them to the engine.

pub mod core_aria;
pub mod demo;
pub mod jobs;
pub mod ledger;

pub use jobs::catalogue_registry;
