//! Engine benchmark: runs no-op jobs through the real engine and gRPC server
//! on a local PostgreSQL and prints planning and processing throughput, the
//! latency of the stats RPCs, and the peak RSS of the process.
//!
//! `cargo bench --bench engine` (env: ALLEGRO_BENCH_DATABASE_URL, an admin
//! URL, default postgres://postgres@127.0.0.1:5432/postgres;
//! ALLEGRO_BENCH_ITEMS, default 1000000; ALLEGRO_BENCH_ERRORED, default
//! 100000; ALLEGRO_BENCH_WORKERS, default 4; ALLEGRO_BENCH_REPLICAS, service
//! instances on the one database, default 1; ALLEGRO_BENCH_DB_NAME, the
//! database it recreates, default allegro_bench).

// Tests and benchmarks may unwrap: a failure there is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::server;
use allegro_scheduler::settings::ServeSettings;
use pb::execution_service_client::ExecutionServiceClient;
use pb::job_schedule_config_service_client::JobScheduleConfigServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use support::{bench_key, env_usize, fresh_db, peak_rss_mb, percentile, Keyed, NoopJob};

struct Bench {
    configs: JobScheduleConfigServiceClient<Keyed>,
    executions: ExecutionServiceClient<Keyed>,
}

impl Bench {
    async fn config(&mut self, name: &str, job: &str) -> String {
        support::scheduled_config(&mut self.configs, name, job).await
    }

