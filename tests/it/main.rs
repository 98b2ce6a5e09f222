//! Integration tests: one binary, a real PostgreSQL (a database per test,
//! copied from a migrated template) and the real gRPC server on a real
//! socket.

mod access;
mod browser;
mod configs;
mod console;
mod core_standin;
mod daily_sequence;
mod executions;
mod ledger_jobs;
mod processes;
mod scheduling;
mod support;
mod test_jobs;
mod tls;
mod watch;
