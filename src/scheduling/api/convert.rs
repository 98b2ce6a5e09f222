//! Conversions between proto messages and domain types.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::proto::v1 as pb;
use crate::scheduling::domain::config::{ConfigInput, Frequency, JobScheduleConfig, JobSpec};
use crate::scheduling::domain::drill_down::{ErrorCodeCount, ErroredWorkItem};
use crate::scheduling::domain::event::ActionRecord;
use crate::scheduling::domain::execution::{
    ActionKind, Counts, Execution, ExecutionPhase, JobPhase, JobState, Status,
};
use crate::scheduling::domain::time_of_day;

/// A protobuf timestamp of `t`.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The domain frequency of a proto enum value; `None` when unspecified or
/// unknown.
pub fn frequency_from_proto(value: i32) -> Option<Frequency> {
    match pb::Frequency::try_from(value).ok()? {
        pb::Frequency::Daily => Some(Frequency::Daily),
        pb::Frequency::Scheduled => Some(Frequency::Scheduled),
        pb::Frequency::Unspecified => None,
    }
}

/// The proto enum value of a frequency.
pub fn frequency_to_proto(frequency: Frequency) -> pb::Frequency {
    match frequency {
        Frequency::Daily => pb::Frequency::Daily,
        Frequency::Scheduled => pb::Frequency::Scheduled,
    }
}

/// The raw, unvalidated input carried by a proto configuration.
pub fn config_input(config: &pb::JobScheduleConfig) -> ConfigInput {
    ConfigInput {
        name: config.name.clone(),
        description: config.description.clone(),
        frequency: frequency_from_proto(config.frequency),
        scheduled_time: config.scheduled_time.clone(),
        exception_start_time: config.exception_start_time.clone(),
        exception_end_time: config.exception_end_time.clone(),
        time_zone: config.time_zone.clone(),
        recurrence_rule: config.recurrence_rule.clone(),
        jobs: config
            .jobs
            .iter()
            .map(|j| JobSpec {
                job_type: j.job_type.clone(),
                manual: j.manual,
            })
            .collect(),
        automatic_runs_paused: config.automatic_runs_paused,
        rule_start_date: config.rule_start_date.clone(),
    }
}

