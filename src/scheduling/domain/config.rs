//! Job schedule configurations: what a client's schedule runs and when, and
//! the rules a configuration must satisfy before it is stored.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use super::error::{Error, Violations};
use super::limits::{self, quote};
use super::time_of_day;

pub use super::recurrence::RecurrenceRule;

/// Longest accepted configuration name.
pub const MAX_NAME_LEN: usize = limits::CONFIG_NAME.max_chars;
/// Longest accepted description.
pub const MAX_DESCRIPTION_LEN: usize = limits::DESCRIPTION.max_chars;
/// Most jobs one configuration may list.
pub const MAX_JOBS: usize = limits::MAX_JOBS;
/// How far ahead of today a recurrence rule must have a date: a rule whose
/// next date is later than this (or that has none) is refused, as it would
/// silently never run.
pub const RULE_HORIZON_YEARS: u32 = super::calendar::SEARCH_HORIZON_YEARS;

/// How often a configuration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// The end-of-day schedule: every business date. At most one per client.
    Daily,
    /// On the dates of a recurrence rule, or only by hand.
    Scheduled,
}

impl Frequency {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "DAILY",
            Frequency::Scheduled => "SCHEDULED",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "DAILY" => Some(Frequency::Daily),
            "SCHEDULED" => Some(Frequency::Scheduled),
            _ => None,
        }
    }
}

/// One job of a configuration's ordered list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A job type of the catalogue.
    pub job_type: String,
    /// Whether the execution pauses before it until triggered.
    #[serde(default)]
    pub manual: bool,
}

/// The daily window in which nothing starts and no batch is claimed. May
/// cross midnight (start later than end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionWindow {
    /// First instant inside the window.
    pub start: NaiveTime,
    /// First instant after the window.
    pub end: NaiveTime,
}

impl ExceptionWindow {
    /// Whether the local time of day `t` falls inside the window.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// A configuration as a client describes it, before validation. Fields are
/// raw text as they arrive in a request.
#[derive(Debug, Clone, Default)]
pub struct ConfigInput {
    /// Name, unique per client.
    pub name: String,
    /// Optional description.
    pub description: String,
    /// `None` when the request named no valid frequency.
    pub frequency: Option<Frequency>,
    /// `HH:MM:SS` or empty.
    pub scheduled_time: String,
    /// `HH:MM:SS` or empty.
    pub exception_start_time: String,
    /// `HH:MM:SS` or empty.
    pub exception_end_time: String,
    /// IANA zone or empty for UTC.
    pub time_zone: String,
    /// RRULE or empty.
    pub recurrence_rule: String,
    /// Ordered jobs.
    pub jobs: Vec<JobSpec>,
    /// Whether automatic runs are paused.
    pub automatic_runs_paused: bool,
    /// `YYYY-MM-DD` the recurrence rule counts from, or empty for the
    /// default (the day the configuration is created).
    pub rule_start_date: String,
}

/// A configuration that satisfies every rule that can be checked without the
/// database (uniqueness is the database's).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDraft {
    /// Trimmed name.
    pub name: String,
    /// Description.
    pub description: String,
    /// DAILY or SCHEDULED.
    pub frequency: Frequency,
    /// When automatic runs start, local time.
    pub scheduled_time: Option<NaiveTime>,
    /// The exception window, if any.
    pub exception_window: Option<ExceptionWindow>,
    /// The client's time zone.
    pub time_zone: chrono_tz::Tz,
    /// Dates of a SCHEDULED configuration.
    pub recurrence_rule: Option<RecurrenceRule>,
    /// Ordered jobs, at least one.
    pub jobs: Vec<JobSpec>,
    /// Whether automatic runs are paused.
    pub automatic_runs_paused: bool,
    /// The date the recurrence rule counts from (its DTSTART): where COUNT
    /// starts, the phase of INTERVAL, the weekday of a bare FREQ=WEEKLY.
    /// `None` before the configuration is stored (the store fills in the
    /// creation day); the calendar then counts from 2000-01-01.
    pub rule_start_date: Option<chrono::NaiveDate>,
}

