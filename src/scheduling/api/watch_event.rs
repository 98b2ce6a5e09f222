//! Messages of a watcher's session as `WatchEvent`s.

use super::convert;
use crate::proto::v1 as pb;
use crate::scheduling::domain::event::{EventBody, EventCounts};
use crate::scheduling::domain::execution::Counts;
use crate::scheduling::watch::WatchMessage;

/// What a watcher receives for one message of its session: a
/// `WatchEvent`, or, when the service shuts down, the stream's end with
/// UNAVAILABLE and how to resume.
pub fn watch_item(message: WatchMessage) -> Result<pb::WatchEvent, tonic::Status> {
    match message {
        WatchMessage::ShuttingDown => Err(tonic::Status::unavailable(
            "the service is shutting down; reconnect and resume with after_sequence set to \
             the last sequence received",
        )),
        other => Ok(watch_event(other)),
    }
}

/// The proto message of one message of a watcher's session.
fn watch_event(message: WatchMessage) -> pb::WatchEvent {
    use pb::watch_event::Kind;
    match message {
        WatchMessage::ShuttingDown => pb::WatchEvent::default(),
        WatchMessage::Snapshot {
            sequence,
            executions,
        } => pb::WatchEvent {
            sequence: sequence.max(0) as u64,
            time: Some(convert::timestamp(chrono::Utc::now())),
            kind: Some(Kind::Snapshot(pb::Snapshot {
                executions: executions.iter().map(convert::execution).collect(),
            })),
        },
        WatchMessage::ResyncRequired { oldest } => pb::WatchEvent {
            sequence: 0,
            time: Some(convert::timestamp(chrono::Utc::now())),
            kind: Some(Kind::ResyncRequired(pb::ResyncRequired {
                oldest_retained_sequence: oldest.max(0) as u64,
            })),
        },
        WatchMessage::Event {
            sequence,
            time,
            execution_id,
            config_id,
            business_date,
            body,
        } => {
            let (execution_id, config_id, business_date) = (
                execution_id.to_string(),
                config_id.to_string(),
                business_date.to_string(),
            );
            let counts = |c: EventCounts| {
                convert::counts(Counts {
                    total: c.total,
                    processed: c.processed,
                    errored: c.errored,
                })
            };
            let kind = match body {
                EventBody::ExecutionChanged { status: st, phase } => {
                    Kind::ExecutionChanged(pb::ExecutionChanged {
                        execution_id,
                        config_id,
                        business_date,
                        status: convert::status(st) as i32,
                        phase: convert::execution_phase(phase) as i32,
                    })
                }
                EventBody::JobChanged {
                    position,
                    status: st,
                    phase,
                    counts: c,
                } => Kind::JobChanged(pb::JobChanged {
                    execution_id,
                    config_id,
                    business_date,
                    position: position.get(),
                    status: convert::status(st) as i32,
                    phase: convert::job_phase(phase) as i32,
                    counts: Some(counts(c)),
                }),
                EventBody::CountsChanged {
                    position,
                    counts: c,
                } => Kind::CountsChanged(pb::JobCountsChanged {
                    execution_id,
                    config_id,
                    business_date,
                    position: position.get(),
                    counts: Some(counts(c)),
                }),
                EventBody::ActionTaken { action } => Kind::ActionTaken(pb::ActionTaken {
                    execution_id,
                    config_id,
                    business_date,
                    action: Some(convert::action(&action)),
                }),
            };
            pb::WatchEvent {
                sequence: sequence.max(0) as u64,
                time: Some(convert::timestamp(time)),
                kind: Some(kind),
            }
        }
    }
}
