//! Integration tests: one binary, a real PostgreSQL (a database per test,
//! copied from a migrated template) and the real gRPC server on a real
//! socket.

// Tests and benchmarks may unwrap: a failure there is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod access;
mod browser;
mod config_cache;
mod configs;
mod console;
mod core_standin;
mod daily_sequence;
mod error_details;
mod executions;
mod fixture;
mod fuzz;
mod hardening;
mod ledger_jobs;
mod load;
mod observability;
mod operator;
mod otlp;
mod processes;
mod readme;
mod recovery;
mod retention;
mod scheduling;
mod service_process;
mod support;
mod test_jobs;
mod tls;
mod watch;
mod windows;
