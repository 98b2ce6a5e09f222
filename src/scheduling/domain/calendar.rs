//! The calendar of automatic runs: on which business dates a configuration
//! runs, the instant each run starts, and the exception window.
//!
//! Everything here is pure: no I/O and no clock reads. Every function takes
//! the instants it needs, so the scheduler decides what "now" is and tests can
//! use any date.
//!
//! Rules:
//! - A business date is a [`NaiveDate`]. DAILY configurations run on every
//!   date. SCHEDULED configurations run on the dates their recurrence rule
//!   yields; only the date of each occurrence counts.
//! - A SCHEDULED configuration without a recurrence rule or without a
//!   scheduled time has no automatic runs (it runs only when triggered). A
//!   configuration with `automatic_runs_paused` has no automatic runs.
//! - The automatic run of business date D starts at D + scheduled time in the
//!   configuration's IANA time zone; a DAILY configuration without a scheduled
//!   time starts at 00:00:00. When D + time does not exist (spring-forward
//!   gap) the run starts once, at the instant the gap ends; when it exists
//!   twice (fall-back overlap) it starts once, at the earlier instant.
//! - The exception window is in local time of the configuration's zone and
//!   may cross midnight. Inside it nothing starts automatically: a run whose
//!   start falls inside the window is held until [`exception_window_end`].
//!
//! Recurrence is evaluated by the `rrule` crate and time zones by
//! `chrono-tz`; there is no calendar arithmetic of our own.

use chrono::{DateTime, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime};
use chrono::{Offset as _, TimeZone as _, Utc};
use chrono_tz::Tz;

use super::config::{ConfigDraft, Frequency, RecurrenceRule};
use super::limits::{FIRST_BUSINESS_DATE, LAST_BUSINESS_DATE, LAST_INSTANT_SECONDS};

/// How far past `after` [`next_runs`] looks for runs, so that a rule that
/// matches rarely or never cannot make the search run for long.
pub const SEARCH_HORIZON_YEARS: u32 = 10;

/// One automatic run: the business date it is for and when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpcomingRun {
    /// The business date the run processes.
    pub business_date: NaiveDate,
    /// When the run starts (before any hold by the exception window).
    pub start: DateTime<Utc>,
}

/// Whether automatic runs exist at all for this config: not paused, and
/// either DAILY, or SCHEDULED with both a recurrence rule and a scheduled
/// time. Lets the scheduler skip configurations that only run by hand.
pub fn has_automatic_runs(config: &ConfigDraft) -> bool {
    if config.automatic_runs_paused {
        return false;
    }
    match config.frequency {
        Frequency::Daily => true,
        Frequency::Scheduled => config.recurrence_rule.is_some() && config.scheduled_time.is_some(),
    }
}

/// Does the config have an automatic run on business date `date`? DAILY:
/// every date; SCHEDULED: the dates of its recurrence rule. Always false when
/// [`has_automatic_runs`] is false. Answers "is today a run date".
pub fn runs_on(config: &ConfigDraft, date: NaiveDate) -> bool {
    run_dates(config, date).next() == Some(date)
}

/// The UTC instant at which the automatic run of `date` starts: `date` +
/// scheduled time (00:00:00 for DAILY without one) in the config's zone, with
/// the DST rules of the module. `None` when there are no automatic runs or
/// `date` is not a run date. Used to know when a given date's run is due.
pub fn start_of(config: &ConfigDraft, date: NaiveDate) -> Option<DateTime<Utc>> {
    runs_on(config, date)
        .then(|| run_of(config, date))
        .flatten()
        .map(|run| run.start)
}

/// Automatic runs whose start is in `(after, until]`, oldest first, at most
/// `limit`. Used for catch-up after downtime: `after` is when the scheduler
/// last looked, `until` is now.
pub fn runs_between(
    config: &ConfigDraft,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
) -> Vec<UpcomingRun> {
    if until <= after {
        return Vec::new();
    }
    // A start is never earlier than its business date's local day, so every
    // run in range has a date up to the local date of `until`.
    let (Some(first), Some(last)) = (
        first_candidate(config, after),
        local_date(config, until).or_else(|| {
            until
                .checked_sub_signed(max_offset())
                .and_then(|until| local_date(config, until))
        }),
    ) else {
        return Vec::new();
    };
    runs_in(config, first, last)
        .filter(|run| after < run.start && run.start <= until)
        .take(limit)
        .collect()
}