/// A stored configuration: a valid draft plus what the server assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct JobScheduleConfig {
    /// Server-assigned identifier.
    pub config_id: uuid::Uuid,
    /// The owning client.
    pub client_id: String,
    /// The configuration's content.
    pub draft: ConfigDraft,
    /// Incremented by every update; the API's etag.
    pub version: i64,
    /// When it was created.
    pub create_time: chrono::DateTime<chrono::Utc>,
    /// When it was last updated.
    pub update_time: chrono::DateTime<chrono::Utc>,
}

impl JobScheduleConfig {
    /// The etag the API shows for this version.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    /// The configuration as raw input again: the base an update with a
    /// field mask changes field by field before validating the whole.
    pub fn to_input(&self) -> ConfigInput {
        let d = &self.draft;
        let time = |t: Option<NaiveTime>| t.map(time_of_day::format).unwrap_or_default();
        ConfigInput {
            name: d.name.clone(),
            description: d.description.clone(),
            frequency: Some(d.frequency),
            scheduled_time: time(d.scheduled_time),
            exception_start_time: time(d.exception_window.map(|w| w.start)),
            exception_end_time: time(d.exception_window.map(|w| w.end)),
            time_zone: d.time_zone.name().to_string(),
            recurrence_rule: d
                .recurrence_rule
                .as_ref()
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            jobs: d.jobs.clone(),
            automatic_runs_paused: d.automatic_runs_paused,
            rule_start_date: d.rule_start_date.map(|d| d.to_string()).unwrap_or_default(),
        }
    }
}

/// Parses an IANA time zone name; empty means UTC.
pub fn parse_time_zone(text: &str) -> Result<chrono_tz::Tz, String> {
    if text.is_empty() {
        return Ok(chrono_tz::UTC);
    }
    chrono_tz::Tz::from_str(text).map_err(|_| {
        format!(
            "{} is not an IANA time zone (e.g. America/New_York)",
            quote(text)
        )
    })
}

