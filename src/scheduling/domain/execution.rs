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

use super::error::Error;

/// The product's three statuses, for executions and jobs alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not started or not finished.
    Pending,
    /// Finished with every work item processed.
    Completed,
    /// Paused because work items errored.
    Error,
}

/// What an execution is doing; finer than [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionPhase {
    /// Created, not started.
    NotStarted,
    /// A job is planning or processing.
    Running,
    /// Waiting for a manual job's trigger.
    AwaitingTrigger,
    /// Held by the exception window.
    PausedByWindow,
    /// Stopped on an errored job.
    StoppedOnError,
    /// Every job completed.
    Done,
    /// A reset with cancel waits for the batch in flight.
    Cancelling,
    /// An automatic run that was due too long ago and was not started.
    Missed,
}

/// What a job is doing; finer than [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    /// Earlier jobs have not finished (or the execution has not started).
    Waiting,
    /// Reached, manual, waiting for its trigger.
    AwaitingTrigger,
    /// Its work items are being enumerated.
    Planning,
    /// Its batches are being processed.
    Running,
    /// Held by the exception window.
    PausedByWindow,
    /// Every work item settled.
    Done,
}

macro_rules! names {
    ($ty:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $ty {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($name => Some($ty::$variant),)* _ => None }
            }
        }
    };
}

names!(Status { Pending = "PENDING", Completed = "COMPLETED", Error = "ERROR" });
names!(ExecutionPhase {
    NotStarted = "NOT_STARTED",
    Running = "RUNNING",
    AwaitingTrigger = "AWAITING_TRIGGER",
    PausedByWindow = "PAUSED_BY_WINDOW",
    StoppedOnError = "STOPPED_ON_ERROR",
    Done = "DONE",
    Cancelling = "CANCELLING",
    Missed = "MISSED",
});
names!(JobPhase {
    Waiting = "WAITING",
    AwaitingTrigger = "AWAITING_TRIGGER",
    Planning = "PLANNING",
    Running = "RUNNING",
    PausedByWindow = "PAUSED_BY_WINDOW",
    Done = "DONE",
});

/// Work item counters of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Planned items.
    pub total: i64,
    /// Items processed successfully.
    pub processed: i64,
    /// Items in ERROR.
    pub errored: i64,
}

impl Counts {
    /// Items not settled yet.
    pub fn pending(&self) -> i64 {
        self.total - self.processed - self.errored
    }

    /// Whether every item is settled.
    pub fn settled(&self) -> bool {
        self.pending() == 0
    }
}