/// The next `count` automatic runs starting strictly after `after`, oldest
/// first (the ListUpcomingRuns RPC). The search stops
/// [`SEARCH_HORIZON_YEARS`] after `after`, so a rule that rarely or never
/// matches returns fewer runs, quickly.
pub fn next_runs(config: &ConfigDraft, after: DateTime<Utc>, count: usize) -> Vec<UpcomingRun> {
    let Some(from) = first_candidate(config, after) else {
        return Vec::new();
    };
    let last = from
        .checked_add_months(Months::new(12 * SEARCH_HORIZON_YEARS))
        .unwrap_or(NaiveDate::MAX);
    runs_in(config, from, last)
        .filter(|run| run.start > after)
        .take(count)
        .collect()
}

/// Whether `at` falls in the config's exception window, read in the config's
/// zone (false when it has none). Inside it no run starts automatically and no
/// new batch is claimed.
pub fn in_exception_window(config: &ConfigDraft, at: DateTime<Utc>) -> bool {
    config
        .exception_window
        .zip(local_time(config.time_zone, at))
        .is_some_and(|(window, local)| window.contains(local.time()))
}

/// When the exception window containing `at` ends: the next instant after
/// `at` at which local time reaches the window's end (the next day when the
/// window crosses midnight and `at` is before midnight). If that local time
/// falls in a DST gap, the end is the instant the gap ends. `None` when `at`
/// is not inside a window. The scheduler holds runs and batch claims until
/// then, and work resumes by itself.
pub fn exception_window_end(config: &ConfigDraft, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let window = config.exception_window?;
    let local = local_time(config.time_zone, at)?;
    if !window.contains(local.time()) {
        return None;
    }
    let end_date = if local.time() < window.end {
        local.date()
    } else {
        local.date().succ_opt()?
    };
    // In a fall-back overlap the end time occurs twice; the window ends at
    // the first occurrence after `at`.
    instants_at(config.time_zone, end_date.and_time(window.end))
        .into_iter()
        .find(|end| *end > at)
}

/// When a run due at `due` really starts: at `due`, or when the exception
/// window containing `due` ends. What the scheduler waits for and what
/// ListUpcomingRuns shows.
pub fn effective_start(config: &ConfigDraft, due: DateTime<Utc>) -> DateTime<Utc> {
    exception_window_end(config, due).unwrap_or(due)
}

/// The instant the scheduler must next look at a configuration whose runs
/// were considered up to `watermark`, at `now`: the effective start of the
/// first run after the watermark, and not before the exception window open
/// at `now` ends. `None` when no automatic run is left.
pub fn next_start(
    config: &ConfigDraft,
    watermark: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let run = next_runs(config, watermark, 1).into_iter().next()?;
    let start = effective_start(config, run.start);
    Some(match exception_window_end(config, now) {
        Some(end) => start.max(end),
        None => start,
    })
}

/// DTSTART of a recurrence rule starting on `start`: that date at 00:00:00
/// UTC (2000-01-01 when there is none, for rows written before rules had a
/// start date). Evaluating in UTC at midnight keeps DST out of the rule (only
/// dates count). The anchor fixes the phase of INTERVAL, the start of COUNT,
/// and the defaults of rules without BYxxx parts (a bare `FREQ=MONTHLY` runs
/// on the anchor's day of the month, a bare `FREQ=WEEKLY` on its weekday).
/// No date before the anchor is a run date.
fn rule_anchor(start: Option<NaiveDate>) -> DateTime<rrule::Tz> {
    let date = start.unwrap_or(NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(NaiveDate::MIN));
    date.and_time(NaiveTime::MIN)
        .and_utc()
        .with_timezone(&rrule::Tz::UTC)
}

/// The dates of `rule` counted from `start` (see `rule_anchor`), from
/// `from` on, ascending, ending where the rule
/// does or where the `rrule` crate's iteration limit gives up (100,000
/// periods without a match). Also used to refuse rules that never fire.
pub fn rule_dates(
    rule: &RecurrenceRule,
    start: Option<NaiveDate>,
    from: NaiveDate,
) -> Box<dyn Iterator<Item = NaiveDate>> {
    match rule.rule().clone().build(rule_anchor(start)) {
        Ok(set) => Box::new(
            (&set.limit())
                .into_iter()
                .map(|occurrence| occurrence.date_naive())
                .skip_while(move |date| *date < from),
        ),
        Err(_) => Box::new(std::iter::empty()),
    }
}

