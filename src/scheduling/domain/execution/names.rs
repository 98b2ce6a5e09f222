//! The named states of executions, jobs and actions, and the counters of a
//! job: the vocabulary the state machine, the store and the API share.

use serde::{Deserialize, Serialize};

/// The product's three statuses, for executions and jobs alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Not started or not finished.
    Pending,
    /// Finished with every work item processed.
    Completed,
    /// Paused because work items errored.
    Error,
}

/// What an execution is doing; finer than [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

/// Stored names of a state enum: `as_str` writes them, `parse` reads them
/// back (an unknown name is `None`, which the store reports as corrupt).
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
names!(ActionKind {
    Create = "CREATE",
    Recreate = "RECREATE",
    Process = "PROCESS",
    Reprocess = "REPROCESS",
    Reset = "RESET",
    TriggerJob = "TRIGGER_JOB",
    RetryJob = "RETRY_JOB",
});
names!(JobPhase {
    Waiting = "WAITING",
    AwaitingTrigger = "AWAITING_TRIGGER",
    Planning = "PLANNING",
    Running = "RUNNING",
    PausedByWindow = "PAUSED_BY_WINDOW",
    Done = "DONE",
});

/// The actions of the product on an execution, as the history records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionKind {
    /// CreateExecution (or an automatic run recorded as missed).
    Create,
    /// RecreateExecution.
    Recreate,
    /// ProcessExecution (or an automatic start).
    Process,
    /// ReprocessExecution.
    Reprocess,
    /// ResetExecution.
    Reset,
    /// TriggerJob.
    TriggerJob,
    /// RetryJob.
    RetryJob,
}

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
