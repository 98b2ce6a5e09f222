//! Automatic runs: start instants in the client's zone, DST, exception
//! windows, catch-up, exactly-once across processes, pause/resume, and one
//! real-clock run.

use std::sync::Arc;
use std::time::Duration;

use allegro_scheduler::clock::ManualClock;
use allegro_scheduler::proto::v1 as pb;
use chrono::{DateTime, NaiveDate, Utc};

use crate::executions::{counts, finished, phase, status};
use crate::support::*;
use crate::test_jobs;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

struct Sched {
    server: TestServer,
    clock: ManualClock,
}

async fn start(now: &str) -> Sched {
    start_on(&fresh_database().await, ManualClock::new(at(now)), 24).await
}

async fn start_on(url: &str, clock: ManualClock, catch_up_hours: u64) -> Sched {
    let mut settings = test_settings(url);
    settings.catch_up_hours = catch_up_hours;
    settings.batch_size = 5;
    let (registry, _) = test_jobs::registry();
    let server = TestServer::start_with_clock(settings, registry, Arc::new(clock.clone())).await;
    Sched { server, clock }
}

impl Sched {
    async fn config(&self, client: &str, config: pb::JobScheduleConfig) -> String {
        self.server.create_config(client, config).await
    }

    async fn tick_at(
        &self,
        now: &str,
    ) -> allegro_scheduler::scheduling::engine::scheduler::TickReport {
        self.clock.set(at(now));
        self.server.server.engine.schedule_tick().await.unwrap()
    }

