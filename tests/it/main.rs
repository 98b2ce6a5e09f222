//! Integration tests: one binary, a real PostgreSQL (a database per test,
//! copied from a migrated template) and the real gRPC server on a real
//! socket.

mod access;
mod configs;
mod core_standin;
mod daily_sequence;
mod executions;
mod fuzz;
mod hardening;
mod ledger_jobs;
mod load;
mod processes;
mod scheduling;
mod support;
mod test_jobs;
mod tls;
mod watch;
