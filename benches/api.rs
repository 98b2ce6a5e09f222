//! API benchmark: the read RPCs under 50 concurrent streams against the
//! real server on a local PostgreSQL, next to Health/Check (no database),
//! then an engine job's processing throughput with and without 50 readers.
//!
//! `cargo bench --bench api` (env: ALLEGRO_BENCH_DATABASE_URL, an admin
//! URL, default postgres://postgres@127.0.0.1:5432/postgres;
//! ALLEGRO_BENCH_SECONDS per RPC, default 5; ALLEGRO_BENCH_ITEMS for the
//! engine job, default 200000; ALLEGRO_BENCH_STREAMS, default 50;
//! ALLEGRO_BENCH_REQUEST_POOL, ALLEGRO_BENCH_ENGINE_THREADS and
//! ALLEGRO_BENCH_READS_WHILE_PROCESSING override the server's defaults, to
//! compare).

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
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use support::{
    bench_key, env_usize, fresh_db, percentile, scheduled_config as config, Keyed, NoopJob,
};

const DATE: &str = "2026-11-24";
/// HTTP/2 connections the readers share.
const CHANNELS: usize = 4;

/// The read RPCs measured.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    Health,
    GetExecution,
    GetJobStats,
    ListConfigs,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::Health => "grpc.health.v1.Health/Check",
            Rpc::GetExecution => "GetExecution",
            Rpc::GetJobStats => "GetJobStats",
            Rpc::ListConfigs => "ListJobScheduleConfigs",
        }
    }
}

/// One reader's clients.
#[derive(Clone)]
struct Reader {
    health: HealthClient<Keyed>,
    executions: ExecutionServiceClient<Keyed>,
    configs: JobScheduleConfigServiceClient<Keyed>,
    config_id: String,
}