    async fn executions(&self, client: &str, config_id: &str) -> Vec<pb::Execution> {
        self.server
            .executions()
            .list_executions(pb::ListExecutionsRequest {
                client_id: client.into(),
                config_id: config_id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .executions
    }

    async fn upcoming(
        &self,
        client: &str,
        config_id: &str,
        after: &str,
        count: i32,
    ) -> Vec<(String, DateTime<Utc>)> {
        let t = at(after);
        self.server
            .configs()
            .list_upcoming_runs(pb::ListUpcomingRunsRequest {
                client_id: client.into(),
                config_id: config_id.into(),
                count,
                after: Some(prost_types::Timestamp {
                    seconds: t.timestamp(),
                    nanos: 0,
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .runs
            .into_iter()
            .map(|r| {
                let s = r.start_time.unwrap();
                (
                    r.business_date,
                    DateTime::from_timestamp(s.seconds, s.nanos as u32).unwrap(),
                )
            })
            .collect()
    }
}

fn config(
    frequency: pb::Frequency,
    time: &str,
    zone: &str,
    rule: &str,
    jobs: &[&str],
) -> pb::JobScheduleConfig {
    pb::JobScheduleConfig {
        name: format!("{time}-{zone}-{rule}"),
        frequency: frequency as i32,
        scheduled_time: time.into(),
        time_zone: zone.into(),
        recurrence_rule: rule.into(),
        ..daily("x", jobs)
    }
}

#[tokio::test]
async fn daily_runs_start_at_their_local_time_in_the_clients_zone() {
    let s = start("2026-11-24T12:00:00Z").await;
    // 23:30 in Kolkata (+05:30) is 18:00 UTC.
    let kolkata = s
        .config(
            CLIENT,
            config(
                pb::Frequency::Daily,
                "23:30:00",
                "Asia/Kolkata",
                "",
                &["EMPTY"],
            ),
        )
        .await;
    // No time: midnight in Berlin (+01:00 in November) is 23:00 UTC the day before.
    let berlin = s
        .config(
            "globex",
            config(pb::Frequency::Daily, "", "Europe/Berlin", "", &["EMPTY"]),
        )
        .await;

    let early = s.tick_at("2026-11-24T17:59:59Z").await;
    assert!(early.started.is_empty());
    let report = s.tick_at("2026-11-24T18:00:00Z").await;
    assert_eq!(report.started.len(), 1);
    assert_eq!(report.started[0].1, date("2026-11-24"));
    assert!(
        s.tick_at("2026-11-24T18:00:05Z").await.started.is_empty(),
        "once"
    );
    let runs = s.executions(CLIENT, &kolkata).await;
    assert_eq!(runs.len(), 1);
    assert!(runs[0].automatic);

    assert!(s.tick_at("2026-11-24T22:59:59Z").await.started.is_empty());
    let midnight = s.tick_at("2026-11-24T23:00:00Z").await;
    assert_eq!(
        midnight.started,
        [(berlin.parse().unwrap(), date("2026-11-25"))]
    );

    // The daily run with no work items completes by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let e = &s.executions("globex", &berlin).await[0];
        if finished(e) {
            assert_eq!(status(e), pb::Status::Completed);
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let actions = s
        .server
        .executions()
        .list_execution_actions(pb::ListExecutionActionsRequest {
            client_id: "globex".into(),
            config_id: berlin.clone(),
            business_date: "2026-11-25".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .actions;
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].actor, "scheduler");
    s.server.stop().await;
}

#[tokio::test]
async fn scheduled_rules_over_a_leap_year_and_dst_days() {
    let s = start("2026-11-24T12:00:00Z").await;
    let fifteenth = s
        .config(
            CLIENT,
            config(
                pb::Frequency::Scheduled,
                "06:00:00",
                "UTC",
                "FREQ=MONTHLY;BYMONTHDAY=15",
                &["EMPTY"],
            ),
        )
        .await;
    let runs = s
        .upcoming(CLIENT, &fifteenth, "2027-12-31T00:00:00Z", 12)
        .await;
    let dates: Vec<&str> = runs.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        dates,
        [
            "2028-01-15",
            "2028-02-15",
            "2028-03-15",
            "2028-04-15",
            "2028-05-15",
            "2028-06-15",
            "2028-07-15",
            "2028-08-15",
            "2028-09-15",
            "2028-10-15",
            "2028-11-15",
            "2028-12-15"
        ]
    );
    assert_eq!(runs[0].1, at("2028-01-15T06:00:00Z"));

    // Two days before month end: the third-last day.
    let month_end = s
        .config(
            CLIENT,
            config(
                pb::Frequency::Scheduled,
                "20:00:00",
                "UTC",
                "FREQ=MONTHLY;BYMONTHDAY=-3",
                &["EMPTY"],
            ),
        )
        .await;
    let runs = s
        .upcoming(CLIENT, &month_end, "2028-01-31T00:00:00Z", 3)
        .await;
    let dates: Vec<&str> = runs.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        dates,
        ["2028-02-27", "2028-03-29", "2028-04-28"],
        "leap February"
    );
    let runs = s
        .upcoming(CLIENT, &month_end, "2027-01-31T00:00:00Z", 1)
        .await;
    assert_eq!(runs[0].0, "2027-02-26", "common February");

    // 02:30 in New York does not exist on 2026-03-08: once, at 03:00 EDT.
    // (The rule counts from its start date: these two start in January.)
    let from_january = |c: pb::JobScheduleConfig| pb::JobScheduleConfig {
        rule_start_date: "2026-01-01".into(),
        ..c
    };
    let gap = s
        .config(
            CLIENT,
            from_january(config(
                pb::Frequency::Scheduled,
                "02:30:00",
                "America/New_York",
                "FREQ=DAILY",
                &["EMPTY"],
            )),
        )
        .await;
    let runs = s.upcoming(CLIENT, &gap, "2026-03-07T12:00:00Z", 2).await;
    assert_eq!(
        runs[0],
        ("2026-03-08".to_string(), at("2026-03-08T07:00:00Z"))
    );
    assert_eq!(
        runs[1],
        ("2026-03-09".to_string(), at("2026-03-09T06:30:00Z"))
    );
    // 01:30 happens twice on 2026-11-01: once, at the first (EDT) instant.
    let overlap = s
        .config(
            CLIENT,
            from_january(config(
                pb::Frequency::Scheduled,
                "01:30:00",
                "America/New_York",
                "FREQ=DAILY",
                &["EMPTY"],
            )),
        )
        .await;
    let runs = s
        .upcoming(CLIENT, &overlap, "2026-10-31T12:00:00Z", 2)
        .await;
    assert_eq!(
        runs[0],
        ("2026-11-01".to_string(), at("2026-11-01T05:30:00Z"))
    );
    assert_eq!(
        runs[1],
        ("2026-11-02".to_string(), at("2026-11-02T06:30:00Z"))
    );

    // A SCHEDULED configuration without a rule has no automatic runs.
    let manual_only = s
        .config(
            CLIENT,
            config(pb::Frequency::Scheduled, "06:00:00", "UTC", "", &["EMPTY"]),
        )
        .await;
    assert!(s
        .upcoming(CLIENT, &manual_only, "2026-11-24T00:00:00Z", 5)
        .await
        .is_empty());
    s.server.stop().await;
}

#[tokio::test]
async fn a_dst_overlap_day_starts_once_by_the_scheduler() {
    let s = start("2026-10-31T12:00:00Z").await;
    let overlap = s
        .config(
            CLIENT,
            config(
                pb::Frequency::Scheduled,
                "01:30:00",
                "America/New_York",
                "FREQ=DAILY",
                &["EMPTY"],
            ),
        )
        .await;
    let mut started = Vec::new();
    // Tick through the night every 15 minutes (covers both 01:30s).
    let mut t = at("2026-11-01T04:00:00Z");
    while t <= at("2026-11-01T08:00:00Z") {
        started.extend(s.tick_at(&t.to_rfc3339()).await.started);
        t += chrono::Duration::minutes(15);
    }
    assert_eq!(started, [(overlap.parse().unwrap(), date("2026-11-01"))]);
    s.server.stop().await;
}

#[tokio::test]
async fn an_exception_window_across_midnight_holds_starts_and_running_work() {
    let s = start("2026-11-24T12:00:00Z").await;
    let mut c = config(pb::Frequency::Daily, "23:30:00", "UTC", "", &["EMPTY"]);
    c.exception_start_time = "23:00:00".into();
    c.exception_end_time = "01:00:00".into();
    let id = s.config(CLIENT, c).await;
    let held = s.tick_at("2026-11-24T23:31:00Z").await;
    assert_eq!((held.started.len(), held.held), (0, 1));
    assert!(s.executions(CLIENT, &id).await.is_empty());
    // Held until the window ends: the configuration is not due before, so
    // a tick inside the window does not even look at it.
    assert_eq!(s.tick_at("2026-11-25T00:30:00Z").await, Default::default());
    let released = s.tick_at("2026-11-25T01:00:01Z").await;
    assert_eq!(
        released.started,
        [(id.parse().unwrap(), date("2026-11-24"))]
    );

    // Work already running when a window opens is paused, then resumes.
    let mut slow = config(pb::Frequency::Scheduled, "", "UTC", "", &["SLOW"]);
    slow.exception_start_time = "23:00:00".into();
    slow.exception_end_time = "01:00:00".into();
    let slow_id = s.config(CLIENT, slow).await;
    s.clock.set(at("2026-11-25T22:50:00Z"));
    s.server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: CLIENT.into(),
            config_id: slow_id.clone(),
            business_date: "2026-11-25".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let get = || async {
        s.server
            .executions()
            .get_execution(pb::GetExecutionRequest {
                client_id: CLIENT.into(),
                config_id: slow_id.clone(),
                business_date: "2026-11-25".into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while counts(&get().await, 1).2 == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let paused = s.tick_at("2026-11-25T23:00:01Z").await;
    assert_eq!(paused.paused, 1);
    let e = get().await;
    assert_eq!(phase(&e), pb::ExecutionPhase::PausedByWindow);
    // Batches in flight settle; no new one is claimed.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let settled = counts(&get().await, 1).2;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = get().await;
    assert_eq!(
        counts(&later, 1).2,
        settled,
        "nothing claimed inside the window"
    );
    assert!(settled < 60);
    let resumed = s.tick_at("2026-11-26T01:00:00Z").await;
    assert_eq!(resumed.resumed, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let e = get().await;
        if finished(&e) {
            assert_eq!(counts(&e, 1), (60, 0, 60, 0));
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.server.stop().await;
}

#[tokio::test]
async fn catch_up_after_an_outage_runs_recent_days_oldest_first_and_lists_older_as_missed() {
    let url = fresh_database().await;
    let s = start_on(&url, ManualClock::new(at("2026-11-20T12:00:00Z")), 72).await;
    let id = s
        .config(
            CLIENT,
            config(pb::Frequency::Daily, "02:00:00", "UTC", "", &["EMPTY"]),
        )
        .await;
    // Down from 2026-11-20 12:00 to 2026-11-24 03:00.
    let report = s.tick_at("2026-11-24T03:00:00Z").await;
    let config_id = id.parse().unwrap();
    assert_eq!(
        report.started,
        [
            (config_id, date("2026-11-22")),
            (config_id, date("2026-11-23")),
            (config_id, date("2026-11-24"))
        ],
        "oldest first, within 72 hours"
    );
    assert_eq!(report.missed, [(config_id, date("2026-11-21"))]);
    let runs = s.executions(CLIENT, &id).await;
    let missed = runs
        .iter()
        .find(|e| e.business_date == "2026-11-21")
        .unwrap();
    assert_eq!(phase(missed), pb::ExecutionPhase::Missed);
    assert_eq!(status(missed), pb::Status::Pending);
    // A later tick does nothing more.
    let again = s.tick_at("2026-11-24T03:00:10Z").await;
    assert!(again.started.is_empty() && again.missed.is_empty());
    s.server.stop().await;
}

#[tokio::test]
async fn automatic_runs_can_be_switched_off_and_on() {
    let s = start("2026-11-24T12:00:00Z").await;
    let mut c = config(pb::Frequency::Daily, "13:00:00", "UTC", "", &["EMPTY"]);
    c.automatic_runs_paused = true;
    let id = s.config(CLIENT, c).await;
    assert!(s.tick_at("2026-11-24T13:30:00Z").await.started.is_empty());
    assert!(s.executions(CLIENT, &id).await.is_empty());
    s.clock.set(at("2026-11-25T09:00:00Z"));
    s.server
        .configs()
        .update_job_schedule_config(pb::UpdateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: Some(pb::JobScheduleConfig {
                config_id: id.clone(),
                automatic_runs_paused: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["automatic_runs_paused".into()],
            }),
        })
        .await
        .unwrap();
    // The paused day is not caught up; the next one runs.
    assert!(s.tick_at("2026-11-25T12:59:00Z").await.started.is_empty());
    let report = s.tick_at("2026-11-25T13:00:00Z").await;
    assert_eq!(report.started, [(id.parse().unwrap(), date("2026-11-25"))]);
    s.server.stop().await;
}

#[tokio::test]
async fn two_processes_racing_create_each_run_once() {
    let url = fresh_database().await;
    let clock = ManualClock::new(at("2026-11-24T12:00:00Z"));
    let a = start_on(&url, clock.clone(), 72).await;
    let b = start_on(&url, clock.clone(), 72).await;
    let id = a
        .config(
            CLIENT,
            config(pb::Frequency::Daily, "02:00:00", "UTC", "", &["EMPTY"]),
        )
        .await;
    clock.set(at("2026-11-27T03:00:00Z"));
    let (ra, rb) = tokio::join!(
        a.server.server.engine.schedule_tick(),
        b.server.server.engine.schedule_tick()
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut all: Vec<_> = ra
        .started
        .iter()
        .chain(rb.started.iter())
        .cloned()
        .collect();
    all.sort();
    let config_id = id.parse().unwrap();
    assert_eq!(
        all,
        [
            (config_id, date("2026-11-25")),
            (config_id, date("2026-11-26")),
            (config_id, date("2026-11-27"))
        ],
        "each run created by exactly one process"
    );
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = db
        .query_one(
            "SELECT count(*), (SELECT count(*) FROM execution_actions WHERE kind = 'PROCESS') FROM executions",
            &[],
        )
        .await
        .unwrap();
    let (executions, starts): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((executions, starts), (3, 3));
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_run_scheduled_seconds_ahead_starts_by_itself_on_the_real_clock() {
    let url = fresh_database().await;
    let mut settings = test_settings(&url);
    settings.scheduler = true;
    settings.scheduler_tick_ms = 100;
    let (registry, _) = test_jobs::registry();
    let server = TestServer::start_with(settings, registry).await;
    let start = Utc::now() + chrono::Duration::seconds(3);
    let time = start.format("%H:%M:%S").to_string();
    let mut scheduled = config(
        pb::Frequency::Scheduled,
        &time,
        "UTC",
        "FREQ=DAILY",
        &["ITEMS_75"],
    );
    scheduled.name = "soon".into();
    let mut eod = config(pb::Frequency::Daily, &time, "UTC", "", &["EMPTY"]);
    eod.name = "eod".into();
    let mut ids = Vec::new();
    for c in [scheduled, eod] {
        ids.push(server.create_config(CLIENT, c).await);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for (id, expected_items) in ids.iter().zip([75u64, 0]) {
        loop {
            let runs = server
                .executions()
                .list_executions(pb::ListExecutionsRequest {
                    client_id: CLIENT.into(),
                    config_id: id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .executions;
            if let Some(e) = runs.first() {
                if finished(e) {
                    assert_eq!(status(e), pb::Status::Completed);
                    assert!(e.automatic);
                    assert_eq!(e.business_date, start.date_naive().to_string());
                    assert_eq!(counts(e, 1).2, expected_items);
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the run never completed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
}
