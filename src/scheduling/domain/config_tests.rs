//! Unit tests of [`super`] (config.rs).

use super::*;

fn catalogue() -> HashSet<String> {
    ["BILLING", "SYNC_TRANSACTION"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
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
    match ConfigDraft::validate(input, "config", &catalogue(), today()) {
        Err(Error::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
        other => panic!("expected violations, got {other:?}"),
    }
}

#[test]
fn a_minimal_daily_config_is_valid() {
    let draft = ConfigDraft::validate(input(), "config", &catalogue(), today()).unwrap();
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
    let draft = ConfigDraft::validate(scheduled.clone(), "config", &catalogue(), today()).unwrap();
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

#[test]
fn rules_that_never_fire_are_refused() {
    let mut scheduled = input();
    scheduled.frequency = Some(Frequency::Scheduled);
    for bad in [
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;COUNT=0",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;UNTIL=20100101T000000Z",
    ] {
        scheduled.recurrence_rule = bad.into();
        assert_eq!(
            violations(scheduled.clone()),
            ["config.recurrence_rule"],
            "{bad}"
        );
    }
    // Rules count from the configuration's start date (today when none
    // is given), so COUNT and INTERVAL start now.
    for good in [
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "FREQ=YEARLY;INTERVAL=4",
        "FREQ=DAILY;UNTIL=20300101T000000Z",
        "FREQ=DAILY;COUNT=5",
        "FREQ=YEARLY;INTERVAL=50",
    ] {
        scheduled.recurrence_rule = good.into();
        assert!(
            ConfigDraft::validate(scheduled.clone(), "config", &catalogue(), today()).is_ok(),
            "{good}"
        );
    }
    // Counted from a start date long past, five dates are used up.
    scheduled.recurrence_rule = "FREQ=DAILY;COUNT=5".into();
    scheduled.rule_start_date = "2020-01-01".into();
    assert_eq!(violations(scheduled), ["config.recurrence_rule"]);
}

#[test]
fn refusing_a_rule_that_never_fires_is_quick() {
    let rule = RecurrenceRule::parse("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30").unwrap();
    let started = std::time::Instant::now();
    assert!(rule.check_fires(today(), today()).is_err());
    println!("refused in {:?}", started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn texts_follow_the_limits() {
    let mut i = input();
    i.description = "line\nwith\0nul".into();
    assert_eq!(violations(i), ["config.description"]);
    let mut i = input();
    i.description = "d".repeat(1_000_000);
    i.name = "n\0".into();
    i.time_zone = "Z".repeat(10_000);
    i.recurrence_rule = "R".repeat(10_000);
    i.scheduled_time = "\u{1}".into();
    i.jobs[0].job_type = "J".repeat(10_000);
    let fields = violations(i.clone());
    assert_eq!(
        fields,
        [
            "config.name",
            "config.description",
            "config.scheduled_time",
            "config.time_zone",
            "config.recurrence_rule",
            "config.jobs[0].job_type"
        ]
    );
    let Err(Error::InvalidArgument(v)) = ConfigDraft::validate(i, "config", &catalogue(), today())
    else {
        panic!("expected violations");
    };
    for violation in v {
        assert!(violation.description.len() < 200, "{violation:?}");
    }
}

#[test]
fn too_many_jobs_are_refused_without_checking_each() {
    let mut i = input();
    i.jobs = vec![
        JobSpec {
            job_type: "NOPE".into(),
            manual: false,
        };
        100_000
    ];
    let fields = violations(i);
    assert!(fields.len() <= MAX_JOBS + 1, "{}", fields.len());
    assert_eq!(fields[0], "config.jobs");
}