/// The business dates from `from` on with an automatic run, ascending;
/// endless for DAILY. The rule's iterator runs with the crate's iteration
/// limit (it gives up after 100,000 periods without a match), so it ends
/// rather than search forever for a date that never comes; callers bound the
/// dates they take as well.
fn run_dates(config: &ConfigDraft, from: NaiveDate) -> Box<dyn Iterator<Item = NaiveDate>> {
    if !has_automatic_runs(config) {
        return Box::new(std::iter::empty());
    }
    let Some(rule) = &config.recurrence_rule else {
        return Box::new(from.iter_days());
    };
    rule_dates(rule, config.rule_start_date, from)
}

/// The automatic runs of the business dates `first..=last`, oldest first.
fn runs_in(
    config: &ConfigDraft,
    first: NaiveDate,
    last: NaiveDate,
) -> impl Iterator<Item = UpcomingRun> + '_ {
    let first = first.max(FIRST_BUSINESS_DATE);
    let last = last.min(LAST_BUSINESS_DATE);
    run_dates(config, first)
        .take_while(move |date| *date <= last)
        .filter_map(|date| run_of(config, date))
        .filter(|run| run.start.timestamp() <= LAST_INSTANT_SECONDS)
}

/// The run of business date `date`, assuming it is a run date; `None` only
/// when its start is outside the instants chrono can represent.
fn run_of(config: &ConfigDraft, date: NaiveDate) -> Option<UpcomingRun> {
    let time = config.scheduled_time.unwrap_or(NaiveTime::MIN);
    Some(UpcomingRun {
        business_date: date,
        start: *instants_at(config.time_zone, date.and_time(time)).first()?,
    })
}

/// The earliest business date whose run may start after `at`: the day before
/// `at`'s local date, since a run whose time falls in a DST gap may start
/// past its own date. `None` when `at` is past the last local date chrono
/// can represent.
fn first_candidate(config: &ConfigDraft, at: DateTime<Utc>) -> Option<NaiveDate> {
    let date = local_date(config, at)?;
    Some(date.pred_opt().unwrap_or(date))
}

/// The local date of `at` in the config's zone; `None` beyond chrono's range.
fn local_date(config: &ConfigDraft, at: DateTime<Utc>) -> Option<NaiveDate> {
    local_time(config.time_zone, at).map(|t| t.date())
}

/// The wall-clock time of `at` in `tz`; `None` at the edges of chrono's
/// range, where the local time is not representable (chrono's own
/// conversion panics there).
fn local_time(tz: Tz, at: DateTime<Utc>) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&at.naive_utc()).fix();
    at.naive_utc().checked_add_offset(offset)
}

/// A bound on any zone's offset from UTC, to step back from the end of
/// chrono's range.
fn max_offset() -> Duration {
    Duration::days(1)
}

/// The instants at which the clocks of `tz` show `local`, earliest first: one
/// usually, two in a fall-back overlap. In a spring-forward gap, where the
/// clocks never show `local`, the one instant at which the gap ends (the first
/// valid instant after it).
fn instants_at(tz: Tz, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => vec![t.to_utc()],
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.to_utc(), b.to_utc());
            vec![a.min(b), a.max(b)]
        }
        LocalResult::None => gap_end(tz, local).into_iter().collect(),
    }
}

/// The instant at which the DST gap containing the local time `local` ends.
/// The offsets a day before and after bracket the transition; a binary search
/// over whole seconds finds the first instant whose local time is past
/// `local`. `None` at the edges of chrono's range, where a local time has
/// no instant because the instant is not representable.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let as_utc = local.and_utc();
    let offset_at = |t: DateTime<Utc>| {
        i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    };
    let wall_after = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .and_then(|t| local_time(tz, t))
            .is_some_and(|t| t > local)
    };
    let day = Duration::days(1);
    // Before the gap the clock shows less than `local`, after it more.
    let mut before = as_utc.timestamp() - offset_at(as_utc.checked_add_signed(day)?);
    let mut after = as_utc.timestamp() - offset_at(as_utc.checked_sub_signed(day)?);
    while after - before > 1 {
        let mid = before + (after - before) / 2;
        if wall_after(mid) {
            after = mid;
        } else {
            before = mid;
        }
    }
    DateTime::from_timestamp(after, 0)
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;
