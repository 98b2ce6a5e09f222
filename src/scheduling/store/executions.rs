//! Queries on executions, their job runs and their action history.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{executions, job_runs};
use super::{stored_position, DbError};
use crate::scheduling::domain::execution::{
    Counts, Execution, ExecutionKey, ExecutionPhase, ExecutionState, JobPhase, JobRun, JobState,
    Status,
};

/// Job phases in which work may be in flight (the partial index
/// `job_runs_active_idx` covers the same set).
pub(super) const ACTIVE_JOB_PHASES: [JobPhase; 3] = [
    JobPhase::Planning,
    JobPhase::Running,
    JobPhase::PausedByWindow,
];

pub use super::actions::{actions, record_action, ActionRow, NewAction};
pub use super::execution_reads::{
    config_has_running, job_run_at, job_run_identity, job_run_ids_of_config, list,
    unfinished_or_recent,
};

/// Unique constraint: one execution per (configuration, business date).
pub const UNIQUE_DATE: &str = "executions_config_date_key";

/// A row of `executions`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = executions, check_for_backend(diesel::pg::Pg))]
pub(super) struct ExecutionRow {
    /// Identifier.
    pub execution_id: Uuid,
    /// Owning client.
    pub client_id: String,
    /// Configuration it came from.
    pub config_id: Uuid,
    /// The configuration's name at creation.
    pub config_name: String,
    /// Business date.
    pub business_date: NaiveDate,
    /// Status name.
    pub status: String,
    /// Phase name.
    pub phase: String,
    /// Created by the scheduler.
    pub automatic: bool,
    /// Created at.
    pub create_time: DateTime<Utc>,
    /// First started at.
    pub start_time: Option<DateTime<Utc>>,
    /// Last finished at.
    pub end_time: Option<DateTime<Utc>>,
}

/// A row of `job_runs` (without lease bookkeeping).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = job_runs, check_for_backend(diesel::pg::Pg))]
pub(super) struct JobRunRow {
    /// Identifier.
    pub job_run_id: i64,
    /// Its execution.
    pub execution_id: Uuid,
    /// Position from 1.
    pub position: i32,
    /// Job type.
    pub job_type: String,
    /// Manual.
    pub manual: bool,
    /// Manual job released.
    pub released: bool,
    /// Status name.
    pub status: String,
    /// Phase name.
    pub phase: String,
    /// Planned items.
    pub total: i64,
    /// Processed items.
    pub processed: i64,
    /// Errored items.
    pub errored: i64,
    /// Retry round.
    pub round: i32,
    /// The plan failed as a whole.
    pub plan_failed: bool,
    /// Started planning at.
    pub start_time: Option<DateTime<Utc>>,
    /// Settled at.
    pub end_time: Option<DateTime<Utc>>,
}

impl JobRunRow {
    /// The bookkeeping of this job run.
    pub(super) fn job_run(&self) -> Result<JobRun, DbError> {
        Ok(JobRun {
            job_run_id: self.job_run_id,
            position: stored_position(self.position)?,
            round: self.round,
            plan_failed: self.plan_failed,
            start_time: self.start_time,
            end_time: self.end_time,
        })
    }

    /// The state-machine view of this job.
    pub(super) fn state(&self) -> Result<JobState, DbError> {
        Ok(JobState {
            position: stored_position(self.position)?,
            job_type: self.job_type.clone(),
            manual: self.manual,
            released: self.released,
            status: Status::parse(&self.status).ok_or_else(|| bad("job status", &self.status))?,
            phase: JobPhase::parse(&self.phase).ok_or_else(|| bad("job phase", &self.phase))?,
            counts: Counts {
                total: self.total,
                processed: self.processed,
                errored: self.errored,
            },
        })
    }
}

pub(super) fn bad(what: &str, value: &str) -> DbError {
    DbError::Corrupt(format!("{what} {value:?} is unknown"))
}

