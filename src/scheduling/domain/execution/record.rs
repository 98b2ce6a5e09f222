//! An execution as the product shows it: which schedule and date it is, when
//! it ran, its state, and the bookkeeping of each job run.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{ExecutionState, JobState};
use crate::scheduling::domain::position::JobPosition;

/// Names one execution: a client's configuration materialised for a
/// business date. Every execution request carries these three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionKey {
    /// The tenant.
    pub client_id: String,
    /// The job schedule configuration.
    pub config_id: Uuid,
    /// The business date.
    pub business_date: NaiveDate,
}

/// One execution with its jobs, as loaded for reading or for a transition.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Identifier.
    pub execution_id: Uuid,
    /// Client, configuration and date.
    pub key: ExecutionKey,
    /// The configuration's name when the execution was created.
    pub config_name: String,
    /// Created by the scheduler rather than by a person.
    pub automatic: bool,
    /// Created at.
    pub create_time: DateTime<Utc>,
    /// First started at.
    pub start_time: Option<DateTime<Utc>>,
    /// Last finished at.
    pub end_time: Option<DateTime<Utc>>,
    /// Status, phase and the state of every job.
    pub state: ExecutionState,
    /// The bookkeeping of each job run, in position order (as `state.jobs`).
    pub job_runs: Vec<JobRun>,
}

/// The bookkeeping of one job of an execution (its state is the
/// [`JobState`] at the same position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// Identifier of the job run (work items and batches hang off it).
    pub job_run_id: i64,
    /// Position from 1.
    pub position: JobPosition,
    /// Retry round: the attempt number its items are at.
    pub round: i32,
    /// The plan failed as a whole (Retry plans again).
    pub plan_failed: bool,
    /// Started planning at.
    pub start_time: Option<DateTime<Utc>>,
    /// Settled at.
    pub end_time: Option<DateTime<Utc>>,
}

impl Execution {
    /// The job run at `position`.
    pub fn job_run(&self, position: JobPosition) -> Option<&JobRun> {
        self.job_runs.iter().find(|j| j.position == position)
    }

    /// The state of the job at `position`.
    pub fn job(&self, position: JobPosition) -> Option<&JobState> {
        self.state.jobs.iter().find(|j| j.position == position)
    }

    /// The ids of every job run (what a reset or a delete discards).
    pub fn job_run_ids(&self) -> Vec<i64> {
        self.job_runs.iter().map(|j| j.job_run_id).collect()
    }
}
