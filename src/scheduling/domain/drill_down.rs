//! What the statistics drill-down shows below a job's counts: errors by
//! code, and each errored work item of a code with its earlier attempts.

use chrono::{DateTime, Utc};

/// The second level: how many work items errored with one code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCodeCount {
    /// The code, e.g. `ACCOUNT_INACTIVE`.
    pub error_code: String,
    /// Work items currently in ERROR with it.
    pub count: u64,
}

/// The third level: one work item in ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErroredWorkItem {
    /// The item's number within its job run, from 1.
    pub work_item_id: i64,
    /// The account it is about.
    pub account_id: String,
    /// The batch of its latest attempt.
    pub batch_id: i64,
    /// Its code.
    pub error_code: String,
    /// Why it failed.
    pub reason: String,
    /// The JSON input of its processing.
    pub payload_json: String,
    /// Attempts so far (1 before any retry).
    pub attempts: u32,
    /// Its earlier failed attempts, oldest first.
    pub history: Vec<WorkItemAttempt>,
    /// A retry fixed it: the fields above describe its last failure with
    /// the code listed, and it is processed now.
    pub resolved: bool,
}

/// One earlier failed attempt of a work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItemAttempt {
    /// Attempt number from 1.
    pub attempt: u32,
    /// Its batch.
    pub batch_id: i64,
    /// Its code.
    pub error_code: String,
    /// Its reason.
    pub reason: String,
    /// When it settled.
    pub time: DateTime<Utc>,
}
