//! The exception window holds every claim: work released, processed or
//! retried inside it waits (PAUSED_BY_WINDOW) and starts by itself when it
//! closes; an operator may override it; upcoming runs show the real start.
//! Rules count from the configuration's start date.

use std::sync::Arc;
use std::time::Duration;

use allegro_scheduler::clock::ManualClock;
use allegro_scheduler::proto::v1 as pb;
use chrono::{DateTime, Utc};

use crate::executions::{counts, finished, phase, status};
use crate::support::*;
use crate::test_jobs;

const DATE: &str = "2026-11-24";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn from_ts(t: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

/// A server on a manual clock, batches of one item, and a DAILY
/// configuration of `jobs` with the window 22:00–02:00 UTC.
struct Windowed {
    server: TestServer,
    clock: ManualClock,
    config_id: String,
}

async fn start(now: &str, jobs: &[(&str, bool)]) -> Windowed {
    let url = fresh_database().await;
    let mut settings = test_settings(&url);
    settings.batch_size = 1;
    let (registry, _) = test_jobs::registry();
    let clock = ManualClock::new(at(now));
    let server = TestServer::start_with_clock(settings, registry, Arc::new(clock.clone())).await;
    let mut config = daily("eod", &[]);
    config.jobs = jobs
        .iter()
        .map(|(t, manual)| pb::JobSpec {
            job_type: t.to_string(),
            manual: *manual,
        })
        .collect();
    config.exception_start_time = "22:00:00".into();
    config.exception_end_time = "02:00:00".into();
    let config_id = server.create_config("acme", config).await;
    Windowed {
        server,
        clock,
        config_id,
    }
}

impl Windowed {
    async fn process(&self, override_window: bool) -> pb::ExecutionActionResponse {
        self.server
            .executions()
            .process_execution(pb::ProcessExecutionRequest {
                client_id: "acme".into(),
                config_id: self.config_id.clone(),
                business_date: DATE.into(),
                override_exception_window: override_window,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn get(&self) -> pb::Execution {
        self.server
            .executions()
            .get_execution(pb::GetExecutionRequest {
                client_id: "acme".into(),
                config_id: self.config_id.clone(),
                business_date: DATE.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn wait_for(&self, done: impl Fn(&pb::Execution) -> bool) -> pb::Execution {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.get().await;
            if done(&e) {
                return e;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "condition never held; last state: {e:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn tick_at(
        &self,
        now: &str,
    ) -> allegro_scheduler::scheduling::engine::scheduler::TickReport {
        self.clock.set(at(now));
        self.server.server.engine.schedule_tick().await.unwrap()
    }

    /// Batches of the execution that were claimed or settled.
    async fn touched_batches(&self) -> i64 {
        let (client, conn) =
            tokio_postgres::connect(&self.server.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
            .query_one(
                "SELECT count(*) FROM batches WHERE state <> 'READY' OR attempts > 0",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }
}

fn paused(e: &pb::Execution) -> bool {
    phase(e) == pb::ExecutionPhase::PausedByWindow
}

#[tokio::test]
async fn one_item_batches_released_inside_an_open_window_settle_nothing_until_it_closes() {
    let w = start("2026-11-24T21:00:00Z", &[("ITEMS_75", true)]).await;
    w.process(false).await;
    w.wait_for(|e| phase(e) == pb::ExecutionPhase::AwaitingTrigger)
        .await;
    w.clock.set(at("2026-11-24T22:30:00Z"));
    let released = w
        .server
        .executions()
        .trigger_job(pb::TriggerJobRequest {
            client_id: "acme".into(),
            config_id: w.config_id.clone(),
            business_date: DATE.into(),
            position: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let outcome = released.action.unwrap().outcome;
    assert!(
        outcome.contains("held by the exception window"),
        "{outcome}"
    );
    // Planned and held, with no scheduler tick at all.
    let e = w.wait_for(|e| paused(e) && counts(e, 1).0 == 75).await;
    assert_eq!(counts(&e, 1), (75, 75, 0, 0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counts(&w.get().await, 1), (75, 75, 0, 0));
    assert_eq!(
        w.touched_batches().await,
        0,
        "no batch claimed in the window"
    );

    assert_eq!(w.tick_at("2026-11-25T01:59:59Z").await.resumed, 0);
    assert_eq!(w.tick_at("2026-11-25T02:00:00Z").await.resumed, 1);
    let e = w.wait_for(finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (75, 0, 75, 0));
    w.server.stop().await;
}

#[tokio::test]
async fn the_claim_holds_the_window_the_instant_it_opens_without_a_tick() {
    let w = start("2026-11-24T21:59:00Z", &[("SLOW", false)]).await;
    w.process(false).await;
    w.wait_for(|e| counts(e, 1).2 > 0).await;
    // The window opens; no scheduler tick runs.
    w.clock.set(at("2026-11-24T22:00:00Z"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = counts(&w.get().await, 1).2;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = w.get().await;
    assert_eq!(
        counts(&later, 1).2,
        settled,
        "nothing claimed in the window"
    );
    assert!(settled < 60);
    assert_eq!(w.tick_at("2026-11-24T22:00:01Z").await.paused, 1);
    assert!(paused(&w.get().await));
    assert_eq!(w.tick_at("2026-11-25T02:00:00Z").await.resumed, 1);
    let e = w.wait_for(finished).await;
    assert_eq!(counts(&e, 1), (60, 0, 60, 0));
    w.server.stop().await;
}

#[tokio::test]
async fn process_inside_the_window_waits_then_runs_by_itself() {
    let w = start("2026-11-24T23:00:00Z", &[("ITEMS_75", false)]).await;
    let answer = w.process(false).await;
    assert!(answer.changed);
    let outcome = answer.action.unwrap().outcome;
    assert!(
        outcome.contains("held by the exception window until 2026-11-25 02:00:00 UTC"),
        "{outcome}"
    );
    let e = w.wait_for(|e| paused(e) && counts(e, 1).0 == 75).await;
    assert_eq!(status(&e), pb::Status::Pending);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&w.get().await, 1).2, 0);
    assert_eq!(w.tick_at("2026-11-25T02:00:00Z").await.resumed, 1);
    let e = w.wait_for(finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (75, 0, 75, 0));
    w.server.stop().await;
}

#[tokio::test]
async fn an_override_runs_inside_the_window_and_is_recorded() {
    let w = start("2026-11-24T23:00:00Z", &[("ITEMS_75", false)]).await;
    let answer = w.process(true).await;
    let outcome = answer.action.unwrap().outcome;
    assert!(outcome.contains("override_exception_window"), "{outcome}");
    // The scheduler does not hold it either.
    assert_eq!(w.tick_at("2026-11-24T23:00:01Z").await.paused, 0);
    let e = w.wait_for(finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (75, 0, 75, 0));
    let history = w
        .server
        .executions()
        .list_execution_actions(pb::ListExecutionActionsRequest {
            client_id: "acme".into(),
            config_id: w.config_id.clone(),
            business_date: DATE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .actions;
    assert!(history
        .iter()
        .any(|a| a.outcome.contains("runs inside the exception window")));
    w.server.stop().await;
}

#[tokio::test]
async fn upcoming_runs_due_inside_the_window_start_when_it_ends() {
    let w = start("2026-11-24T12:00:00Z", &[("EMPTY", false)]).await;
    let mut late = daily("late", &["EMPTY"]);
    late.frequency = pb::Frequency::Scheduled as i32;
    late.recurrence_rule = "FREQ=DAILY".into();
    late.scheduled_time = "23:30:00".into();
    late.exception_start_time = "23:00:00".into();
    late.exception_end_time = "01:00:00".into();
    late.time_zone = "Europe/Berlin".into();
    let id = w.server.create_config("acme", late).await;
    let runs = w
        .server
        .configs()
        .list_upcoming_runs(pb::ListUpcomingRunsRequest {
            client_id: "acme".into(),
            config_id: id,
            count: 2,
            after: Some(ts(at("2026-11-24T12:00:00Z"))),
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    // 23:30 in Berlin (UTC+1) is 22:30Z; the window ends at 01:00 local,
    // 00:00Z the next day.
    assert_eq!(runs[0].business_date, "2026-11-24");
    assert_eq!(
        from_ts(runs[0].due_time.as_ref().unwrap()),
        at("2026-11-24T22:30:00Z")
    );
    assert_eq!(
        from_ts(runs[0].start_time.as_ref().unwrap()),
        at("2026-11-25T00:00:00Z")
    );
    assert_eq!(runs[0].local_start_time, "2026-11-25T01:00:00+01:00");
    assert_eq!(runs[1].business_date, "2026-11-25");

    // The fixture's midnight run falls due inside its 22:00-02:00 window.
    let runs = w
        .server
        .configs()
        .list_upcoming_runs(pb::ListUpcomingRunsRequest {
            client_id: "acme".into(),
            config_id: w.config_id.clone(),
            count: 1,
            after: Some(ts(at("2026-11-24T12:00:00Z"))),
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(
        from_ts(runs[0].due_time.as_ref().unwrap()),
        at("2026-11-25T00:00:00Z")
    );
    assert_eq!(
        from_ts(runs[0].start_time.as_ref().unwrap()),
        at("2026-11-25T02:00:00Z")
    );
    w.server.stop().await;
}

#[tokio::test]
async fn rules_count_from_the_configurations_start_date() {
    // 2026-11-26 is a Thursday.
    let w = start("2026-11-26T12:00:00Z", &[("EMPTY", false)]).await;
    let create = |name: &str, rule: &str, start: &str| {
        let mut c = scheduled(name, &["EMPTY"]);
        c.recurrence_rule = rule.into();
        c.scheduled_time = "09:00:00".into();
        c.rule_start_date = start.into();
        let mut configs = w.server.configs();
        async move {
            configs
                .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                    client_id: "acme".into(),
                    config: Some(c),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let dates = |config_id: String| {
        let mut configs = w.server.configs();
        async move {
            configs
                .list_upcoming_runs(pb::ListUpcomingRunsRequest {
                    client_id: "acme".into(),
                    config_id,
                    count: 3,
                    after: Some(ts(at("2026-11-01T00:00:00Z"))),
                })
                .await
                .unwrap()
                .into_inner()
                .runs
                .into_iter()
                .map(|r| r.business_date)
                .collect::<Vec<_>>()
        }
    };
    // Bare FREQ=WEEKLY: the weekday of the day it was created.
    let weekly = create("weekly", "FREQ=WEEKLY", "").await;
    assert_eq!(weekly.rule_start_date, "2026-11-26");
    assert_eq!(
        dates(weekly.config_id).await,
        ["2026-11-26", "2026-12-03", "2026-12-10"]
    );
    // COUNT counts from the start date.
    let twice = create("twice", "FREQ=WEEKLY;COUNT=2", "").await;
    assert_eq!(dates(twice.config_id).await, ["2026-11-26", "2026-12-03"]);
    // An explicit start date (a Tuesday).
    let tuesdays = create("tuesdays", "FREQ=WEEKLY", "2026-12-01").await;
    assert_eq!(
        dates(tuesdays.config_id).await,
        ["2026-12-01", "2026-12-08", "2026-12-15"]
    );
    // A bad date names the field.
    let mut bad = scheduled("bad", &["EMPTY"]);
    bad.rule_start_date = "2026-13-01".into();
    let err = w
        .server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "acme".into(),
            config: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&err), ["config.rule_start_date"]);
    w.server.stop().await;
}
