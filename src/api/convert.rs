//! Conversions between proto messages and domain types.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::domain::config::{ConfigInput, Frequency, JobScheduleConfig, JobSpec};
use crate::domain::time_of_day;
use crate::proto::v1 as pb;

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
    }
}

/// The proto message of a stored configuration.
pub fn config_to_proto(config: &JobScheduleConfig) -> pb::JobScheduleConfig {
    let d = &config.draft;
    pb::JobScheduleConfig {
        config_id: config.config_id.to_string(),
        client_id: config.client_id.clone(),
        name: d.name.clone(),
        description: d.description.clone(),
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
            .iter()
            .map(|j| pb::JobSpec {
                job_type: j.job_type.clone(),
                manual: j.manual,
            })
            .collect(),
        automatic_runs_paused: d.automatic_runs_paused,
        etag: config.etag(),
        create_time: Some(timestamp(config.create_time)),
        update_time: Some(timestamp(config.update_time)),
    }
}
