//! Work items as jobs see them: planned, handed to a batch, and settled.

/// One work item as a job plans it: who it is about and its JSON input.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedItem {
    /// The account the item is about (shown in the drill-down).
    pub account_id: String,
    /// The JSON input of the item's processing.
    pub payload: serde_json::Value,
}

/// One work item handed to [`crate::scheduling::job::JobType::process`].
#[derive(Debug, Clone)]
pub struct WorkItem {
    /// Position of the item in its job run, from 1.
    pub seq: i32,
    /// The account it is about.
    pub account_id: String,
    /// Its JSON input.
    pub payload: serde_json::Value,
}

/// The outcome of one work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Processed successfully.
    Processed,
    /// Failed; the item goes to ERROR with this code and reason.
    Error {
        /// Machine-readable code, e.g. `ACCOUNT_INACTIVE`; grouped in the
        /// drill-down.
        code: String,
        /// Human-readable reason.
        reason: String,
    },
}

impl ItemOutcome {
    /// An error outcome.
    pub fn error(code: impl Into<String>, reason: impl Into<String>) -> Self {
        ItemOutcome::Error {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// Where a batch is in its life. Stored by name; the store builds its SQL
/// from these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Waiting for a worker.
    Ready,
    /// Held by a worker under a lease.
    Claimed,
    /// Settled: its outcome is written.
    Done,
}

impl BatchState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BatchState::Ready => "READY",
            BatchState::Claimed => "CLAIMED",
            BatchState::Done => "DONE",
        }
    }
}