/// Builds the domain view of an execution row and its job run rows.
pub(super) fn assemble(row: ExecutionRow, jobs: Vec<JobRunRow>) -> Result<Execution, DbError> {
    let state = ExecutionState {
        status: Status::parse(&row.status).ok_or_else(|| bad("status", &row.status))?,
        phase: ExecutionPhase::parse(&row.phase).ok_or_else(|| bad("phase", &row.phase))?,
        jobs: jobs
            .iter()
            .map(JobRunRow::state)
            .collect::<Result<_, _>>()?,
    };
    Ok(Execution {
        execution_id: row.execution_id,
        key: ExecutionKey {
            client_id: row.client_id,
            config_id: row.config_id,
            business_date: row.business_date,
        },
        config_name: row.config_name,
        automatic: row.automatic,
        create_time: row.create_time,
        start_time: row.start_time,
        end_time: row.end_time,
        state,
        job_runs: jobs
            .iter()
            .map(JobRunRow::job_run)
            .collect::<Result<_, _>>()?,
    })
}

/// Inserts an execution and its snapshotted jobs. A duplicate date violates
/// [`UNIQUE_DATE`].
pub async fn insert(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    config_id: Uuid,
    config_name: &str,
    business_date: NaiveDate,
    automatic: bool,
    jobs: &[JobState],
) -> Result<Uuid, DbError> {
    let execution_id = Uuid::now_v7();
    diesel::insert_into(executions::table)
        .values((
            executions::execution_id.eq(execution_id),
            executions::client_id.eq(client_id),
            executions::config_id.eq(config_id),
            executions::config_name.eq(config_name),
            executions::business_date.eq(business_date),
            executions::automatic.eq(automatic),
        ))
        .execute(conn)
        .await?;
    insert_jobs(conn, execution_id, jobs).await?;
    Ok(execution_id)
}

