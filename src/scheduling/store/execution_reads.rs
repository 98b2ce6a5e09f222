//! Reads of executions beside the transitions: the listing of a
//! configuration, a watcher's opening view, the statistics' job run, a
//! worker's job run identity, and what deleting a configuration must know.

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::executions::{assemble, with_jobs, ExecutionRow, JobRunRow, ACTIVE_JOB_PHASES};
use super::schema::{executions, job_runs};
use super::DbError;
use crate::scheduling::domain::execution::{
    Execution, ExecutionKey, ExecutionPhase, JobPhase, JobRun, JobState, Status,
};
use crate::scheduling::domain::JobPosition;

/// Up to `limit` executions of a configuration in a date range, newest date
/// first, before `before` when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    config_id: Uuid,
    range: (Option<NaiveDate>, Option<NaiveDate>),
    before: Option<NaiveDate>,
    limit: i64,
) -> Result<Vec<Execution>, DbError> {
    let mut query = executions::table
        .filter(executions::client_id.eq(client_id))
        .filter(executions::config_id.eq(config_id))
        .order(executions::business_date.desc())
        .limit(limit)
        .select(ExecutionRow::as_select())
        .into_boxed();
    if let Some(start) = range.0 {
        query = query.filter(executions::business_date.ge(start));
    }
    if let Some(end) = range.1 {
        query = query.filter(executions::business_date.le(end));
    }
    if let Some(before) = before {
        query = query.filter(executions::business_date.lt(before));
    }
    let rows = query.load(conn).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.execution_id).collect();
    let mut jobs = job_runs::table
        .filter(job_runs::execution_id.eq_any(&ids))
        .order((job_runs::execution_id, job_runs::position))
        .select(JobRunRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|row| {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut jobs)
                .into_iter()
                .partition(|j| j.execution_id == row.execution_id);
            jobs = rest;
            assemble(row, mine)
        })
        .collect()
}

/// Whether any execution of the configuration has work in flight.
pub async fn config_has_running(
    conn: &mut AsyncPgConnection,
    config_id: Uuid,
) -> Result<bool, DbError> {
    let n: i64 = executions::table
        .inner_join(job_runs::table)
        .filter(executions::config_id.eq(config_id))
        .filter(job_runs::phase.eq_any(ACTIVE_JOB_PHASES.map(JobPhase::as_str)))
        .count()
        .get_result(conn)
        .await?;
    let cancelling: i64 = executions::table
        .filter(executions::config_id.eq(config_id))
        .filter(executions::phase.eq(ExecutionPhase::Cancelling.as_str()))
        .count()
        .get_result(conn)
        .await?;
    Ok(n + cancelling > 0)
}

/// The job run ids of every execution of a configuration.
pub async fn job_run_ids_of_config(
    conn: &mut AsyncPgConnection,
    config_id: Uuid,
) -> Result<Vec<i64>, DbError> {
    Ok(job_runs::table
        .inner_join(executions::table)
        .filter(executions::config_id.eq(config_id))
        .select(job_runs::job_run_id)
        .load(conn)
        .await?)
}

/// The executions a watcher's opening view shows: those in scope that are
/// unfinished or whose business date is on or after `since`.
pub async fn unfinished_or_recent(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    config_id: Option<Uuid>,
    business_date: Option<NaiveDate>,
    since: NaiveDate,
) -> Result<Vec<Execution>, DbError> {
    let mut query = executions::table
        .filter(executions::client_id.eq(client_id))
        .filter(
            executions::status
                .eq(Status::Pending.as_str())
                .or(executions::business_date.ge(since)),
        )
        .order((executions::business_date.desc(), executions::config_id))
        .limit(1000)
        .select(ExecutionRow::as_select())
        .into_boxed();
    if let Some(config_id) = config_id {
        query = query.filter(executions::config_id.eq(config_id));
    }
    if let Some(date) = business_date {
        query = query.filter(executions::business_date.eq(date));
    }
    let rows = query.load(conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(with_jobs(conn, row, false).await?);
    }
    Ok(out)
}

/// The job run at `position` of the execution of (client, config, date), in
/// one query: what the statistics RPCs need.
pub async fn job_run_at(
    conn: &mut AsyncPgConnection,
    key: &ExecutionKey,
    position: JobPosition,
) -> Result<Option<(JobRun, JobState)>, DbError> {
    let row: Option<JobRunRow> = job_runs::table
        .inner_join(executions::table)
        .filter(executions::client_id.eq(&key.client_id))
        .filter(executions::config_id.eq(key.config_id))
        .filter(executions::business_date.eq(key.business_date))
        .filter(job_runs::position.eq(i32::from(position)))
        .select(JobRunRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(|r| Ok((r.job_run()?, r.state()?))).transpose()
}

/// A job run's position, job type and event target (its execution's client,
/// configuration and date); `None` when the run no longer exists.
pub async fn job_run_identity(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
) -> Result<
    Option<(
        JobPosition,
        String,
        crate::scheduling::store::events::EventTarget,
    )>,
    DbError,
> {
    let row: Option<(Uuid, i32, String, String, Uuid, NaiveDate)> = job_runs::table
        .inner_join(executions::table)
        .filter(job_runs::job_run_id.eq(job_run_id))
        .select((
            job_runs::execution_id,
            job_runs::position,
            job_runs::job_type,
            executions::client_id,
            executions::config_id,
            executions::business_date,
        ))
        .first(conn)
        .await
        .optional()?;
    row.map(
        |(execution_id, position, job_type, client_id, config_id, business_date)| {
            Ok((
                super::stored_position(position)?,
                job_type,
                crate::scheduling::store::events::EventTarget {
                    client_id,
                    execution_id,
                    config_id,
                    business_date,
                },
            ))
        },
    )
    .transpose()
}
