//! Integration tests: one binary, a real PostgreSQL (a database per test,
//! copied from a migrated template) and the real gRPC server on a real
//! socket.

mod configs;
mod daily_sequence;
mod executions;
mod ledger_jobs;
mod processes;
mod recovery;
mod scheduling;
mod support;
mod test_jobs;
mod watch;
mod windows;
