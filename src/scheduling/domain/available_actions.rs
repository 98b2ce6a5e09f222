//! Which of the product's actions an execution and each of its jobs allow
//! now: the buttons of the schedule screen (Create, Recreate, Process,
//! Reprocess, Reset) and of a job's menu (Process Action, Retry, Stats).
//!
//! The rules live here once. The state machine's own actions
//! ([`ExecutionState::start`], [`ExecutionState::trigger`],
//! [`ExecutionState::retry`]) refuse through the same predicates
//! ([`may_start`], [`check_trigger`], [`check_retry`]), and the use cases
//! refuse Recreate and Reset through [`ExecutionState::is_fresh`] and
//! [`ExecutionState::is_running`], so a front end that shows what
//! [`available_actions`] allows never offers an action the service then
//! refuses, and never hides one it would accept.

use super::error::Error;
use super::execution::{ExecutionPhase, ExecutionState, JobState, Status};
use super::position::JobPosition;

/// The actions on an execution as a whole, for one business date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecutionActions {
    /// Create: only while no execution exists for the date.
    pub create: bool,
    /// Recreate: only a PENDING execution that has never started.
    pub recreate: bool,
    /// Process: until the execution has started (none yet, not started,
    /// or missed).
    pub process: bool,
    /// Reprocess: an errored job exists and can be retried now.
    pub reprocess: bool,
    /// Reset: whenever an execution exists.
    pub reset: bool,
    /// A Reset must first stop the work in flight (`cancel_in_flight`):
    /// the execution is running.
    pub reset_stops_work: bool,
}

/// The actions of one job's menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobActions {
    /// The job's position (from 1).
    pub position: JobPosition,
    /// Process Action (TriggerJob): not for COMPLETED or ERROR jobs.
    pub process_action: bool,
    /// Retry: ERROR jobs only, and not while the execution is being reset.
    pub retry: bool,
    /// Stats: always (a read).
    pub stats: bool,
}

/// What an execution (or its absence) allows now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AvailableActions {
    /// The execution's buttons.
    pub execution: ExecutionActions,
    /// Each job's menu, in job order (empty without an execution).
    pub jobs: Vec<JobActions>,
}

impl AvailableActions {
    /// The menu of the job at `position`, if there is one.
    pub fn job(&self, position: JobPosition) -> Option<JobActions> {
        self.jobs.iter().find(|j| j.position == position).copied()
    }

    /// The menu of the job at `position`: no action (but Stats) when the
    /// execution has no such job.
    pub fn job_or_none(&self, position: JobPosition) -> JobActions {
        self.job(position).unwrap_or(JobActions {
            position,
            process_action: false,
            retry: false,
            stats: true,
        })
    }
}

/// The actions the product allows on the execution of a date (`None`: no
/// execution exists yet) and on each of its jobs. Pure; who may act at all
/// (an operator, not a viewer) is the access rules' business.
pub fn available_actions(execution: Option<&ExecutionState>) -> AvailableActions {
    let Some(state) = execution else {
        return AvailableActions {
            execution: ExecutionActions {
                create: true,
                process: true,
                ..ExecutionActions::default()
            },
            jobs: Vec::new(),
        };
    };
    let jobs: Vec<JobActions> = state
        .jobs
        .iter()
        .map(|job| JobActions {
            position: job.position,
            process_action: check_trigger(job).is_ok(),
            retry: check_retry(state.phase, job).is_ok(),
            stats: true,
        })
        .collect();
    let reprocess = state
        .first_errored_job()
        .and_then(|p| jobs.iter().find(|j| j.position == p))
        .is_some_and(|j| j.retry);
    AvailableActions {
        execution: ExecutionActions {
            create: false,
            recreate: state.is_fresh(),
            process: may_start(state.phase),
            reprocess,
            reset: true,
            reset_stops_work: state.is_running(),
        },
        jobs,
    }
}

/// Whether an execution in `phase` can start: it never has (or its
/// automatic run was missed). Process on a started execution does nothing.
pub fn may_start(phase: ExecutionPhase) -> bool {
    matches!(phase, ExecutionPhase::NotStarted | ExecutionPhase::Missed)
}

/// Why TriggerJob (Process Action) is refused for `job`: COMPLETED and
/// ERROR jobs cannot be triggered. A PENDING job is accepted (a job that is
/// not waiting for a trigger is then left as it is).
pub fn check_trigger(job: &JobState) -> Result<(), Error> {
    match job.status {
        Status::Completed => Err(Error::precondition(
            "JOB_COMPLETED",
            format!(
                "job {} ({}) is COMPLETED; nothing to trigger",
                job.position, job.job_type
            ),
        )),
        Status::Error => Err(Error::precondition(
            "JOB_ERRORED",
            format!(
                "job {} ({}) is in ERROR; use RetryJob to re-run its errored items",
                job.position, job.job_type
            ),
        )),
        Status::Pending => Ok(()),
    }
}

/// Why RetryJob is refused for `job` of an execution in `phase`: only an
/// ERROR job can be retried, and not while the execution is being reset.
pub fn check_retry(phase: ExecutionPhase, job: &JobState) -> Result<(), Error> {
    if job.status != Status::Error {
        return Err(Error::precondition(
            "JOB_NOT_IN_ERROR",
            format!(
                "job {} ({}) is {}; only an ERROR job can be retried",
                job.position,
                job.job_type,
                job.status.as_str()
            ),
        ));
    }
    if phase == ExecutionPhase::Cancelling {
        return Err(Error::precondition(
            "EXECUTION_CANCELLING",
            "the execution is being reset; retry after the reset",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "available_actions_tests.rs"]
mod tests;
