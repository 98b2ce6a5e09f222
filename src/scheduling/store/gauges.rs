//! Counts an operator watches from the outside (the metrics endpoint reads
//! them when scraped): executions by status and phase, batches waiting for
//! a worker, batches whose worker stopped. Each is one aggregate statement.

use std::sync::LazyLock;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use crate::scheduling::domain::execution::JobPhase;
use crate::scheduling::domain::work_item::BatchState;

/// How many executions are in one status and phase.
#[derive(Debug, Clone, QueryableByName)]
pub struct ExecutionCount {
    /// The status's stored name.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// The phase's stored name.
    #[diesel(sql_type = Text)]
    pub phase: String,
    /// How many.
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// Executions grouped by status and phase.
pub async fn executions_by_phase(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<ExecutionCount>, DbError> {
    Ok(diesel::sql_query(
        "SELECT status, phase, count(*) AS count FROM executions GROUP BY status, phase",
    )
    .load(conn)
    .await?)
}

/// Batches waiting for a worker, and claimed batches whose lease expired.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct BatchBacklog {
    /// Ready batches of running jobs.
    #[diesel(sql_type = BigInt)]
    pub ready: i64,
    /// Claimed batches past their lease.
    #[diesel(sql_type = BigInt)]
    pub expired: i64,
}

/// The batch backlog of running jobs.
pub async fn batch_backlog(conn: &mut AsyncPgConnection) -> Result<BatchBacklog, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT count(*) FILTER (WHERE b.state = '{ready}') AS ready, \
                    count(*) FILTER (WHERE b.state = '{claimed}' AND b.lease_until < now()) \
                        AS expired \
             FROM batches b JOIN job_runs jr ON jr.job_run_id = b.job_run_id \
             WHERE b.state <> '{done}' AND jr.phase = '{running}'",
            ready = BatchState::Ready.as_str(),
            claimed = BatchState::Claimed.as_str(),
            done = BatchState::Done.as_str(),
            running = JobPhase::Running.as_str(),
        )
    });
    let row: BatchBacklog = diesel::sql_query(SQL.as_str()).get_result(conn).await?;
    Ok(row)
}