impl Reader {
    async fn call(&mut self, rpc: Rpc) {
        match rpc {
            Rpc::Health => {
                self.health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .unwrap();
            }
            Rpc::GetExecution => {
                self.executions
                    .get_execution(pb::GetExecutionRequest {
                        client_id: "bench".into(),
                        config_id: self.config_id.clone(),
                        business_date: DATE.into(),
                    })
                    .await
                    .unwrap();
            }
            Rpc::GetJobStats => {
                self.executions
                    .get_job_stats(pb::GetJobStatsRequest {
                        client_id: "bench".into(),
                        config_id: self.config_id.clone(),
                        business_date: DATE.into(),
                        position: 1,
                    })
                    .await
                    .unwrap();
            }
            Rpc::ListConfigs => {
                self.configs
                    .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
                        client_id: "bench".into(),
                        page_size: 10,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }
    }
}

/// `streams` readers calling `rpc` back to back until `stop`; every
/// latency.
async fn load(readers: &[Reader], streams: usize, rpc: Rpc, stop: Instant) -> Vec<Duration> {
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let mut reader = readers[i % readers.len()].clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < stop {
                    let t = Instant::now();
                    reader.call(rpc).await;
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// Processes the execution of `config_id`; the processing time (from the
/// first planned item's count to the end) and the item count.
async fn run(executions: &mut ExecutionServiceClient<Keyed>, config_id: &str) -> (Duration, u64) {
    let start = Instant::now();
    executions
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "bench".into(),
            config_id: config_id.into(),
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut planned_at = None;
    loop {
        let e = executions
            .get_execution(pb::GetExecutionRequest {
                client_id: "bench".into(),
                config_id: config_id.into(),
                business_date: DATE.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let counts = e.jobs[0].counts.unwrap();
        if planned_at.is_none() && counts.total > 0 {
            planned_at = Some(Instant::now());
        }
        if e.status != pb::Status::Pending as i32 {
            let done = Instant::now();
            return (done - planned_at.unwrap_or(start), counts.total);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("api benchmark: run it with `cargo bench --bench api`");
        return;
    }
    let admin = std::env::var("ALLEGRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let seconds = env_usize("ALLEGRO_BENCH_SECONDS", 5) as u64;
    let items = env_usize("ALLEGRO_BENCH_ITEMS", 200_000);
    let streams = env_usize("ALLEGRO_BENCH_STREAMS", 50);
    let url = fresh_db(&admin, "allegro_bench_api").await;
    let core =
        allegro_scheduler::billing::core_aria::CoreAriaClient::lazy("http://127.0.0.1:9").unwrap();
    let mut registry = allegro_scheduler::billing::catalogue_registry(core);
    registry.register(Arc::new(NoopJob {
        name: "NOOP_SMALL",
        items: 1_000,
        fail: false,
    }));
    registry.register(Arc::new(NoopJob {
        name: "NOOP",
        items,
        fail: false,
    }));
    let mut settings = ServeSettings::for_database(&url);
    settings.poll_ms = 10;
    settings.scheduler = false;
    settings.max_requests_per_key = 10_000;
    settings.db_pool_size = env_usize("ALLEGRO_BENCH_REQUEST_POOL", settings.db_pool_size);
    settings.engine_threads = env_usize("ALLEGRO_BENCH_ENGINE_THREADS", settings.engine_threads);
    settings.reads_while_processing = env_usize(
        "ALLEGRO_BENCH_READS_WHILE_PROCESSING",
        settings.reads_while_processing,
    );
    let shutdown = CancellationToken::new();
    let running = server::start(&settings, registry, shutdown.clone())
        .await
        .unwrap();
    let key = bench_key(&url, "bench").await;
    let mut readers = Vec::new();
    for _ in 0..CHANNELS {
        let channel = Channel::from_shared(format!("http://{}", running.addr))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        let channel = InterceptedService::new(channel, key.clone());
        readers.push(Reader {
            health: HealthClient::new(channel.clone()),
            executions: ExecutionServiceClient::new(channel.clone()),
            configs: JobScheduleConfigServiceClient::new(channel),
            config_id: String::new(),
        });
    }
    let mut configs = readers[0].configs.clone();
    let mut executions = readers[0].executions.clone();
    let read_config = config(&mut configs, "reads", "NOOP_SMALL").await;
    for i in 0..9 {
        config(&mut configs, &format!("more-{i}"), "NOOP_SMALL").await;
    }
    run(&mut executions, &read_config).await;
    for reader in &mut readers {
        reader.config_id = read_config.clone();
    }

    println!(
        "api benchmark: {streams} concurrent streams over {CHANNELS} HTTP/2 connections, \
         {seconds} s per RPC, local PostgreSQL, request pool {}, engine pool {}, \
         engine threads {}, reads while processing {}",
        settings.db_pool_size,
        settings.engine_db_pool_size,
        settings.engine_threads,
        settings.reads_while_processing
    );
    println!(
        "{:<30} {:>11} {:>9} {:>9} {:>9}",
        "RPC", "requests/s", "p50 ms", "p99 ms", "vs Health"
    );
    let mut health_rate = None;
    for rpc in [
        Rpc::Health,
        Rpc::GetExecution,
        Rpc::GetJobStats,
        Rpc::ListConfigs,
    ] {
        // A short warm-up, then the measured run.
        load(
            &readers,
            streams,
            rpc,
            Instant::now() + Duration::from_millis(300),
        )
        .await;
        let started = Instant::now();
        let mut samples = load(
            &readers,
            streams,
            rpc,
            started + Duration::from_secs(seconds),
        )
        .await;
        let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
        let base = *health_rate.get_or_insert(rate);
        println!(
            "{:<30} {:>11.0} {:>9.2} {:>9.2} {:>9.2}",
            rpc.name(),
            rate,
            percentile(&mut samples, 0.50).as_secs_f64() * 1e3,
            percentile(&mut samples, 0.99).as_secs_f64() * 1e3,
            rate / base
        );
    }

    // The engine alone, then with readers polling all the while.
    let alone = config(&mut configs, "engine-alone", "NOOP").await;
    let (took, total) = run(&mut executions, &alone).await;
    let alone_rate = total as f64 / took.as_secs_f64();
    println!(
        "engine alone:            {total} items in {:.2} s = {alone_rate:.0} items/s",
        took.as_secs_f64()
    );

    let loaded = config(&mut configs, "engine-loaded", "NOOP").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers_task = {
        let readers = readers.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut calls = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let until = Instant::now() + Duration::from_millis(200);
                calls += load(&readers, streams, Rpc::GetExecution, until)
                    .await
                    .len();
            }
            calls
        })
    };
    let started = Instant::now();
    let (took, total) = run(&mut executions, &loaded).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let calls = readers_task.await.unwrap();
    let loaded_rate = total as f64 / took.as_secs_f64();
    println!(
        "engine with {streams} readers: {total} items in {:.2} s = {loaded_rate:.0} items/s \
         ({:.0} reads/s alongside)",
        took.as_secs_f64(),
        calls as f64 / started.elapsed().as_secs_f64()
    );
    println!(
        "engine throughput under read load: {:.2} of unloaded",
        loaded_rate / alone_rate
    );
    shutdown.cancel();
    let _ = running.wait().await;
}
