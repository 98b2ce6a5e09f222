//! allegro-scheduler: the job schedule control plane of the Aria Allegro
//! usage-billing platform.
//!
//! # Layout
//!
//! Two wings, joined only by the job trait ([`scheduling::job`]):
//!
//! - [`scheduling`]: the product. Job schedule configurations, executions,
//!   the engine that plans and processes work items in batches, the
//!   scheduler of automatic runs, the live status stream, and the gRPC API.
//!   It knows jobs only as [`scheduling::job::JobType`] implementations in a
//!   [`scheduling::job::JobRegistry`]; it never names a catalogue type.
//! - [`billing`]: the catalogue. The reference billing ledger (rules and
//!   SQL), the four catalogue jobs, the core Aria client and its stand-in,
//!   and the demo ledger. It implements the job trait and hands the engine a
//!   registry ([`billing::catalogue_registry`]).
//!
//! Shared plumbing: [`db`] (the connection pool and embedded migrations),
//! [`proto`] (generated code), [`clock`], [`settings`], [`embedded_pg`] and
//! [`server`] (assembles both wings into one process, with the
//! [`catch_panic`] safety net), [`tls`], [`observability`] (metrics, logs,
//! traces); [`console`] is the operator console, a web front end on the
//! same use cases as the gRPC API.

pub mod billing;
pub mod catch_panic;
pub mod clock;
pub mod console;
pub mod db;
pub mod embedded_pg;
pub mod load;
pub mod observability;
pub mod proto;
pub mod scheduling;
pub mod server;
pub mod settings;
pub mod tls;
