//! Status events: what watchers are told. Each is written in the
//! transaction of the change it describes (see `store::events`).

use serde::{Deserialize, Serialize};

use super::execution::{ActionKind, Counts, ExecutionPhase, ExecutionState, JobPhase, Status};
use super::position::JobPosition;

/// A recorded action, as events and the action history show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Identifier of the record.
    pub action_id: i64,
    /// What was done.
    pub kind: ActionKind,
    /// Who acted.
    pub actor: String,
    /// Why, as given.
    pub reason: String,
    /// The job acted on, if the action named one (stored and sent as 0
    /// when not).
    #[serde(with = "super::position::or_zero")]
    pub job_position: Option<JobPosition>,
    /// What it did.
    pub outcome: String,
    /// When, RFC 3339.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Whom the acting key said it acted for (`x-on-behalf-of`), beside
    /// the key's name in `actor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    /// The execution's status or phase changed.
    ExecutionChanged {
        /// New status.
        status: Status,
        /// New phase.
        phase: ExecutionPhase,
    },
    /// A job's status or phase changed.
    JobChanged {
        /// Job position.
        position: JobPosition,
        /// New status.
        status: Status,
        /// New phase.
        phase: JobPhase,
        /// Counts at the time.
        counts: EventCounts,
    },
    /// A job's counts changed.
    CountsChanged {
        /// Job position.
        position: JobPosition,
        /// New counts.
        counts: EventCounts,
    },
    /// An action was taken.
    ActionTaken {
        /// The record.
        action: ActionRecord,
    },
}

/// Counts as carried by events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Planned items.
    pub total: i64,
    /// Processed items.
    pub processed: i64,
    /// Errored items.
    pub errored: i64,
}

impl From<Counts> for EventCounts {
    fn from(c: Counts) -> Self {
        Self {
            total: c.total,
            processed: c.processed,
            errored: c.errored,
        }
    }
}

impl EventBody {
    /// Whether this is a status change (never dropped for a slow watcher)
    /// rather than a counts update (may be coalesced).
    pub fn is_status_change(&self) -> bool {
        !matches!(self, EventBody::CountsChanged { .. })
    }
}

/// The events that describe going from `before` to `after`, in order:
/// job changes first, then the execution's.
pub fn changes(before: &ExecutionState, after: &ExecutionState) -> Vec<EventBody> {
    let mut events = Vec::new();
    for (b, a) in before.jobs.iter().zip(after.jobs.iter()) {
        if b.status != a.status || b.phase != a.phase {
            events.push(EventBody::JobChanged {
                position: a.position,
                status: a.status,
                phase: a.phase,
                counts: a.counts.into(),
            });
        } else if b.counts != a.counts {
            events.push(EventBody::CountsChanged {
                position: a.position,
                counts: a.counts.into(),
            });
        }
    }
    if before.status != after.status || before.phase != after.phase {
        events.push(EventBody::ExecutionChanged {
            status: after.status,
            phase: after.phase,
        });
    }
    events
}