impl ConfigDraft {
    /// Checks every rule of a configuration. `prefix` is the path of the
    /// configuration in the request (e.g. `config`), so violations name the
    /// exact field. `known_job_types` is the catalogue; `today` is the date
    /// from which a recurrence rule must have dates.
    pub fn validate(
        input: ConfigInput,
        prefix: &str,
        known_job_types: &HashSet<String>,
        today: NaiveDate,
    ) -> Result<Self, Error> {
        let mut v = Violations::default();
        let field = |name: &str| format!("{prefix}.{name}");
        // A text breaking its limit is reported once and not parsed further.
        let text_ok =
            |v: &mut Violations, name: &str, limit: limits::TextLimit, text: &str| match limit
                .problem(text)
            {
                Some(problem) => {
                    v.add(field(name), problem);
                    false
                }
                None => true,
            };

        let name = input.name.trim().to_string();
        if text_ok(&mut v, "name", limits::CONFIG_NAME, &name) && name.is_empty() {
            v.add(field("name"), "required: give the configuration a name");
        }
        text_ok(
            &mut v,
            "description",
            limits::DESCRIPTION,
            &input.description,
        );
        let scheduled_ok = text_ok(
            &mut v,
            "scheduled_time",
            limits::TIME_OF_DAY,
            &input.scheduled_time,
        );
        let start_ok = text_ok(
            &mut v,
            "exception_start_time",
            limits::TIME_OF_DAY,
            &input.exception_start_time,
        );
        let end_ok = text_ok(
            &mut v,
            "exception_end_time",
            limits::TIME_OF_DAY,
            &input.exception_end_time,
        );
        let zone_ok = text_ok(&mut v, "time_zone", limits::TIME_ZONE, &input.time_zone);
        let rule_ok = text_ok(
            &mut v,
            "recurrence_rule",
            limits::RECURRENCE_RULE,
            &input.recurrence_rule,
        );
        if input.frequency.is_none() {
            v.add(field("frequency"), "required: DAILY or SCHEDULED");
        }

        let mut time = |name: &str, text: &str, ok: bool| -> Option<NaiveTime> {
            if text.is_empty() || !ok {
                return None;
            }
            match time_of_day::parse(text) {
                Ok(t) => Some(t),
                Err(e) => {
                    v.add(field(name), e);
                    None
                }
            }
        };
        let scheduled_time = time("scheduled_time", &input.scheduled_time, scheduled_ok);
        let start = time(
            "exception_start_time",
            &input.exception_start_time,
            start_ok,
        );
        let end = time("exception_end_time", &input.exception_end_time, end_ok);
        let exception_window = match (
            input.exception_start_time.is_empty(),
            input.exception_end_time.is_empty(),
        ) {
            (true, true) => None,
            (false, true) => {
                v.add(
                    field("exception_end_time"),
                    "required when exception_start_time is set: give both or neither",
                );
                None
            }
            (true, false) => {
                v.add(
                    field("exception_start_time"),
                    "required when exception_end_time is set: give both or neither",
                );
                None
            }
            (false, false) => match (start, end) {
                (Some(start), Some(end)) if start == end => {
                    v.add(
                        field("exception_end_time"),
                        "must differ from exception_start_time (an empty window)",
                    );
                    None
                }
                (Some(start), Some(end)) => Some(ExceptionWindow { start, end }),
                _ => None,
            },
        };

        let time_zone = match parse_time_zone(&input.time_zone) {
            Ok(tz) => tz,
            Err(e) => {
                if zone_ok {
                    v.add(field("time_zone"), e);
                }
                chrono_tz::UTC
            }
        };

        let rule_start_date = match input.rule_start_date.trim() {
            "" => None,
            text => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .filter(|_| text.len() == 10)
                .map(|date| limits::check_business_date(&field("rule_start_date"), date))
            {
                Some(Ok(date)) => Some(date),
                Some(Err(e)) => {
                    v.extend(e);
                    None
                }
                None => {
                    v.add(field("rule_start_date"), "must be a date YYYY-MM-DD");
                    None
                }
            },
        };

        let recurrence_rule = if input.recurrence_rule.trim().is_empty() || !rule_ok {
            None
        } else if input.frequency == Some(Frequency::Daily) {
            v.add(
                field("recurrence_rule"),
                "must be empty for DAILY: a daily schedule runs every date",
            );
            None
        } else {
            match RecurrenceRule::parse(&input.recurrence_rule).and_then(|rule| {
                let start = rule_start_date.unwrap_or(today);
                rule.check_fires(start, today).map(|()| rule)
            }) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    v.add(field("recurrence_rule"), e);
                    None
                }
            }
        };

        if input.jobs.is_empty() {
            v.add(field("jobs"), "at least one job is required");
        } else if input.jobs.len() > MAX_JOBS {
            v.add(
                field("jobs"),
                format!("at most {MAX_JOBS} jobs; got {}", input.jobs.len()),
            );
        }
        for (i, job) in input.jobs.iter().enumerate().take(MAX_JOBS) {
            if let Some(problem) = limits::JOB_TYPE.problem(&job.job_type) {
                v.add(format!("{prefix}.jobs[{i}].job_type"), problem);
            } else if job.job_type.is_empty() {
                v.add(format!("{prefix}.jobs[{i}].job_type"), "required");
            } else if !known_job_types.contains(&job.job_type) {
                let mut known: Vec<&String> = known_job_types.iter().collect();
                known.sort();
                v.add(
                    format!("{prefix}.jobs[{i}].job_type"),
                    format!(
                        "unknown job type {}; the catalogue has {}",
                        quote(&job.job_type),
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }

        let draft = ConfigDraft {
            name,
            description: input.description,
            frequency: input.frequency.unwrap_or(Frequency::Scheduled),
            scheduled_time,
            exception_window,
            time_zone,
            recurrence_rule,
            jobs: input.jobs,
            automatic_runs_paused: input.automatic_runs_paused,
            rule_start_date,
        };
        v.into_result(draft)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