/// The proto message of a stored configuration.
pub fn config_to_proto(config: JobScheduleConfig) -> pb::JobScheduleConfig {
    let etag = config.etag();
    let d = config.draft;
    pb::JobScheduleConfig {
        config_id: config.config_id.to_string(),
        client_id: config.client_id,
        name: d.name,
        description: d.description,
        frequency: frequency_to_proto(d.frequency) as i32,
        scheduled_time: d
            .scheduled_time
            .map(time_of_day::format)
            .unwrap_or_default(),
        exception_start_time: d
            .exception_window
            .map(|w| time_of_day::format(w.start))
            .unwrap_or_default(),
        exception_end_time: d
            .exception_window
            .map(|w| time_of_day::format(w.end))
            .unwrap_or_default(),
        time_zone: d.time_zone.name().to_string(),
        recurrence_rule: d
            .recurrence_rule
            .as_ref()
            .map(|r| r.as_str().to_string())
            .unwrap_or_default(),
        jobs: d
            .jobs
            .into_iter()
            .map(|j| pb::JobSpec {
                job_type: j.job_type,
                manual: j.manual,
            })
            .collect(),
        automatic_runs_paused: d.automatic_runs_paused,
        etag,
        create_time: Some(timestamp(config.create_time)),
        update_time: Some(timestamp(config.update_time)),
        rule_start_date: d.rule_start_date.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// The proto status of a domain status.
pub fn status(s: Status) -> pb::Status {
    match s {
        Status::Pending => pb::Status::Pending,
        Status::Completed => pb::Status::Completed,
        Status::Error => pb::Status::Error,
    }
}

/// The proto phase of an execution phase.
pub fn execution_phase(p: ExecutionPhase) -> pb::ExecutionPhase {
    match p {
        ExecutionPhase::NotStarted => pb::ExecutionPhase::NotStarted,
        ExecutionPhase::Running => pb::ExecutionPhase::Running,
        ExecutionPhase::AwaitingTrigger => pb::ExecutionPhase::AwaitingTrigger,
        ExecutionPhase::PausedByWindow => pb::ExecutionPhase::PausedByWindow,
        ExecutionPhase::StoppedOnError => pb::ExecutionPhase::StoppedOnError,
        ExecutionPhase::Done => pb::ExecutionPhase::Done,
        ExecutionPhase::Cancelling => pb::ExecutionPhase::Cancelling,
        ExecutionPhase::Missed => pb::ExecutionPhase::Missed,
    }
}

/// The proto phase of a job phase.
pub fn job_phase(p: JobPhase) -> pb::JobPhase {
    match p {
        JobPhase::Waiting => pb::JobPhase::Waiting,
        JobPhase::AwaitingTrigger => pb::JobPhase::AwaitingTrigger,
        JobPhase::Planning => pb::JobPhase::Planning,
        JobPhase::Running => pb::JobPhase::Running,
        JobPhase::PausedByWindow => pb::JobPhase::PausedByWindow,
        JobPhase::Done => pb::JobPhase::Done,
    }
}

/// Proto counts of domain counters.
pub fn counts(c: Counts) -> pb::JobCounts {
    pb::JobCounts {
        total: c.total.max(0) as u64,
        pending: c.pending().max(0) as u64,
        processed: c.processed.max(0) as u64,
        error: c.errored.max(0) as u64,
    }
}

/// The proto message of an execution with its jobs.
pub fn execution(e: &Execution) -> pb::Execution {
    pb::Execution {
        execution_id: e.execution_id.to_string(),
        client_id: e.key.client_id.clone(),
        config_id: e.key.config_id.to_string(),
        config_name: e.config_name.clone(),
        business_date: e.key.business_date.to_string(),
        status: status(e.state.status) as i32,
        phase: execution_phase(e.state.phase) as i32,
        jobs: e
            .state
            .jobs
            .iter()
            .zip(e.job_runs.iter())
            .map(|(job, run)| pb::JobRun {
                position: job.position.get(),
                job_type: job.job_type.clone(),
                manual: job.manual,
                status: status(job.status) as i32,
                phase: job_phase(job.phase) as i32,
                counts: Some(counts(job.counts)),
                start_time: run.start_time.map(timestamp),
                end_time: run.end_time.map(timestamp),
            })
            .collect(),
        create_time: Some(timestamp(e.create_time)),
        start_time: e.start_time.map(timestamp),
        end_time: e.end_time.map(timestamp),
        automatic: e.automatic,
    }
}

/// The proto action kind of an action.
pub fn action_kind(kind: ActionKind) -> pb::ActionKind {
    match kind {
        ActionKind::Create => pb::ActionKind::ActionCreate,
        ActionKind::Recreate => pb::ActionKind::ActionRecreate,
        ActionKind::Process => pb::ActionKind::ActionProcess,
        ActionKind::Reprocess => pb::ActionKind::ActionReprocess,
        ActionKind::Reset => pb::ActionKind::ActionReset,
        ActionKind::TriggerJob => pb::ActionKind::ActionTriggerJob,
        ActionKind::RetryJob => pb::ActionKind::ActionRetryJob,
    }
}

/// The proto message of a recorded action.
pub fn action(a: &ActionRecord) -> pb::ExecutionAction {
    pb::ExecutionAction {
        action_id: a.action_id,
        kind: action_kind(a.kind) as i32,
        actor: a.actor.clone(),
        reason: a.reason.clone(),
        job_position: a.job_position.map_or(0, |p| p.get()),
        outcome: a.outcome.clone(),
        time: Some(timestamp(a.time)),
        on_behalf_of: a.on_behalf_of.clone().unwrap_or_default(),
    }
}

/// The first drill-down level of a job.
pub fn job_stats(job: &JobState) -> pb::JobStats {
    pb::JobStats {
        position: job.position.get(),
        job_type: job.job_type.clone(),
        status: status(job.status) as i32,
        counts: Some(counts(job.counts)),
    }
}

/// The second drill-down level: one error code and its count.
pub fn error_code_count(c: &ErrorCodeCount) -> pb::ErrorCodeCount {
    pb::ErrorCodeCount {
        error_code: c.error_code.clone(),
        count: c.count,
    }
}

/// The third drill-down level: one errored work item with its history.
pub fn errored_work_item(item: ErroredWorkItem) -> pb::ErroredWorkItem {
    pb::ErroredWorkItem {
        work_item_id: item.work_item_id,
        account_id: item.account_id,
        batch_id: item.batch_id,
        error_code: item.error_code,
        reason: item.reason,
        status: if item.resolved {
            pb::WorkItemStatus::Processed as i32
        } else {
            pb::WorkItemStatus::Error as i32
        },
        resolved: item.resolved,
        payload_json: item.payload_json,
        attempts: item.attempts,
        history: item
            .history
            .into_iter()
            .map(|h| pb::WorkItemAttempt {
                attempt: h.attempt,
                batch_id: h.batch_id,
                error_code: h.error_code,
                reason: h.reason,
                time: Some(timestamp(h.time)),
            })
            .collect(),
    }
}
