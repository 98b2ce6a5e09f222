//! Unit tests of [`super`] (calendar.rs).

use super::*;
use crate::scheduling::domain::config::{ExceptionWindow, JobSpec, RecurrenceRule};
use std::str::FromStr;

fn config(frequency: Frequency, time: Option<&str>, zone: &str, rule: Option<&str>) -> ConfigDraft {
    ConfigDraft {
        name: "test".into(),
        description: String::new(),
        frequency,
        scheduled_time: time.map(|t| NaiveTime::from_str(t).unwrap()),
        exception_window: None,
        time_zone: Tz::from_str(zone).unwrap(),
        recurrence_rule: rule.map(|r| RecurrenceRule::parse(r).unwrap()),
        jobs: vec![JobSpec {
            job_type: "BILLING".into(),
            manual: false,
        }],
        automatic_runs_paused: false,
        rule_start_date: None,
    }
}

fn scheduled(rule: &str) -> ConfigDraft {
    config(Frequency::Scheduled, Some("09:00:00"), "UTC", Some(rule))
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::from_str(text).unwrap()
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Business dates of the runs starting from `first` 00:00Z to `last`
/// 23:59:59Z (every date of `first..=last` for runs at 09:00 UTC).
fn dates(config: &ConfigDraft, first: &str, last: &str) -> Vec<NaiveDate> {
    let after = utc(&format!("{first}T00:00:00Z")) - Duration::seconds(1);
    let until = utc(&format!("{last}T23:59:59Z"));
    runs_between(config, after, until, 1000)
        .into_iter()
        .map(|run| run.business_date)
        .collect()
}

fn dates_of(texts: &[&str]) -> Vec<NaiveDate> {
    texts.iter().map(|t| date(t)).collect()
}

#[test]
fn daily_starts_at_local_time_in_utc() {
    let midnight = config(Frequency::Daily, None, "Europe/Berlin", None);
    assert_eq!(
        start_of(&midnight, date("2026-01-10")),
        Some(utc("2026-01-09T23:00:00Z"))
    );
    assert_eq!(
        start_of(&midnight, date("2026-07-10")),
        Some(utc("2026-07-09T22:00:00Z"))
    );
    let late = config(Frequency::Daily, Some("23:30:00"), "Europe/Berlin", None);
    assert_eq!(
        start_of(&late, date("2026-01-10")),
        Some(utc("2026-01-10T22:30:00Z"))
    );
    let kolkata = config(Frequency::Daily, Some("23:30:00"), "Asia/Kolkata", None);
    assert_eq!(
        start_of(&kolkata, date("2026-01-10")),
        Some(utc("2026-01-10T18:00:00Z"))
    );
    let kolkata_midnight = config(Frequency::Daily, Some("00:00:00"), "Asia/Kolkata", None);
    assert_eq!(
        start_of(&kolkata_midnight, date("2026-01-10")),
        Some(utc("2026-01-09T18:30:00Z"))
    );
}

#[test]
fn monthly_on_the_15th() {
    let c = scheduled("FREQ=MONTHLY;BYMONTHDAY=15");
    let expected: Vec<NaiveDate> = (1..=12)
        .map(|m| NaiveDate::from_ymd_opt(2028, m, 15).unwrap())
        .collect();
    assert_eq!(dates(&c, "2028-01-01", "2028-12-31"), expected);
    assert_eq!(
        start_of(&c, date("2028-02-15")),
        Some(utc("2028-02-15T09:00:00Z"))
    );
    assert_eq!(start_of(&c, date("2028-02-16")), None);
}

#[test]
fn monthly_third_last_day_in_leap_and_common_years() {
    let c = scheduled("FREQ=MONTHLY;BYMONTHDAY=-3");
    assert_eq!(
        dates(&c, "2028-01-01", "2028-12-31"),
        dates_of(&[
            "2028-01-29",
            "2028-02-27",
            "2028-03-29",
            "2028-04-28",
            "2028-05-29",
            "2028-06-28",
            "2028-07-29",
            "2028-08-29",
            "2028-09-28",
            "2028-10-29",
            "2028-11-28",
            "2028-12-29",
        ])
    );
    assert_eq!(
        dates(&c, "2027-02-01", "2027-02-28"),
        dates_of(&["2027-02-26"])
    );
    assert!(runs_on(&c, date("2027-02-26")));
    assert!(!runs_on(&c, date("2027-02-27")));
    assert!(runs_on(&c, date("2028-02-27")));
    assert!(!runs_on(&c, date("2028-02-26")));
}

#[test]
fn weekly_on_friday() {
    let c = scheduled("FREQ=WEEKLY;BYDAY=FR");
    assert_eq!(
        dates(&c, "2028-01-01", "2028-02-29"),
        dates_of(&[
            "2028-01-07",
            "2028-01-14",
            "2028-01-21",
            "2028-01-28",
            "2028-02-04",
            "2028-02-11",
            "2028-02-18",
            "2028-02-25",
        ])
    );
    assert!(!runs_on(&c, date("2028-01-06")));
    // Every other Friday: the phase comes from the fixed anchor, so it
    // does not depend on where the search starts.
    let biweekly = scheduled("FREQ=WEEKLY;INTERVAL=2;BYDAY=FR");
    let from_january = next_runs(&biweekly, utc("2028-01-01T00:00:00Z"), 4);
    let from_later = next_runs(&biweekly, from_january[0].start, 3);
    assert_eq!(from_january[1..], from_later);
    assert_eq!(
        from_january[1].business_date - from_january[0].business_date,
        Duration::days(14)
    );
}

#[test]
fn quarter_end_and_year_end() {
    let quarter = scheduled("FREQ=MONTHLY;BYMONTH=3,6,9,12;BYMONTHDAY=-1");
    assert_eq!(
        dates(&quarter, "2027-12-01", "2028-12-31"),
        dates_of(&[
            "2027-12-31",
            "2028-03-31",
            "2028-06-30",
            "2028-09-30",
            "2028-12-31"
        ])
    );
    let year_end = scheduled("FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31");
    assert_eq!(
        dates(&year_end, "2026-01-01", "2028-12-31"),
        dates_of(&["2026-12-31", "2027-12-31", "2028-12-31"])
    );
    let february_end = scheduled("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1");
    assert_eq!(
        dates(&february_end, "2027-01-01", "2028-12-31"),
        dates_of(&["2027-02-28", "2028-02-29"])
    );
}

#[test]
fn a_time_in_the_spring_forward_gap_runs_once_when_the_gap_ends() {
    let c = config(Frequency::Daily, Some("02:30:00"), "America/New_York", None);
    assert_eq!(
        start_of(&c, date("2026-03-08")),
        Some(utc("2026-03-08T07:00:00Z"))
    );
    // The local day 2026-03-08 runs from 05:00Z to 04:00Z next day.
    let day = runs_between(
        &c,
        utc("2026-03-08T05:00:00Z"),
        utc("2026-03-09T04:00:00Z"),
        10,
    );
    assert_eq!(
        day,
        [UpcomingRun {
            business_date: date("2026-03-08"),
            start: utc("2026-03-08T07:00:00Z"),
        }]
    );
    let around = runs_between(
        &c,
        utc("2026-03-07T00:00:00Z"),
        utc("2026-03-10T00:00:00Z"),
        10,
    );
    let starts: Vec<_> = around.iter().map(|r| r.start).collect();
    assert_eq!(
        starts,
        [
            utc("2026-03-07T07:30:00Z"),
            utc("2026-03-08T07:00:00Z"),
            utc("2026-03-09T06:30:00Z")
        ]
    );
}

#[test]
fn a_time_in_the_fall_back_overlap_runs_once_at_the_earlier_instant() {
    let c = config(Frequency::Daily, Some("01:30:00"), "America/New_York", None);
    assert_eq!(
        start_of(&c, date("2026-11-01")),
        Some(utc("2026-11-01T05:30:00Z"))
    );
    // Both 05:30Z (EDT) and 06:30Z (EST) read 01:30 locally.
    let day = runs_between(
        &c,
        utc("2026-11-01T04:00:00Z"),
        utc("2026-11-02T05:00:00Z"),
        10,
    );
    assert_eq!(
        day,
        [UpcomingRun {
            business_date: date("2026-11-01"),
            start: utc("2026-11-01T05:30:00Z"),
        }]
    );
}

#[test]
fn exception_window_crossing_midnight() {
    let mut c = config(Frequency::Daily, None, "Europe/Berlin", None);
    assert!(!in_exception_window(&c, utc("2026-01-15T22:00:00Z")));
    assert_eq!(exception_window_end(&c, utc("2026-01-15T22:00:00Z")), None);
    c.exception_window = Some(ExceptionWindow {
        start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        end: NaiveTime::from_hms_opt(2, 0, 0).unwrap(),
    });
    // Berlin is UTC+1 in January.
    for (at, inside) in [
        ("2026-01-15T12:00:00Z", false),
        ("2026-01-15T20:59:59Z", false),
        ("2026-01-15T21:00:00Z", true),
        ("2026-01-15T22:00:00Z", true),
        ("2026-01-15T23:30:00Z", true),
        ("2026-01-16T00:59:59Z", true),
        ("2026-01-16T01:00:00Z", false),
    ] {
        assert_eq!(in_exception_window(&c, utc(at)), inside, "{at}");
    }
    // Before local midnight: ends at 02:00 the next local day.
    assert_eq!(
        exception_window_end(&c, utc("2026-01-15T22:00:00Z")),
        Some(utc("2026-01-16T01:00:00Z"))
    );
    // After local midnight: ends at 02:00 the same local day.
    assert_eq!(
        exception_window_end(&c, utc("2026-01-16T00:30:00Z")),
        Some(utc("2026-01-16T01:00:00Z"))
    );
    assert_eq!(exception_window_end(&c, utc("2026-01-16T01:00:00Z")), None);
    assert_eq!(exception_window_end(&c, utc("2026-01-15T12:00:00Z")), None);
}

#[test]
fn exception_window_ending_in_a_dst_gap_or_overlap() {
    let mut c = config(Frequency::Daily, None, "America/New_York", None);
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
    c.exception_window = Some(ExceptionWindow {
        start: t(22, 0),
        end: t(2, 30),
    });
    // 23:00 EST on 2026-03-07; 02:30 on 2026-03-08 does not exist: the
    // window ends when the gap does, at 03:00 EDT.
    assert_eq!(
        exception_window_end(&c, utc("2026-03-08T04:00:00Z")),
        Some(utc("2026-03-08T07:00:00Z"))
    );
    c.exception_window = Some(ExceptionWindow {
        start: t(0, 30),
        end: t(1, 30),
    });
    // 01:00 EDT: ends at 01:30 EDT.
    assert_eq!(
        exception_window_end(&c, utc("2026-11-01T05:00:00Z")),
        Some(utc("2026-11-01T05:30:00Z"))
    );
    // 01:15 EST, the second pass: ends at 01:30 EST.
    assert!(in_exception_window(&c, utc("2026-11-01T06:15:00Z")));
    assert_eq!(
        exception_window_end(&c, utc("2026-11-01T06:15:00Z")),
        Some(utc("2026-11-01T06:30:00Z"))
    );
}

#[test]
fn catch_up_after_a_three_day_outage_is_oldest_first() {
    // 01:00 CEST is 23:00Z the evening before.
    let c = config(Frequency::Daily, Some("01:00:00"), "Europe/Berlin", None);
    let after = utc("2026-04-01T12:00:00Z");
    let until = utc("2026-04-04T12:00:00Z");
    let run = |d, start| UpcomingRun {
        business_date: date(d),
        start: utc(start),
    };
    let expected = [
        run("2026-04-02", "2026-04-01T23:00:00Z"),
        run("2026-04-03", "2026-04-02T23:00:00Z"),
        run("2026-04-04", "2026-04-03T23:00:00Z"),
    ];
    assert_eq!(runs_between(&c, after, until, 10), expected);
    assert_eq!(runs_between(&c, after, until, 2), expected[..2]);
    // The interval is open at `after` and closed at `until`.
    assert_eq!(
        runs_between(
            &c,
            utc("2026-04-01T23:00:00Z"),
            utc("2026-04-03T23:00:00Z"),
            10
        ),
        expected[1..]
    );
    assert!(runs_between(&c, until, after, 10).is_empty());
}

#[test]
fn next_runs_are_strictly_after() {
    let c = scheduled("FREQ=MONTHLY;BYMONTHDAY=15");
    let next: Vec<_> = next_runs(&c, utc("2026-01-15T09:00:00Z"), 3)
        .into_iter()
        .map(|r| r.start)
        .collect();
    assert_eq!(
        next,
        [
            utc("2026-02-15T09:00:00Z"),
            utc("2026-03-15T09:00:00Z"),
            utc("2026-04-15T09:00:00Z")
        ]
    );
}

#[test]
fn next_runs_of_a_rule_that_never_matches_ends_quickly() {
    for rule in [
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
    ] {
        let c = scheduled(rule);
        let started = std::time::Instant::now();
        assert!(next_runs(&c, utc("2026-01-01T00:00:00Z"), 5).is_empty());
        assert!(!runs_on(&c, date("2026-02-28")));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{rule} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn no_automatic_runs_without_rule_or_time_or_when_paused() {
    let no_rule = config(Frequency::Scheduled, Some("09:00:00"), "UTC", None);
    let no_time = config(
        Frequency::Scheduled,
        None,
        "UTC",
        Some("FREQ=MONTHLY;BYMONTHDAY=15"),
    );
    let mut paused = config(Frequency::Daily, Some("09:00:00"), "UTC", None);
    paused.automatic_runs_paused = true;
    let after = utc("2026-01-01T00:00:00Z");
    for c in [no_rule, no_time, paused] {
        assert!(!has_automatic_runs(&c));
        assert!(!runs_on(&c, date("2026-01-15")));
        assert_eq!(start_of(&c, date("2026-01-15")), None);
        assert!(next_runs(&c, after, 5).is_empty());
        assert!(runs_between(&c, after, utc("2026-03-01T00:00:00Z"), 5).is_empty());
    }
    assert!(has_automatic_runs(&config(
        Frequency::Daily,
        None,
        "UTC",
        None
    )));
}

#[test]
fn extreme_instants_do_not_panic() {
    let first =
        DateTime::from_timestamp(crate::scheduling::domain::limits::FIRST_INSTANT_SECONDS, 0)
            .unwrap();
    let last = DateTime::from_timestamp(
        crate::scheduling::domain::limits::LAST_INSTANT_SECONDS,
        999_999_999,
    )
    .unwrap();
    for zone in [
        "Asia/Tokyo",
        "America/New_York",
        "Pacific/Kiritimati",
        "UTC",
    ] {
        for c in [
            config(Frequency::Daily, None, zone, None),
            config(Frequency::Daily, Some("02:30:00"), zone, None),
            config(
                Frequency::Scheduled,
                Some("09:00:00"),
                zone,
                Some("FREQ=MONTHLY;BYMONTHDAY=-1"),
            ),
        ] {
            for at in [
                first,
                last,
                DateTime::<Utc>::MIN_UTC,
                DateTime::<Utc>::MAX_UTC,
            ] {
                let runs = next_runs(&c, at, 5);
                assert!(runs.iter().all(|r| r.business_date <= LAST_BUSINESS_DATE));
                let _ = runs_between(&c, at, DateTime::<Utc>::MAX_UTC, 2);
                let _ = in_exception_window(&c, at);
                let _ = exception_window_end(&c, at);
            }
            let _ = start_of(&c, NaiveDate::MIN);
            let _ = start_of(&c, NaiveDate::MAX);
            let _ = gap_end(c.time_zone, NaiveDateTime::MAX);
            let _ = gap_end(c.time_zone, NaiveDateTime::MIN);
        }
    }
}

#[test]
fn the_last_business_date_bounds_upcoming_runs() {
    let c = config(Frequency::Daily, Some("09:00:00"), "Asia/Tokyo", None);
    let runs = next_runs(&c, utc("9999-12-29T00:00:00Z"), 10);
    let dates: Vec<_> = runs.iter().map(|r| r.business_date).collect();
    assert_eq!(dates, dates_of(&["9999-12-30", "9999-12-31"]));
}
