//! The background task that removes executions past their client's
//! retention (`--retention-days` by default, `client_retention` per client),
//! with everything under them, so a service running a million items a day
//! does not grow without end. Each statement touches a bounded number of
//! rows; running executions are never touched (see
//! [`crate::scheduling::store::retention`]).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::db::DbError;
use crate::scheduling::store::retention;

/// How retention runs.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    /// Days an execution is kept after its business date, for clients
    /// without their own retention.
    pub default_days: u32,
    /// Time between passes.
    pub interval: Duration,
    /// Rows one statement deletes at most (executions: a tenth of it).
    pub chunk_rows: u32,
}

/// What one pass removed and how long it took.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetentionReport {
    /// Executions removed.
    pub executions: usize,
    /// Job runs whose bulk was fully removed.
    pub job_runs: usize,
    /// Work items, batches, errors and error counters removed.
    pub rows: usize,
    /// Statements run.
    pub statements: usize,
    /// The longest statement (lock time is bounded by it).
    pub longest_statement: Duration,
    /// The pass's wall time.
    pub elapsed: Duration,
}

impl Engine {
    /// One retention pass as of the engine clock's date: removes expired
    /// executions, then their bulk, until nothing expired is left or
    /// `shutdown` is cancelled.
    pub async fn retention_pass(
        &self,
        settings: RetentionSettings,
        shutdown: &CancellationToken,
    ) -> Result<RetentionReport, DbError> {
        let started = Instant::now();
        let today = self.clock().now().date_naive();
        let days = settings.default_days.clamp(1, i32::MAX as u32) as i32;
        let chunk = i64::from(settings.chunk_rows.max(10));
        let mut report = RetentionReport::default();
        let mut conn = self.db().conn().await?;
        let timed = |report: &mut RetentionReport, t: Instant| {
            report.statements += 1;
            report.longest_statement = report.longest_statement.max(t.elapsed());
        };
        while !shutdown.is_cancelled() {
            let t = Instant::now();
            let gone = retention::expire_executions(&mut conn, today, days, chunk / 10).await?;
            timed(&mut report, t);
            report.executions += gone.len();
            if gone.is_empty() {
                break;
            }
        }
        while !shutdown.is_cancelled() {
            let t = Instant::now();
            let Some(purged) = retention::purge_chunk(&mut conn, chunk).await? else {
                break;
            };
            timed(&mut report, t);
            report.rows += purged.rows;
            report.job_runs += purged.job_runs;
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Runs [`Engine::retention_pass`] at start and then every
    /// `settings.interval` until `shutdown` is cancelled. Several processes
    /// may run it: they skip each other's locked rows.
    pub async fn run_retention(self, settings: RetentionSettings, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.retention_pass(settings, &shutdown).await {
                Ok(r) if r.executions > 0 || r.rows > 0 => tracing::info!(
                    executions = r.executions,
                    job_runs = r.job_runs,
                    rows = r.rows,
                    statements = r.statements,
                    longest_statement_ms = r.longest_statement.as_millis() as u64,
                    elapsed_ms = r.elapsed.as_millis() as u64,
                    "retention removed expired executions"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(settings.interval) => {}
            }
        }
    }
}
