//! Retention of executions: with an injected clock, executions past their
//! client's retention disappear with everything under them; recent ones,
//! running ones and the drill-down of kept ones stay as they were.

use std::sync::Arc;
use std::time::Duration;

use allegro_scheduler::clock::ManualClock;
use allegro_scheduler::proto::v1 as pb;
use chrono::{DateTime, Utc};
use tonic::Code;

use crate::executions::{finished, phase};
use crate::support::*;
use crate::test_jobs::{self, TestJob};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

struct Setup {
    server: TestServer,
    clock: ManualClock,
    db: tokio_postgres::Client,
}

/// One execution: client, configuration, business date.
type Key<'a> = (&'a str, &'a str, &'a str);

impl Setup {
    async fn config(&self, client: &str, jobs: &[&str]) -> String {
        self.server.create_config(client, daily("eod", jobs)).await
    }

    async fn process(&self, (client, config, date): Key<'_>) {
        self.server
            .executions()
            .process_execution(pb::ProcessExecutionRequest {
                client_id: client.into(),
                config_id: config.into(),
                business_date: date.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn get(&self, (client, config, date): Key<'_>) -> Result<pb::Execution, tonic::Status> {
        self.server
            .executions()
            .get_execution(pb::GetExecutionRequest {
                client_id: client.into(),
                config_id: config.into(),
                business_date: date.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn wait_for(&self, key: Key<'_>, done: impl Fn(&pb::Execution) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.get(key).await.unwrap();
            if done(&e) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "stuck: {e:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the drill-down shows of an execution: the execution with
    /// its jobs' counts, each job's stats, error codes and errored items,
    /// and the actions.
    async fn drill_down(&self, (client, config, date): Key<'_>) -> String {
        let mut api = self.server.executions();
        let execution = self.get((client, config, date)).await.unwrap();
        let mut shown = format!("{execution:?}\n");
        for position in 1..=execution.jobs.len() as u32 {
            let stats = api
                .get_job_stats(pb::GetJobStatsRequest {
                    client_id: client.into(),
                    config_id: config.into(),
                    business_date: date.into(),
                    position,
                })
                .await
                .unwrap()
                .into_inner();
            let codes = api
                .list_job_error_codes(pb::ListJobErrorCodesRequest {
                    client_id: client.into(),
                    config_id: config.into(),
                    business_date: date.into(),
                    position,
                })
                .await
                .unwrap()
                .into_inner()
                .error_codes;
            shown += &format!("{stats:?}\n{codes:?}\n");
            for code in codes {
                let items = api
                    .list_errored_work_items(pb::ListErroredWorkItemsRequest {
                        include_resolved: false,
                        client_id: client.into(),
                        config_id: config.into(),
                        business_date: date.into(),
                        position,
                        error_code: code.error_code,
                        page_size: 1000,
                        page_token: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                shown += &format!("{items:?}\n");
            }
        }
        let actions = api
            .list_execution_actions(pb::ListExecutionActionsRequest {
                client_id: client.into(),
                config_id: config.into(),
                business_date: date.into(),
            })
            .await
            .unwrap()
            .into_inner();
        shown + &format!("{actions:?}")
    }

    /// The job runs of an execution, read from the database.
    async fn job_runs(&self, (_, config, date): Key<'_>) -> Vec<i64> {
        self.db
            .query(
                "SELECT j.job_run_id FROM job_runs j JOIN executions e USING (execution_id) \
                 WHERE e.config_id = $1::text::uuid AND e.business_date = $2::text::date",
                &[&config, &date],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Rows left under these job runs, per table.
    async fn rows_under(&self, job_runs: &[i64]) -> Vec<(&'static str, i64)> {
        let mut out = Vec::new();
        for table in [
            "job_runs",
            "work_items",
            "batches",
            "work_item_errors",
            "job_run_error_counts",
            "retention_backlog",
        ] {
            let n: i64 = self
                .db
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE job_run_id = ANY($1)"),
                    &[&job_runs],
                )
                .await
                .unwrap()
                .get(0);
            out.push((table, n));
        }
        out
    }
}

#[tokio::test]
async fn expired_executions_go_with_everything_under_them_and_nothing_else_moves() {
    let url = fresh_database().await;
    let clock = ManualClock::new(at("2025-01-20T12:00:00Z"));
    let mut settings = test_settings(&url);
    settings.batch_size = 5;
    settings.retention_days = 400;
    settings.retention_interval_secs = 1;
    // Several statements per job run: the bounded chunks are exercised.
    settings.retention_chunk_rows = 20;
    let (mut registry, _) = test_jobs::registry();
    registry.register(Arc::new(TestJob {
        item_delay: Duration::from_millis(200),
        ..TestJob::new("STUCK", 1000)
    }));
    let server = TestServer::start_with_clock(settings, registry, Arc::new(clock.clone())).await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let s = Setup { server, clock, db };

    let acme = s.config("acme", &["FLAKY", "ITEMS_75"]).await;
    let long_running = s.config("acme-stuck", &["ITEMS_75", "STUCK"]).await;
    let beta = s.config("beta", &["FLAKY", "ITEMS_75"]).await;
    // beta keeps its executions ten days only.
    s.db.execute(
        "INSERT INTO client_retention (client_id, retention_days) VALUES ('beta', 10)",
        &[],
    )
    .await
    .unwrap();

    // On 2026-11-24, with 400 days by default (cut-off 2025-10-20) and ten
    // for beta (cut-off 2026-11-14):
    let expired: [Key; 4] = [
        ("acme", &acme, "2025-01-10"),
        ("acme", &acme, "2025-10-19"),
        ("beta", &beta, "2025-01-10"),
        ("beta", &beta, "2026-11-01"),
    ];
    let kept: [Key; 3] = [
        ("acme", &acme, "2025-10-20"),
        ("acme", &acme, "2026-11-01"),
        ("beta", &beta, "2026-11-20"),
    ];
    let running: Key = ("acme-stuck", &long_running, "2025-01-11");

    for key in expired.iter().chain(&kept) {
        s.process(*key).await;
        s.wait_for(*key, finished).await;
    }
    s.process(running).await;
    s.wait_for(running, |e| {
        e.jobs[1].counts.is_some_and(|c| c.processed >= 5)
    })
    .await;

    let mut before = Vec::new();
    for key in &kept {
        before.push(s.drill_down(*key).await);
    }
    let mut expired_runs = Vec::new();
    for key in &expired {
        expired_runs.extend(s.job_runs(*key).await);
    }
    let running_runs = s.job_runs(running).await;
    let bulk = s.rows_under(&expired_runs).await;
    assert!(
        bulk.iter()
            .all(|(table, n)| *n > 0 || *table == "retention_backlog"),
        "every kind of row exists before retention: {bulk:?}"
    );

    // Nothing is expired yet on 2025-01-20.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for key in &expired {
        s.get(*key).await.expect("not expired yet");
    }

    s.clock.set(at("2026-11-24T12:00:00Z"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = s.rows_under(&expired_runs).await;
        if left.iter().all(|(_, n)| *n == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "left: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for key in &expired {
        let gone = s.get(*key).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound, "{key:?}");
    }
    let actions: i64 =
        s.db.query_one(
            "SELECT count(*) FROM execution_actions a \
             WHERE NOT EXISTS (SELECT 1 FROM executions e WHERE e.execution_id = a.execution_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(actions, 0, "actions go with their execution");

    // Kept executions show exactly what they showed before.
    for (key, shown) in kept.iter().zip(&before) {
        assert_eq!(&s.drill_down(*key).await, shown, "{key:?}");
    }

    // The running execution, though past retention, is untouched.
    let e = s.get(running).await.unwrap();
    assert_eq!(phase(&e), pb::ExecutionPhase::Running);
    assert_eq!(s.job_runs(running).await, running_runs);
    let items: i64 =
        s.db.query_one(
            "SELECT count(*) FROM work_items WHERE job_run_id = ANY($1)",
            &[&running_runs],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(items, 75 + 1000);

    s.server.stop().await;
    drop_database(&url).await;
}
