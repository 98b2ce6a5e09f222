//! allegro-scheduler: the job schedule control plane of the Aria Allegro
//! usage-billing platform.
//!
//! Layers, outside in:
//! - [`api`]: gRPC service implementations. Decode, validate, call the domain
//!   or the engine, encode. Errors become `tonic::Status` in one place
//!   ([`api::status`]).
//! - [`domain`]: the pure core: configuration rules, the execution state
//!   machine, the error every layer above the store speaks.
//! - [`engine`]: the runtime that plans work items, claims batches and
//!   advances executions.
//! - [`jobs`]: the job types, one module each, behind one trait.
//! - [`store`]: every SQL statement, through diesel-async.
//! - [`core_aria`]: the client of core Aria the sync jobs use, and the
//!   stand-in core service for development and tests.
//! - [`demo`]: a realistic reference ledger for demonstrations.

pub mod api;
pub mod clock;
pub mod core_aria;
pub mod demo;
pub mod domain;
pub mod embedded_pg;
pub mod engine;
pub mod jobs;
pub mod proto;
pub mod server;
pub mod settings;
pub mod store;
pub mod watch;
