//! Job schedule configurations: what a client's schedule runs and when, and
//! the rules a configuration must satisfy before it is stored.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{NaiveTime, TimeZone as _};
use serde::{Deserialize, Serialize};

use super::error::{Error, Violations};
use super::time_of_day;

/// Longest accepted configuration name.
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted description.
pub const MAX_DESCRIPTION_LEN: usize = 2000;
/// Most jobs one configuration may list.
pub const MAX_JOBS: usize = 50;

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

/// A validated RFC 5545 recurrence rule for the dates of a SCHEDULED
/// configuration. Only whole dates count: the rule's FREQ is DAILY or coarser
/// and it has no BYHOUR, BYMINUTE or BYSECOND.
#[derive(Debug, Clone)]
pub struct RecurrenceRule {
    text: String,
    rule: rrule::RRule<rrule::Unvalidated>,
}

impl PartialEq for RecurrenceRule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl RecurrenceRule {
    /// Parses a rule such as `FREQ=MONTHLY;BYMONTHDAY=-3` (an `RRULE:` prefix is
    /// accepted and dropped).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let body = trimmed
            .strip_prefix("RRULE:")
            .unwrap_or(trimmed)
            .to_string();
        if body.contains('\n') || body.to_ascii_uppercase().contains("DTSTART") {
            return Err("give only the RRULE part (no DTSTART)".into());
        }
        let rule = rrule::RRule::<rrule::Unvalidated>::from_str(&body)
            .map_err(|e| format!("not a valid RFC 5545 RRULE: {e}"))?;
        if matches!(
            rule.get_freq(),
            rrule::Frequency::Hourly | rrule::Frequency::Minutely | rrule::Frequency::Secondly
        ) {
            return Err("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY: runs are per date".into());
        }
        if !rule.get_by_hour().is_empty()
            || !rule.get_by_minute().is_empty()
            || !rule.get_by_second().is_empty()
        {
            return Err("BYHOUR, BYMINUTE and BYSECOND are not allowed: use scheduled_time".into());
        }
        let anchor = chrono::Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .expect("fixed date")
            .with_timezone(&rrule::Tz::UTC);
        rule.clone()
            .validate(anchor)
            .map_err(|e| format!("not a valid RFC 5545 RRULE: {e}"))?;
        Ok(Self { text: body, rule })
    }

    /// The rule as stored, without `RRULE:`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed rule, for calendar computations.
    pub fn rule(&self) -> &rrule::RRule<rrule::Unvalidated> {
        &self.rule
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
    chrono_tz::Tz::from_str(text)
        .map_err(|_| format!("{text:?} is not an IANA time zone (e.g. America/New_York)"))
}

