//! Reading executions: one execution, the executions of a configuration,
//! a job's statistics and its drill-down (errors by code, errored work
//! items), and the action history.

use chrono::NaiveDate;
use uuid::Uuid;

use super::{Page, UseCases};
use crate::db::Conn;
use crate::scheduling::domain::drill_down::{ErrorCodeCount, ErroredWorkItem};
use crate::scheduling::domain::event::ActionRecord;
use crate::scheduling::domain::execution::{Execution, ExecutionKey, JobRun, JobState};
use crate::scheduling::domain::JobPosition;
use crate::scheduling::engine::transition;
use crate::scheduling::store::{drill_down, executions};
use crate::scheduling::Error;

/// Which executions of a configuration a listing shows.
#[derive(Debug, Clone)]
pub struct ExecutionFilter {
    /// The client.
    pub client_id: String,
    /// The configuration.
    pub config_id: Uuid,
    /// From this business date on (inclusive).
    pub start_date: Option<NaiveDate>,
    /// Up to this business date (inclusive).
    pub end_date: Option<NaiveDate>,
}

impl UseCases {
    /// The execution of a configuration for a date.
    pub async fn get_execution(&self, key: &ExecutionKey) -> Result<Execution, Error> {
        let mut conn = self.conn().await?;
        load(&mut conn, key).await
    }

    /// A page of executions, newest date first, before `before`.
    pub async fn list_executions(
        &self,
        filter: &ExecutionFilter,
        before: Option<NaiveDate>,
        limit: usize,
    ) -> Result<Page<Execution, NaiveDate>, Error> {
        if let (Some(s), Some(e)) = (filter.start_date, filter.end_date) {
            if e < s {
                return Err(Error::invalid("end_date", "must not be before start_date"));
            }
        }
        let mut conn = self.conn().await?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let range = (filter.start_date, filter.end_date);
        let rows = executions::list(
            &mut conn,
            &filter.client_id,
            filter.config_id,
            range,
            before,
            fetch,
        )
        .await?;
        Ok(Page::from_fetched(rows, limit, |e| e.key.business_date))
    }

    /// The first drill-down level: a job's state and counts.
    pub async fn job_stats(
        &self,
        key: &ExecutionKey,
        position: JobPosition,
    ) -> Result<JobState, Error> {
        let mut conn = self.conn().await?;
        Ok(job_run(&mut conn, key, position).await?.1)
    }

    /// The second level: a job's errors by code, most frequent first.
    pub async fn job_error_codes(
        &self,
        key: &ExecutionKey,
        position: JobPosition,
    ) -> Result<Vec<ErrorCodeCount>, Error> {
        let mut conn = self.conn().await?;
        let (run, _) = job_run(&mut conn, key, position).await?;
        Ok(drill_down::error_counts(&mut conn, run.job_run_id).await?)
    }

    /// The third level: a page of a job's work items in ERROR with
    /// `error_code`, after work item `after`, each with its earlier
    /// attempts.
    pub async fn errored_work_items(
        &self,
        key: &ExecutionKey,
        position: JobPosition,
        error_code: &str,
        after: Option<i32>,
        limit: usize,
    ) -> Result<Page<ErroredWorkItem, i32>, Error> {
        self.drill_down_items(key, position, error_code, false, after, limit)
            .await
    }

    /// [`UseCases::errored_work_items`], and with `include_resolved` also
    /// the items that failed with `error_code` and that a retry has since
    /// fixed (marked resolved), in work item order.
    pub async fn drill_down_items(
        &self,
        key: &ExecutionKey,
        position: JobPosition,
        error_code: &str,
        include_resolved: bool,
        after: Option<i32>,
        limit: usize,
    ) -> Result<Page<ErroredWorkItem, i32>, Error> {
        if error_code.is_empty() {
            return Err(Error::invalid(
                "error_code",
                "required: one of the codes ListJobErrorCodes returns",
            ));
        }
        let mut conn = self.conn().await?;
        let (run, _) = job_run(&mut conn, key, position).await?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let items = drill_down::errored_items(
            &mut conn,
            run.job_run_id,
            error_code,
            include_resolved,
            after.unwrap_or(0),
            fetch,
        )
        .await?;
        Ok(Page::from_fetched(items, limit, |i| {
            i32::try_from(i.work_item_id).unwrap_or(i32::MAX)
        }))
    }

    /// Every action on an execution, oldest first.
    pub async fn execution_actions(&self, key: &ExecutionKey) -> Result<Vec<ActionRecord>, Error> {
        let mut conn = self.conn().await?;
        let execution = load(&mut conn, key).await?;
        Ok(executions::actions(&mut conn, execution.execution_id).await?)
    }
}

/// The execution of `key`, NOT_FOUND when there is none.
async fn load(conn: &mut Conn, key: &ExecutionKey) -> Result<Execution, Error> {
    executions::load(conn, key, false)
        .await?
        .ok_or_else(|| transition::not_found(key))
}

/// The job run at `position` in one query; when there is none, tells
/// NOT_FOUND (no execution) from INVALID_ARGUMENT (no such position).
async fn job_run(
    conn: &mut Conn,
    key: &ExecutionKey,
    position: JobPosition,
) -> Result<(JobRun, JobState), Error> {
    if let Some(found) = executions::job_run_at(conn, key, position).await? {
        return Ok(found);
    }
    let execution = load(conn, key).await?;
    Err(Error::invalid(
        "position",
        format!(
            "no job at position {position}; the execution has jobs 1 to {}",
            execution.state.jobs.len()
        ),
    ))
}