async fn insert_jobs(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
    jobs: &[JobState],
) -> Result<(), DbError> {
    let rows: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                job_runs::execution_id.eq(execution_id),
                job_runs::position.eq(i32::from(j.position)),
                job_runs::job_type.eq(j.job_type.clone()),
                job_runs::manual.eq(j.manual),
            )
        })
        .collect();
    diesel::insert_into(job_runs::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the job snapshot of a fresh execution (Recreate).
pub async fn replace_jobs(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
    jobs: &[JobState],
) -> Result<(), DbError> {
    diesel::delete(job_runs::table.filter(job_runs::execution_id.eq(execution_id)))
        .execute(conn)
        .await?;
    insert_jobs(conn, execution_id, jobs).await
}

/// Loads the execution of (client, config, date), locking it and its job
/// runs `FOR UPDATE` when `lock`. A read (`!lock`) is one statement: the
/// execution row joined with its job runs.
pub async fn load(
    conn: &mut AsyncPgConnection,
    key: &ExecutionKey,
    lock: bool,
) -> Result<Option<Execution>, DbError> {
    if !lock {
        return read(conn, key).await;
    }
    let id: Option<Uuid> = executions::table
        .filter(executions::client_id.eq(&key.client_id))
        .filter(executions::config_id.eq(key.config_id))
        .filter(executions::business_date.eq(key.business_date))
        .select(executions::execution_id)
        .first(conn)
        .await
        .optional()?;
    match id {
        Some(id) => load_by_id(conn, id, lock).await,
        None => Ok(None),
    }
}

/// The execution of `key` and its job runs in one statement and one round
/// trip (a prepared join, no transaction).
async fn read(
    conn: &mut AsyncPgConnection,
    key: &ExecutionKey,
) -> Result<Option<Execution>, DbError> {
    let rows: Vec<(ExecutionRow, Option<JobRunRow>)> = executions::table
        .left_join(job_runs::table)
        .filter(executions::client_id.eq(&key.client_id))
        .filter(executions::config_id.eq(key.config_id))
        .filter(executions::business_date.eq(key.business_date))
        .order(job_runs::position)
        .select((ExecutionRow::as_select(), Option::<JobRunRow>::as_select()))
        .load(conn)
        .await?;
    let mut rows = rows.into_iter();
    let Some((row, first)) = rows.next() else {
        return Ok(None);
    };
    let jobs = first
        .into_iter()
        .chain(rows.filter_map(|(_, job)| job))
        .collect();
    assemble(row, jobs).map(Some)
}

/// Loads an execution by id, locking it and its job runs when `lock`.
pub async fn load_by_id(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
    lock: bool,
) -> Result<Option<Execution>, DbError> {
    let query = executions::table
        .filter(executions::execution_id.eq(execution_id))
        .select(ExecutionRow::as_select());
    let row = if lock {
        query.for_update().first(conn).await.optional()
    } else {
        query.first(conn).await.optional()
    }?;
    match row {
        Some(row) => Ok(Some(with_jobs(conn, row, lock).await?)),
        None => Ok(None),
    }
}

pub(super) async fn with_jobs(
    conn: &mut AsyncPgConnection,
    row: ExecutionRow,
    lock: bool,
) -> Result<Execution, DbError> {
    let query = job_runs::table
        .filter(job_runs::execution_id.eq(row.execution_id))
        .order(job_runs::position)
        .select(JobRunRow::as_select());
    let jobs = if lock {
        query.for_update().load(conn).await
    } else {
        query.load(conn).await
    }?;
    assemble(row, jobs)
}

/// Writes the difference between `loaded.state` and `after`: the execution's
/// status and phase (with start and end times) and every changed job run.
pub async fn save(
    conn: &mut AsyncPgConnection,
    loaded: &Execution,
    after: &ExecutionState,
) -> Result<(), DbError> {
    let before = &loaded.state;
    let id = loaded.execution_id;
    if before.status != after.status || before.phase != after.phase {
        let fresh = after.phase == ExecutionPhase::NotStarted;
        let finished = after.status != Status::Pending;
        diesel::update(executions::table.filter(executions::execution_id.eq(id)))
            .set((
                executions::status.eq(after.status.as_str()),
                executions::phase.eq(after.phase.as_str()),
                executions::start_time.eq(if fresh {
                    None
                } else {
                    Some(loaded.start_time.unwrap_or_else(Utc::now))
                }),
                executions::end_time.eq(if finished { Some(Utc::now()) } else { None }),
            ))
            .execute(conn)
            .await?;
    }
    for (b, (a, row)) in before
        .jobs
        .iter()
        .zip(after.jobs.iter().zip(loaded.job_runs.iter()))
    {
        if b == a {
            continue;
        }
        let start_time = match a.phase {
            JobPhase::Waiting | JobPhase::AwaitingTrigger => None,
            _ => Some(row.start_time.unwrap_or_else(Utc::now)),
        };
        let end_time = (a.phase == JobPhase::Done).then(Utc::now);
        if b.phase != a.phase {
            // A new phase starts without a planner: a job entering PLANNING
            // is claimable at once.
            diesel::update(job_runs::table.filter(job_runs::job_run_id.eq(row.job_run_id)))
                .set((
                    job_runs::plan_owner.eq(None::<Uuid>),
                    job_runs::plan_lease_until.eq(None::<DateTime<Utc>>),
                ))
                .execute(conn)
                .await?;
        }
        diesel::update(job_runs::table.filter(job_runs::job_run_id.eq(row.job_run_id)))
            .set((
                job_runs::status.eq(a.status.as_str()),
                job_runs::phase.eq(a.phase.as_str()),
                job_runs::manual.eq(a.manual),
                job_runs::released.eq(a.released),
                job_runs::total.eq(a.counts.total),
                job_runs::processed.eq(a.counts.processed),
                job_runs::errored.eq(a.counts.errored),
                job_runs::start_time.eq(start_time),
                job_runs::end_time.eq(end_time),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Records whether an operator lets this execution run inside its
/// configuration's exception window (the batch claim reads it).
pub async fn set_window_override(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
    window_override: bool,
) -> Result<(), DbError> {
    diesel::update(executions::table.filter(executions::execution_id.eq(execution_id)))
        .set(executions::window_override.eq(window_override))
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether an operator lets this execution run inside its configuration's
/// exception window.
pub async fn window_override(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
) -> Result<bool, DbError> {
    Ok(executions::table
        .filter(executions::execution_id.eq(execution_id))
        .select(executions::window_override)
        .first(conn)
        .await
        .optional()?
        .unwrap_or(false))
}
