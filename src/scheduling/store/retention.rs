//! Retention of executions: removing executions older than their client's
//! retention, with everything under them, in statements that each touch a
//! bounded number of rows.
//!
//! Removal has two steps. An expired execution is deleted in one short
//! transaction (its job runs and actions go with it by cascade) and its job
//! runs are written to `retention_backlog`. The bulk under those job runs —
//! work items, batches, errors, error counters, which carry no foreign key —
//! is then deleted a chunk at a time, each chunk its own transaction, so no
//! statement holds many locks or runs for long, and nothing that is running
//! is ever locked.

use std::sync::LazyLock;

use chrono::NaiveDate;
use diesel::sql_types::{BigInt, Date, Integer, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::DbError;
use crate::scheduling::domain::execution::{ExecutionPhase, JobPhase};

/// An execution retention removed.
#[derive(Debug, Clone, QueryableByName)]
pub struct ExpiredExecution {
    /// The execution.
    #[diesel(sql_type = SqlUuid)]
    pub execution_id: Uuid,
    /// Its client.
    #[diesel(sql_type = Text)]
    pub client_id: String,
    /// Its business date.
    #[diesel(sql_type = Date)]
    pub business_date: NaiveDate,
}

/// Phases during which an execution is running: retention never touches it
/// then, whatever its age.
const RUNNING_EXECUTION: [ExecutionPhase; 3] = [
    ExecutionPhase::Running,
    ExecutionPhase::Cancelling,
    ExecutionPhase::PausedByWindow,
];

/// Phases of a job run that is being worked on.
const RUNNING_JOB: [JobPhase; 3] = [
    JobPhase::Planning,
    JobPhase::Running,
    JobPhase::PausedByWindow,
];

fn quoted<T: Copy>(names: &[T], name: impl Fn(T) -> &'static str) -> String {
    names
        .iter()
        .map(|p| format!("'{}'", name(*p)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deletes up to `$3` expired executions that are not running, oldest
/// first, and lists their job runs in the backlog, in one statement.
/// `$1` is today's date, `$2` the default retention in days. The date
/// prefilter (the shortest retention of any client) lets the business-date
/// index find the candidates; rows another transaction holds are skipped.
static EXPIRE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH doomed AS ( \
             SELECT e.execution_id FROM executions e \
             LEFT JOIN client_retention r ON r.client_id = e.client_id \
             WHERE e.business_date < $1::date - (SELECT LEAST($2, COALESCE(min(retention_days), $2)) \
                                                 FROM client_retention) \
               AND e.business_date < $1::date - COALESCE(r.retention_days, $2) \
               AND e.phase NOT IN ({running}) \
               AND NOT EXISTS (SELECT 1 FROM job_runs j \
                               WHERE j.execution_id = e.execution_id AND j.phase IN ({running_job})) \
             ORDER BY e.business_date LIMIT $3 \
             FOR UPDATE OF e SKIP LOCKED), \
         listed AS ( \
             INSERT INTO retention_backlog (job_run_id) \
             SELECT j.job_run_id FROM job_runs j JOIN doomed d ON d.execution_id = j.execution_id \
             ON CONFLICT DO NOTHING) \
         DELETE FROM executions e USING doomed d WHERE e.execution_id = d.execution_id \
         RETURNING e.execution_id, e.client_id, e.business_date",
        running = quoted(&RUNNING_EXECUTION, ExecutionPhase::as_str),
        running_job = quoted(&RUNNING_JOB, JobPhase::as_str),
    )
});

/// Removes up to `limit` executions whose business date is older than
/// their client's retention (or `default_days`) on `today`, with their job
/// runs and actions; their job runs' items wait in the backlog for
/// [`purge_chunk`].
pub async fn expire_executions(
    conn: &mut AsyncPgConnection,
    today: NaiveDate,
    default_days: i32,
    limit: i64,
) -> Result<Vec<ExpiredExecution>, DbError> {
    Ok(diesel::sql_query(EXPIRE_SQL.as_str())
        .bind::<Date, _>(today)
        .bind::<Integer, _>(default_days)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?)
}

#[derive(QueryableByName)]
struct JobRunId {
    #[diesel(sql_type = BigInt)]
    job_run_id: i64,
}

/// The tables holding a job run's bulk, keyed by `job_run_id`.
const BULK_TABLES: [&str; 4] = [
    "work_items",
    "batches",
    "work_item_errors",
    "job_run_error_counts",
];

/// What one [`purge_chunk`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Rows deleted from the bulk tables.
    pub rows: usize,
    /// Job runs fully removed (they left the backlog).
    pub job_runs: usize,
}

/// Deletes at most `chunk` rows of each bulk table for one job run of the
/// backlog, each statement on its own; when nothing of that job run is
/// left, it leaves the backlog. `None` when the backlog is empty.
pub async fn purge_chunk(
    conn: &mut AsyncPgConnection,
    chunk: i64,
) -> Result<Option<Purged>, DbError> {
    let next: Vec<JobRunId> =
        diesel::sql_query("SELECT job_run_id FROM retention_backlog ORDER BY job_run_id LIMIT 1")
            .load(conn)
            .await?;
    let Some(JobRunId { job_run_id }) = next.into_iter().next() else {
        return Ok(None);
    };
    let mut purged = Purged::default();
    let mut left = false;
    for table in BULK_TABLES {
        // Row ids first, then a TID scan: each statement locks at most
        // `chunk` rows of one job run that nothing reads any more.
        let n = diesel::sql_query(format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY( \
                 SELECT ctid FROM {table} WHERE job_run_id = $1 LIMIT $2))"
        ))
        .bind::<BigInt, _>(job_run_id)
        .bind::<BigInt, _>(chunk)
        .execute(conn)
        .await?;
        purged.rows += n;
        left |= n as i64 == chunk;
    }
    if !left {
        purged.job_runs = diesel::sql_query("DELETE FROM retention_backlog WHERE job_run_id = $1")
            .bind::<BigInt, _>(job_run_id)
            .execute(conn)
            .await?;
    }
    Ok(Some(purged))
}

/// Sets (or, with `None`, clears) a client's own retention in days.
pub async fn set_client_retention(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    days: Option<i32>,
) -> Result<(), DbError> {
    match days {
        Some(days) => {
            diesel::sql_query(
                "INSERT INTO client_retention (client_id, retention_days) VALUES ($1, $2) \
                 ON CONFLICT (client_id) DO UPDATE SET retention_days = EXCLUDED.retention_days",
            )
            .bind::<Text, _>(client_id)
            .bind::<Integer, _>(days)
            .execute(conn)
            .await?
        }
        None => {
            diesel::sql_query("DELETE FROM client_retention WHERE client_id = $1")
                .bind::<Text, _>(client_id)
                .execute(conn)
                .await?
        }
    };
    Ok(())
}
