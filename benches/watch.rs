//! Status stream benchmark: 1,000 concurrent watchers on one process; runs a
//! series of executions and reports the delivery latency of status changes
//! (from the change's transaction to the watcher) and whether every watcher
//! received every status change.
//!
//! `cargo bench --bench watch` (env: ALLEGRO_BENCH_DATABASE_URL,
//! ALLEGRO_BENCH_WATCHERS = 1000, ALLEGRO_BENCH_RUNS = 20).

// Tests and benchmarks may unwrap: a failure there is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::job::JobRegistry;
use allegro_scheduler::server;
use allegro_scheduler::settings::ServeSettings;
use pb::execution_service_client::ExecutionServiceClient;
use pb::watch_event::Kind;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use support::{bench_key, env_usize, NoopJob};

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("watch benchmark: run it with `cargo bench --bench watch`");
        return;
    }
    let admin = std::env::var("ALLEGRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let watchers = env_usize("ALLEGRO_BENCH_WATCHERS", 1000);
    let runs = env_usize("ALLEGRO_BENCH_RUNS", 20);
    let (admin_client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin_client
        .batch_execute("DROP DATABASE IF EXISTS allegro_bench_watch WITH (FORCE)")
        .await
        .unwrap();
    admin_client
        .batch_execute("CREATE DATABASE allegro_bench_watch")
        .await
        .unwrap();
    let url = format!("{}/allegro_bench_watch", admin.rsplit_once('/').unwrap().0);

    let mut registry = JobRegistry::new();
    registry.register(Arc::new(NoopJob {
        name: "EMPTY",
        items: 0,
        fail: false,
    }));
    let mut settings = ServeSettings::for_database(&url);
    settings.scheduler = false;
    settings.poll_ms = 10;
    settings.db_pool_size = 32;
    settings.max_streams_per_key = watchers + 1;
    let shutdown = CancellationToken::new();
    let running = server::start(&settings, registry, shutdown.clone())
        .await
        .unwrap();
    let endpoint = format!("http://{}", running.addr);
    let key = bench_key(&url, "bench").await;

    let channel = Channel::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let channel = InterceptedService::new(channel, key.clone());
    let config_id = pb::job_schedule_config_service_client::JobScheduleConfigServiceClient::new(
        channel.clone(),
    )
    .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
        client_id: "bench".into(),
        config: Some(pb::JobScheduleConfig {
            name: "eod".into(),
            frequency: pb::Frequency::Scheduled as i32,
            jobs: vec![pb::JobSpec {
                job_type: "EMPTY".into(),
                manual: false,
            }],
            ..Default::default()
        }),
    })
    .await
    .unwrap()
    .into_inner()
    .config_id;

    // 100 streams per connection.
    let mut channels = Vec::new();
    for _ in 0..watchers.div_ceil(100) {
        channels.push(InterceptedService::new(
            Channel::from_shared(endpoint.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
            key.clone(),
        ));
    }
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Vec<f64>)>();
    let expected_completions = runs;
    for w in 0..watchers {
        let mut client = ExecutionServiceClient::new(channels[w / 100].clone());
        let done_tx = done_tx.clone();
        let mut stream = client
            .watch_executions(pb::WatchExecutionsRequest {
                client_id: "bench".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut status_changes = 0;
            let mut completed = 0;
            while let Ok(Some(event)) = stream.message().await {
                let is_status = matches!(
                    event.kind,
                    Some(Kind::ExecutionChanged(_)) | Some(Kind::JobChanged(_))
                );
                if is_status {
                    status_changes += 1;
                    let t = event.time.unwrap();
                    let sent =
                        SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32);
                    let lag = SystemTime::now().duration_since(sent).unwrap_or_default();
                    latencies.push(lag.as_secs_f64() * 1e3);
                }
                if let Some(Kind::ExecutionChanged(c)) = &event.kind {
                    if c.status == pb::Status::Completed as i32 {
                        completed += 1;
                        if completed == expected_completions {
                            break;
                        }
                    }
                }
            }
            let _ = done_tx.send((status_changes, latencies));
        });
    }
    drop(done_tx);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut executions = ExecutionServiceClient::new(channel.clone());
    for day in 0..runs {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
            + chrono::Duration::days(day as i64);
        executions
            .process_execution(pb::ProcessExecutionRequest {
                client_id: "bench".into(),
                config_id: config_id.clone(),
                business_date: date.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut all = Vec::new();
    let mut counts = Vec::new();
    while let Some((n, lat)) = done_rx.recv().await {
        counts.push(n);
        all.extend(lat);
    }
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let status_events: i64 = db
        .query_one(
            "SELECT count(*) FROM execution_events WHERE body->>'type' IN ('ExecutionChanged', 'JobChanged')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    let complete = counts
        .iter()
        .filter(|n| **n as i64 == status_events)
        .count();
    println!("watch benchmark: {watchers} watchers on one process, {runs} executions, {status_events} status changes each");
    println!(
        "delivery latency of status changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0.0),
        all.len()
    );
    println!(
        "watchers that received every status change: {complete} of {}",
        counts.len()
    );
    running.shutdown().await.unwrap();
}
