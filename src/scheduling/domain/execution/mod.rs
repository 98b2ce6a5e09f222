//! The state machine of an execution and its jobs. Pure: the engine loads an
//! [`ExecutionState`] under a lock, applies one transition, and writes back
//! what changed.
//!
//! Rules (design brief, "Statuses" and "Actions"):
//! - A job is COMPLETED when every work item is processed (zero items
//!   completes at once), ERROR when all are settled and at least one errored.
//! - An ERROR job stops the execution: later jobs stay PENDING, the execution
//!   is ERROR. The execution is COMPLETED when every job is.
//! - A manual job waits (PENDING, AWAITING_TRIGGER) until triggered.

use crate::scheduling::domain::available_actions;
use crate::scheduling::domain::config::JobSpec;
use crate::scheduling::domain::error::{Error, Violations};
use crate::scheduling::domain::limits::MAX_JOBS;
use crate::scheduling::domain::position::JobPosition;

mod names;
mod record;
#[cfg(test)]
mod tests;

pub use names::{ActionKind, Counts, ExecutionPhase, JobPhase, Status};
pub use record::{Execution, ExecutionKey, JobRun};

/// One job of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// Position from 1.
    pub position: JobPosition,
    /// Catalogue job type.
    pub job_type: String,
    /// Waits for a trigger when reached.
    pub manual: bool,
    /// A manual job released by TriggerJob (before or after it was reached).
    pub released: bool,
    /// PENDING, COMPLETED or ERROR.
    pub status: Status,
    /// What it is doing.
    pub phase: JobPhase,
    /// Its counters.
    pub counts: Counts,
}

impl JobState {
    /// A job as freshly snapshotted.
    pub fn new(position: JobPosition, job_type: impl Into<String>, manual: bool) -> Self {
        Self {
            position,
            job_type: job_type.into(),
            manual,
            released: false,
            status: Status::Pending,
            phase: JobPhase::Waiting,
            counts: Counts::default(),
        }
    }

    /// Whether the job is planning or processing (work may be in flight).
    pub fn is_active(&self) -> bool {
        matches!(
            self.phase,
            JobPhase::Planning | JobPhase::Running | JobPhase::PausedByWindow
        )
    }
}

/// An execution and its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionState {
    /// PENDING, COMPLETED or ERROR.
    pub status: Status,
    /// What it is doing.
    pub phase: ExecutionPhase,
    /// Its jobs in order.
    pub jobs: Vec<JobState>,
}

/// What an action changed: `true` when something changed.
pub type Changed = bool;

impl ExecutionState {
    /// A freshly created execution of these jobs.
    pub fn new(jobs: Vec<JobState>) -> Self {
        Self {
            status: Status::Pending,
            phase: ExecutionPhase::NotStarted,
            jobs,
        }
    }

    /// Whether it has been started and work may be in flight.
    pub fn is_running(&self) -> bool {
        self.jobs.iter().any(JobState::is_active)
            || matches!(
                self.phase,
                ExecutionPhase::Running
                    | ExecutionPhase::PausedByWindow
                    | ExecutionPhase::Cancelling
            )
    }

    /// Whether it has never been started (a Recreate may re-snapshot it).
    pub fn is_fresh(&self) -> bool {
        matches!(
            self.phase,
            ExecutionPhase::NotStarted | ExecutionPhase::Missed
        ) && self
            .jobs
            .iter()
            .all(|j| j.status == Status::Pending && j.phase == JobPhase::Waiting)
    }

    fn job_mut(&mut self, position: JobPosition) -> Result<&mut JobState, Error> {
        let count = self.jobs.len();
        self.jobs
            .iter_mut()
            .find(|j| j.position == position)
            .ok_or_else(|| {
                Error::invalid(
                    "position",
                    format!("no job at position {position}; the execution has jobs 1 to {count}"),
                )
            })
    }

    /// Starts a fresh execution. `false` (nothing done) when it was already
    /// started.
    pub fn start(&mut self) -> Changed {
        if !available_actions::may_start(self.phase) {
            return false;
        }
        self.phase = ExecutionPhase::Running;
        self.advance();
        true
    }

    /// Moves the execution as far as it can go: settles jobs whose items are
    /// all settled, stops on an errored job, pauses at a manual job, and
    /// hands the next job to planning. Idempotent.
    pub fn advance(&mut self) {
        if matches!(
            self.phase,
            ExecutionPhase::NotStarted | ExecutionPhase::Missed | ExecutionPhase::Cancelling
        ) {
            return;
        }
        for job in self.jobs.iter_mut() {
            if job.phase == JobPhase::Running && job.counts.settled() {
                job.phase = JobPhase::Done;
                job.status = if job.counts.errored > 0 {
                    Status::Error
                } else {
                    Status::Completed
                };
            }
            match (job.status, job.phase) {
                (Status::Completed, _) => continue,
                (Status::Error, _) => {
                    self.status = Status::Error;
                    self.phase = ExecutionPhase::StoppedOnError;
                    return;
                }
                (Status::Pending, JobPhase::Waiting | JobPhase::AwaitingTrigger) => {
                    self.status = Status::Pending;
                    if job.manual && !job.released {
                        job.phase = JobPhase::AwaitingTrigger;
                        self.phase = ExecutionPhase::AwaitingTrigger;
                    } else {
                        job.phase = JobPhase::Planning;
                        self.phase = ExecutionPhase::Running;
                    }
                    return;
                }
                (Status::Pending, JobPhase::PausedByWindow) => {
                    self.status = Status::Pending;
                    self.phase = ExecutionPhase::PausedByWindow;
                    return;
                }
                (Status::Pending, _) => {
                    self.status = Status::Pending;
                    self.phase = ExecutionPhase::Running;
                    return;
                }
            }
        }
        self.status = Status::Completed;
        self.phase = ExecutionPhase::Done;
    }