impl ConfigDraft {
    /// Checks every rule of a configuration. `prefix` is the path of the
    /// configuration in the request (e.g. `config`), so violations name the
    /// exact field. `known_job_types` is the catalogue.
    pub fn validate(
        input: ConfigInput,
        prefix: &str,
        known_job_types: &HashSet<String>,
    ) -> Result<Self, Error> {
        let mut v = Violations::default();
        let field = |name: &str| format!("{prefix}.{name}");

        let name = input.name.trim().to_string();
        if name.is_empty() {
            v.add(field("name"), "required: give the configuration a name");
        } else if name.chars().count() > MAX_NAME_LEN {
            v.add(field("name"), format!("at most {MAX_NAME_LEN} characters"));
        } else if name.chars().any(char::is_control) {
            v.add(field("name"), "must not contain control characters");
        }
        if input.description.chars().count() > MAX_DESCRIPTION_LEN {
            v.add(
                field("description"),
                format!("at most {MAX_DESCRIPTION_LEN} characters"),
            );
        }
        if input.frequency.is_none() {
            v.add(field("frequency"), "required: DAILY or SCHEDULED");
        }

        let mut time = |name: &str, text: &str| -> Option<NaiveTime> {
            if text.is_empty() {
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
        let scheduled_time = time("scheduled_time", &input.scheduled_time);
        let start = time("exception_start_time", &input.exception_start_time);
        let end = time("exception_end_time", &input.exception_end_time);
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
                v.add(field("time_zone"), e);
                chrono_tz::UTC
            }
        };

        let recurrence_rule = if input.recurrence_rule.trim().is_empty() {
            None
        } else if input.frequency == Some(Frequency::Daily) {
            v.add(
                field("recurrence_rule"),
                "must be empty for DAILY: a daily schedule runs every date",
            );
            None
        } else {
            match RecurrenceRule::parse(&input.recurrence_rule) {
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
            v.add(field("jobs"), format!("at most {MAX_JOBS} jobs"));
        }
        for (i, job) in input.jobs.iter().enumerate() {
            if job.job_type.is_empty() {
                v.add(format!("{prefix}.jobs[{i}].job_type"), "required");
            } else if !known_job_types.contains(&job.job_type) {
                let mut known: Vec<&String> = known_job_types.iter().collect();
                known.sort();
                v.add(
                    format!("{prefix}.jobs[{i}].job_type"),
                    format!(
                        "unknown job type {:?}; the catalogue has {}",
                        job.job_type,
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }

        let rule_start_date = match input.rule_start_date.trim() {
            "" => None,
            text => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(date) => Some(date),
                Err(_) => {
                    v.add(field("rule_start_date"), "must be a date YYYY-MM-DD");
                    None
                }
            },
        };

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
mod tests {
    use super::*;

    fn catalogue() -> HashSet<String> {
        ["BILLING", "SYNC_TRANSACTION"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn input() -> ConfigInput {
        ConfigInput {
            name: "eod".into(),
            frequency: Some(Frequency::Daily),
            jobs: vec![JobSpec {
                job_type: "BILLING".into(),
                manual: false,
            }],
            ..Default::default()
        }
    }

    fn violations(input: ConfigInput) -> Vec<String> {
        match ConfigDraft::validate(input, "config", &catalogue()) {
            Err(Error::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_daily_config_is_valid() {
        let draft = ConfigDraft::validate(input(), "config", &catalogue()).unwrap();
        assert_eq!(draft.time_zone, chrono_tz::UTC);
        assert_eq!(draft.frequency, Frequency::Daily);
        assert!(draft.exception_window.is_none());
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let bad = ConfigInput {
            name: "  ".into(),
            frequency: None,
            scheduled_time: "25:00:00".into(),
            exception_start_time: "22:00:00".into(),
            time_zone: "Mars/Olympus".into(),
            jobs: vec![JobSpec {
                job_type: "NOPE".into(),
                manual: false,
            }],
            ..Default::default()
        };
        assert_eq!(
            violations(bad),
            [
                "config.name",
                "config.frequency",
                "config.scheduled_time",
                "config.exception_end_time",
                "config.time_zone",
                "config.jobs[0].job_type"
            ]
        );
    }

    #[test]
    fn daily_refuses_a_recurrence_rule_and_scheduled_validates_it() {
        let mut daily = input();
        daily.recurrence_rule = "FREQ=MONTHLY;BYMONTHDAY=15".into();
        assert_eq!(violations(daily), ["config.recurrence_rule"]);

        let mut scheduled = input();
        scheduled.frequency = Some(Frequency::Scheduled);
        scheduled.recurrence_rule = "RRULE:FREQ=MONTHLY;BYMONTHDAY=-3".into();
        let draft = ConfigDraft::validate(scheduled.clone(), "config", &catalogue()).unwrap();
        assert_eq!(
            draft.recurrence_rule.unwrap().as_str(),
            "FREQ=MONTHLY;BYMONTHDAY=-3"
        );

        for bad in [
            "FREQ=HOURLY",
            "FREQ=DAILY;BYHOUR=3",
            "FREQ=SOMETIMES",
            "BYMONTHDAY=40",
        ] {
            scheduled.recurrence_rule = bad.into();
            assert_eq!(
                violations(scheduled.clone()),
                ["config.recurrence_rule"],
                "{bad}"
            );
        }
    }

    #[test]
    fn exception_window_may_cross_midnight() {
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
        let night = ExceptionWindow {
            start: t(22),
            end: t(2),
        };
        assert!(night.contains(t(23)) && night.contains(t(0)) && night.contains(t(1)));
        assert!(!night.contains(t(2)) && !night.contains(t(12)) && !night.contains(t(21)));
        let day = ExceptionWindow {
            start: t(9),
            end: t(17),
        };
        assert!(day.contains(t(9)) && day.contains(t(16)));
        assert!(!day.contains(t(17)) && !day.contains(t(8)));
    }

    #[test]
    fn an_empty_exception_window_is_refused() {
        let mut i = input();
        i.exception_start_time = "10:00:00".into();
        i.exception_end_time = "10:00:00".into();
        assert_eq!(violations(i), ["config.exception_end_time"]);
    }

    #[test]
    fn no_jobs_is_refused() {
        let mut i = input();
        i.jobs.clear();
        assert_eq!(violations(i), ["config.jobs"]);
    }
}