    async fn get(&mut self, config_id: &str) -> pb::Execution {
        self.executions
            .get_execution(pb::GetExecutionRequest {
                client_id: "bench".into(),
                config_id: config_id.into(),
                business_date: "2026-11-24".into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Runs the job of `config_id`; returns (plan time, process time, total).
    async fn run(&mut self, config_id: &str) -> (Duration, Duration, u64) {
        let start = Instant::now();
        self.executions
            .process_execution(pb::ProcessExecutionRequest {
                client_id: "bench".into(),
                config_id: config_id.into(),
                business_date: "2026-11-24".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut planned_at = None;
        loop {
            let e = self.get(config_id).await;
            let job = &e.jobs[0];
            let counts = job.counts.unwrap();
            if planned_at.is_none() && counts.total > 0 {
                planned_at = Some(Instant::now());
            }
            if e.status != pb::Status::Pending as i32 {
                let done = Instant::now();
                let planned = planned_at.unwrap_or(done);
                return (planned - start, done - planned, counts.total);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench
    // targets without it, and must not run a million-item benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine benchmark: run it with `cargo bench --bench engine`");
        return;
    }
    let admin = std::env::var("ALLEGRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let items = env_usize("ALLEGRO_BENCH_ITEMS", 1_000_000);
    let errored = env_usize("ALLEGRO_BENCH_ERRORED", 100_000);
    let name = std::env::var("ALLEGRO_BENCH_DB_NAME").unwrap_or_else(|_| "allegro_bench".into());
    let url = fresh_db(&admin, &name).await;
    let billing_accounts = env_usize("ALLEGRO_BENCH_BILLING_ACCOUNTS", 100_000);
    // The catalogue jobs (BILLING is measured below) plus the no-op jobs.
    let registry = || {
        let core =
            allegro_scheduler::billing::core_aria::CoreAriaClient::lazy("http://127.0.0.1:9")
                .unwrap();
        let mut registry = allegro_scheduler::billing::catalogue_registry(core);
        registry.register(Arc::new(NoopJob {
            name: "NOOP",
            items,
            fail: false,
        }));
        registry.register(Arc::new(NoopJob {
            name: "NOOP_ERRORS",
            items: errored,
            fail: true,
        }));
        registry
    };
    let mut settings = ServeSettings::for_database(&url);
    settings.workers = env_usize("ALLEGRO_BENCH_WORKERS", 4);
    settings.db_pool_size = settings.workers + 4;
    settings.poll_ms = 10;
    let shutdown = CancellationToken::new();
    let running = server::start(&settings, registry(), shutdown.clone())
        .await
        .unwrap();
    // More replicas of the service on the same database, each with its own
    // pool and workers (ALLEGRO_BENCH_REPLICAS, default 1).
    let replicas = env_usize("ALLEGRO_BENCH_REPLICAS", 1).max(1);
    let mut others = Vec::new();
    for _ in 1..replicas {
        others.push(
            server::start(&settings, registry(), shutdown.clone())
                .await
                .unwrap(),
        );
    }
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let channel = InterceptedService::new(channel, bench_key(&url, "bench").await);
    let mut bench = Bench {
        configs: JobScheduleConfigServiceClient::new(channel.clone()),
        executions: ExecutionServiceClient::new(channel.clone()),
    };
    println!(
        "engine benchmark: {items} no-op items, batch size {}, {} replicas of {} workers, \
         local PostgreSQL",
        settings.batch_size, replicas, settings.workers
    );

    let noop = bench.config("noop", "NOOP").await;
    let (plan, process, total) = bench.run(&noop).await;
    println!(
        "plan:    {total} items in {:.2} s = {:.0} items/s",
        plan.as_secs_f64(),
        total as f64 / plan.as_secs_f64()
    );
    println!(
        "process: {total} items in {:.2} s = {:.0} items/s (end to end, counters kept)",
        process.as_secs_f64(),
        total as f64 / process.as_secs_f64()
    );
    println!(
        "peak RSS while planning and processing: {:.1} MB",
        peak_rss_mb()
    );

    let mut samples = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        bench
            .executions
            .get_job_stats(pb::GetJobStatsRequest {
                client_id: "bench".into(),
                config_id: noop.clone(),
                business_date: "2026-11-24".into(),
                position: 1,
            })
            .await
            .unwrap();
        samples.push(t.elapsed());
    }
    println!(
        "GetJobStats ({total} items): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut samples, 0.50).as_secs_f64() * 1e3,
        percentile(&mut samples, 0.99).as_secs_f64() * 1e3
    );

    let errors = bench.config("errors", "NOOP_ERRORS").await;
    let (_, eprocess, etotal) = bench.run(&errors).await;
    println!(
        "errored job: {etotal} items settled as ERROR in {:.2} s = {:.0} items/s",
        eprocess.as_secs_f64(),
        etotal as f64 / eprocess.as_secs_f64()
    );
    let mut codes = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        bench
            .executions
            .list_job_error_codes(pb::ListJobErrorCodesRequest {
                client_id: "bench".into(),
                config_id: errors.clone(),
                business_date: "2026-11-24".into(),
                position: 1,
            })
            .await
            .unwrap();
        codes.push(t.elapsed());
    }
    println!(
        "ListJobErrorCodes ({etotal} errored): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut codes, 0.50).as_secs_f64() * 1e3,
        percentile(&mut codes, 0.99).as_secs_f64() * 1e3
    );
    let mut pages = Vec::new();
    let mut token = String::new();
    for _ in 0..500 {
        let t = Instant::now();
        let page = bench
            .executions
            .list_errored_work_items(pb::ListErroredWorkItemsRequest {
                client_id: "bench".into(),
                config_id: errors.clone(),
                business_date: "2026-11-24".into(),
                position: 1,
                error_code: "BENCH_ERROR".into(),
                page_size: 100,
                page_token: token.clone(),
                include_resolved: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(t.elapsed());
        token = page.next_page_token;
    }
    println!(
        "ListErroredWorkItems (page of 100, {etotal} errored): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&mut pages, 0.50).as_secs_f64() * 1e3,
        percentile(&mut pages, 0.99).as_secs_f64() * 1e3
    );
    println!("peak RSS overall: {:.1} MB", peak_rss_mb());

    // BILLING over the demo ledger: the accounts due on the date.
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let db = allegro_scheduler::db::Db::new(&url, 4).unwrap();
    let t = Instant::now();
    allegro_scheduler::billing::demo::load_demo_ledger(&db, "bench", billing_accounts, date)
        .await
        .unwrap();
    println!(
        "demo ledger of {billing_accounts} accounts loaded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let billing = bench.config("billing", "BILLING").await;
    let (bplan, bprocess, btotal) = bench.run(&billing).await;
    println!(
        "BILLING over {billing_accounts} accounts: {btotal} due accounts planned in {:.2} s, \
         processed in {:.2} s = {:.0} items/s",
        bplan.as_secs_f64(),
        bprocess.as_secs_f64(),
        btotal as f64 / bprocess.as_secs_f64()
    );
    running.shutdown().await.unwrap();
    for other in others {
        other.wait().await.unwrap();
    }
}