    /// A job finished planning `total` items.
    pub fn planned(&mut self, position: JobPosition, total: i64) -> Result<(), Error> {
        let job = self.job_mut(position)?;
        job.counts = Counts {
            total,
            processed: 0,
            errored: 0,
        };
        job.phase = JobPhase::Running;
        self.advance();
        Ok(())
    }

    /// A job's plan failed as a whole: it becomes one errored work item, so
    /// the drill-down shows the failure and Retry plans again.
    pub fn plan_failed(&mut self, position: JobPosition) -> Result<(), Error> {
        let job = self.job_mut(position)?;
        job.counts = Counts {
            total: 1,
            processed: 0,
            errored: 1,
        };
        job.phase = JobPhase::Running;
        self.advance();
        Ok(())
    }

    /// An automatic run that was due too long ago is recorded, not started.
    pub fn mark_missed(&mut self) {
        if self.phase == ExecutionPhase::NotStarted {
            self.phase = ExecutionPhase::Missed;
        }
    }

    /// Per-execution manual designations (positions from 1), for an
    /// execution that has not started yet.
    pub fn designate_manual(&mut self, positions: &[JobPosition]) {
        if !self.is_fresh() {
            return;
        }
        for job in &mut self.jobs {
            job.manual |= positions.contains(&job.position);
        }
    }

    /// TriggerJob: releases a manual job. Refused for COMPLETED and ERROR
    /// jobs; a job already running is left alone (`false`).
    pub fn trigger(&mut self, position: JobPosition) -> Result<Changed, Error> {
        let job = self.job_mut(position)?;
        available_actions::check_trigger(job)?;
        if job.is_active() || job.released || !job.manual && job.phase != JobPhase::AwaitingTrigger
        {
            return Ok(false);
        }
        job.released = true;
        self.advance();
        Ok(true)
    }

    /// RetryJob: an ERROR job goes back to RUNNING with its errored items
    /// pending again. The caller re-queues those items.
    pub fn retry(&mut self, position: JobPosition) -> Result<(), Error> {
        let phase = self.phase;
        let job = self.job_mut(position)?;
        available_actions::check_retry(phase, job)?;
        job.status = Status::Pending;
        job.phase = JobPhase::Running;
        job.counts.errored = 0;
        self.status = Status::Pending;
        self.phase = ExecutionPhase::Running;
        self.advance();
        Ok(())
    }

    /// RetryJob of a job whose plan failed: the job plans again from
    /// scratch (the caller discards its items).
    pub fn retry_plan(&mut self, position: JobPosition) -> Result<(), Error> {
        self.retry(position)?;
        let job = self.job_mut(position)?;
        job.counts = Counts::default();
        job.phase = JobPhase::Planning;
        self.advance();
        Ok(())
    }

    /// The first job that has errored work items (Reprocess's target).
    pub fn first_errored_job(&self) -> Option<JobPosition> {
        self.jobs
            .iter()
            .find(|j| j.status == Status::Error)
            .map(|j| j.position)
    }

    /// Reset: back to freshly created, snapshot kept.
    pub fn reset(&mut self) {
        for job in &mut self.jobs {
            *job = JobState::new(job.position, job.job_type.clone(), job.manual);
        }
        self.status = Status::Pending;
        self.phase = ExecutionPhase::NotStarted;
    }

    /// Stops claiming and planning so a reset can proceed once the batch in
    /// flight settles.
    pub fn cancel(&mut self) {
        for job in &mut self.jobs {
            if job.is_active() {
                job.phase = JobPhase::Waiting;
            }
        }
        self.phase = ExecutionPhase::Cancelling;
    }

    /// Holds (or releases) the active job for the exception window.
    /// `true` when something changed.
    pub fn hold_for_window(&mut self, held: bool) -> Changed {
        let mut changed = false;
        for job in &mut self.jobs {
            match (held, job.phase) {
                (true, JobPhase::Running) => {
                    job.phase = JobPhase::PausedByWindow;
                    changed = true;
                }
                (false, JobPhase::PausedByWindow) => {
                    job.phase = JobPhase::Running;
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.phase = if held {
                ExecutionPhase::PausedByWindow
            } else {
                ExecutionPhase::Running
            };
            self.advance();
        }
        changed
    }
}

/// The job list of a configuration as an execution snapshots it, with
/// per-execution manual designations (positions from 1, each checked).
pub fn snapshot(
    jobs: &[JobSpec],
    manual_positions: &[JobPosition],
) -> Result<Vec<JobState>, Error> {
    let count = jobs.len();
    let mut violations = Violations::default();
    for (i, p) in manual_positions.iter().enumerate() {
        if p.index() >= count {
            violations.add(
                format!("manual_job_positions[{i}]"),
                format!("no job at position {p}; the configuration has jobs 1 to {count}"),
            );
        }
    }
    violations.into_result(())?;
    jobs.iter()
        .enumerate()
        .map(|(index, spec)| {
            let position = JobPosition::from_index(index)
                .ok_or_else(|| Error::invalid("jobs", format!("more than {MAX_JOBS} jobs")))?;
            Ok(JobState::new(
                position,
                spec.job_type.clone(),
                spec.manual || manual_positions.contains(&position),
            ))
        })
        .collect()
}