/// One job of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// Position from 1.
    pub position: u32,
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
    pub fn new(position: u32, job_type: impl Into<String>, manual: bool) -> Self {
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

    fn job_mut(&mut self, position: u32) -> Result<&mut JobState, Error> {
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
        if !matches!(
            self.phase,
            ExecutionPhase::NotStarted | ExecutionPhase::Missed
        ) {
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
    pub fn planned(&mut self, position: u32, total: i64) -> Result<(), Error> {
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

    /// TriggerJob: releases a manual job. Refused for COMPLETED and ERROR
    /// jobs; a job already running is left alone (`false`).
    pub fn trigger(&mut self, position: u32) -> Result<Changed, Error> {
        let job = self.job_mut(position)?;
        match job.status {
            Status::Completed => {
                return Err(Error::precondition(
                    "JOB_COMPLETED",
                    format!(
                        "job {position} ({}) is COMPLETED; nothing to trigger",
                        job.job_type
                    ),
                ))
            }
            Status::Error => {
                return Err(Error::precondition(
                    "JOB_ERRORED",
                    format!(
                        "job {position} ({}) is in ERROR; use RetryJob to re-run its errored items",
                        job.job_type
                    ),
                ))
            }
            Status::Pending => {}
        }
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
    pub fn retry(&mut self, position: u32) -> Result<(), Error> {
        let phase = self.phase;
        let job = self.job_mut(position)?;
        if job.status != Status::Error {
            return Err(Error::precondition(
                "JOB_NOT_IN_ERROR",
                format!(
                    "job {position} ({}) is {}; only an ERROR job can be retried",
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
        job.status = Status::Pending;
        job.phase = JobPhase::Running;
        job.counts.errored = 0;
        self.status = Status::Pending;
        self.phase = ExecutionPhase::Running;
        self.advance();
        Ok(())
    }

    /// The first job that has errored work items (Reprocess's target).
    pub fn first_errored_job(&self) -> Option<u32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(manual: &[bool]) -> ExecutionState {
        ExecutionState::new(
            manual
                .iter()
                .enumerate()
                .map(|(i, m)| JobState::new(i as u32 + 1, format!("JOB{}", i + 1), *m))
                .collect(),
        )
    }

    fn phases(e: &ExecutionState) -> Vec<JobPhase> {
        e.jobs.iter().map(|j| j.phase).collect()
    }

    fn settle(e: &mut ExecutionState, position: u32, processed: i64, errored: i64) {
        let job = &mut e.jobs[position as usize - 1];
        job.counts.processed += processed;
        job.counts.errored += errored;
        e.advance();
    }

    #[test]
    fn jobs_run_in_order_to_completion() {
        let mut e = execution(&[false, false]);
        assert!(e.start());
        assert!(!e.start(), "starting twice changes nothing");
        assert_eq!(phases(&e), [JobPhase::Planning, JobPhase::Waiting]);
        e.planned(1, 3).unwrap();
        assert_eq!(e.phase, ExecutionPhase::Running);
        settle(&mut e, 1, 3, 0);
        assert_eq!(e.jobs[0].status, Status::Completed);
        assert_eq!(phases(&e), [JobPhase::Done, JobPhase::Planning]);
        e.planned(2, 2).unwrap();
        settle(&mut e, 2, 2, 0);
        assert_eq!(
            (e.status, e.phase),
            (Status::Completed, ExecutionPhase::Done)
        );
    }

    #[test]
    fn zero_items_complete_at_once() {
        let mut e = execution(&[false, false]);
        e.start();
        e.planned(1, 0).unwrap();
        assert_eq!(e.jobs[0].status, Status::Completed);
        e.planned(2, 0).unwrap();
        assert_eq!(e.status, Status::Completed);
    }

    #[test]
    fn an_errored_job_stops_the_rest_and_retry_continues() {
        let mut e = execution(&[false, false]);
        e.start();
        e.planned(1, 4).unwrap();
        settle(&mut e, 1, 3, 1);
        assert_eq!(
            (e.status, e.phase),
            (Status::Error, ExecutionPhase::StoppedOnError)
        );
        assert_eq!(e.jobs[0].status, Status::Error);
        assert_eq!(e.jobs[1].phase, JobPhase::Waiting);
        assert_eq!(e.first_errored_job(), Some(1));

        assert!(e.retry(2).is_err(), "a PENDING job cannot be retried");
        e.retry(1).unwrap();
        assert_eq!(
            (e.status, e.phase),
            (Status::Pending, ExecutionPhase::Running)
        );
        assert_eq!(e.jobs[0].counts.pending(), 1);
        settle(&mut e, 1, 1, 0);
        assert_eq!(e.jobs[0].status, Status::Completed);
        assert_eq!(e.jobs[1].phase, JobPhase::Planning);
    }

    #[test]
    fn a_manual_job_waits_for_its_trigger() {
        let mut e = execution(&[false, true]);
        e.start();
        e.planned(1, 0).unwrap();
        assert_eq!(e.phase, ExecutionPhase::AwaitingTrigger);
        assert_eq!(e.jobs[1].phase, JobPhase::AwaitingTrigger);
        assert_eq!(e.jobs[1].status, Status::Pending);
        assert!(e.trigger(2).unwrap());
        assert_eq!(e.jobs[1].phase, JobPhase::Planning);
        assert!(!e.trigger(2).unwrap(), "a second trigger changes nothing");
        e.planned(2, 0).unwrap();
        assert_eq!(e.status, Status::Completed);
        let done = e.trigger(2).unwrap_err();
        assert!(matches!(
            done,
            Error::FailedPrecondition {
                reason: "JOB_COMPLETED",
                ..
            }
        ));
    }

    #[test]
    fn a_manual_job_released_early_does_not_pause() {
        let mut e = execution(&[false, true]);
        assert!(e.trigger(2).unwrap());
        e.start();
        e.planned(1, 0).unwrap();
        assert_eq!(e.jobs[1].phase, JobPhase::Planning);
    }

    #[test]
    fn reset_returns_to_fresh() {
        let mut e = execution(&[false, true]);
        e.start();
        e.planned(1, 2).unwrap();
        settle(&mut e, 1, 1, 1);
        e.reset();
        assert!(e.is_fresh());
        assert_eq!(e, execution(&[false, true]));
    }

    #[test]
    fn cancel_stops_the_active_job() {
        let mut e = execution(&[false]);
        e.start();
        e.planned(1, 10).unwrap();
        assert!(e.is_running());
        e.cancel();
        assert_eq!(e.phase, ExecutionPhase::Cancelling);
        assert_eq!(e.jobs[0].phase, JobPhase::Waiting);
        e.advance();
        assert_eq!(
            e.phase,
            ExecutionPhase::Cancelling,
            "advance leaves a cancelling execution"
        );
    }

    #[test]
    fn the_exception_window_holds_and_releases() {
        let mut e = execution(&[false]);
        e.start();
        e.planned(1, 10).unwrap();
        assert!(e.hold_for_window(true));
        assert_eq!(e.phase, ExecutionPhase::PausedByWindow);
        assert_eq!(e.jobs[0].phase, JobPhase::PausedByWindow);
        assert!(!e.hold_for_window(true));
        assert!(e.hold_for_window(false));
        assert_eq!(e.phase, ExecutionPhase::Running);
        assert_eq!(e.jobs[0].phase, JobPhase::Running);
    }

    #[test]
    fn unknown_positions_name_the_field() {
        let mut e = execution(&[false]);
        let err = e.trigger(5).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(ref v) if v[0].field == "position"));
    }
}
