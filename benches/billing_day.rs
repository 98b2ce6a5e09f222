//! The billing-day benchmark: a reference ledger (the demo generator) and
//! the full daily schedule (BILLTIME_USAGE_RATING, SYNC_TRANSACTION,
//! BILLING, SYNC_BILLING_TRANSACTIONS) through ProcessExecution on the real
//! server with the stand-in core Aria, beside the ceiling: the same ledger
//! changes as plain set-based SQL on a copy of the same ledger
//! (`billing_day/ceiling.sql`). Prints per job the items, seconds, items/s,
//! database time and the ratio to the ceiling; the schedule's wall time;
//! the process's peak RSS; and a retention pass over the day's execution.
//!
//! `cargo bench --bench billing_day`. Environment (defaults in brackets):
//! ALLEGRO_BENCH_DATABASE_URL, an admin URL
//! [postgres://postgres@127.0.0.1:5432/postgres];
//! ALLEGRO_BILLING_DAY_ACCOUNTS [1000000]; ALLEGRO_BILLING_DAY_DATE
//! [2027-02-28: anniversary days 28 to 31 are due, about 4/31 of the
//! accounts]; ALLEGRO_BENCH_WORKERS [4]; ALLEGRO_BENCH_BATCH_SIZE [1000];
//! ALLEGRO_BILLING_DAY_CEILING_BATCH, accounts per ceiling statement
//! [10000]; ALLEGRO_BILLING_DAY_LOAD_ONLY=1 stops after loading the ledger.
//! The ceiling's batches run over as many connections as the service has
//! workers.

// Tests and benchmarks may unwrap: a failure there is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "billing_day/ceiling.rs"]
mod ceiling;
mod support;

use std::time::{Duration, Instant};

use allegro_scheduler::billing::core_aria::{serve_standin, CoreAriaClient};
use allegro_scheduler::billing::jobs::catalogue::CATALOGUE;
use allegro_scheduler::db::Db;
use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::api::bearer::BearerKey;
use allegro_scheduler::scheduling::store::retention;
use allegro_scheduler::server;
use allegro_scheduler::settings::ServeSettings;
use chrono::NaiveDate;
use pb::execution_service_client::ExecutionServiceClient;
use pb::job_schedule_config_service_client::JobScheduleConfigServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use support::{bench_key, connect, env_usize, peak_rss_mb};

const CLIENT: &str = "bench";
const LEDGER_DB: &str = "allegro_billing_day";
const CEILING_DB: &str = "allegro_billing_day_ceiling";

type Keyed = InterceptedService<Channel, BearerKey>;

/// Starts the peak RSS afresh (Linux: writing 5 to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn url_for(admin: &str, database: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    format!("{base}/{database}")
}

/// Time the database spent executing statements (ms), and rows changed.
async fn db_time(admin: &tokio_postgres::Client, database: &str) -> (f64, i64) {
    let row = admin
        .query_one(
            "SELECT COALESCE(active_time, 0)::float8, \
                    (tup_inserted + tup_updated + tup_deleted)::int8 \
             FROM pg_stat_database WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// One job of the schedule as the service ran it.
struct JobFigures {
    job: String,
    items: u64,
    errors: u64,
    elapsed: Duration,
    db_ms: f64,
}

struct Service {
    configs: JobScheduleConfigServiceClient<Keyed>,
    executions: ExecutionServiceClient<Keyed>,
}

impl Service {
    async fn config(&mut self, name: &str, jobs: &[&str]) -> String {
        self.configs
            .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                client_id: CLIENT.into(),
                config: Some(pb::JobScheduleConfig {
                    name: name.into(),
                    frequency: pb::Frequency::Scheduled as i32,
                    jobs: jobs
                        .iter()
                        .map(|j| pb::JobSpec {
                            job_type: j.to_string(),
                            manual: false,
                        })
                        .collect(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .config_id
    }

    /// Processes the execution of `config_id` on `date` and follows it to
    /// its end, timing each job from leaving WAITING to settling (as the
    /// service recorded them in the job run) and the database time spent
    /// meanwhile (polled).
    async fn run(
        &mut self,
        config_id: &str,
        date: NaiveDate,
        admin: &tokio_postgres::Client,
        ledger: &tokio_postgres::Client,
    ) -> Vec<JobFigures> {
        self.executions
            .process_execution(pb::ProcessExecutionRequest {
                client_id: CLIENT.into(),
                config_id: config_id.into(),
                business_date: date.to_string(),
                reason: "billing-day benchmark".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut started: Vec<Option<(Instant, f64)>> = Vec::new();
        let mut figures: Vec<Option<JobFigures>> = Vec::new();
        loop {
            let e = self
                .executions
                .get_execution(pb::GetExecutionRequest {
                    client_id: CLIENT.into(),
                    config_id: config_id.into(),
                    business_date: date.to_string(),
                })
                .await
                .unwrap()
                .into_inner();
            let now = Instant::now();
            let (db_ms, _) = db_time(admin, LEDGER_DB).await;
            started.resize(e.jobs.len(), None);
            figures.resize_with(e.jobs.len(), || None);
            for (i, job) in e.jobs.iter().enumerate() {
                let waiting = job.phase == pb::JobPhase::Waiting as i32;
                if !waiting && started[i].is_none() {
                    started[i] = Some((now, db_ms));
                }
                let settled = job.status != pb::Status::Pending as i32;
                if let (true, Some((t0, d0)), None) = (settled, started[i], &figures[i]) {
                    let counts = job.counts.unwrap_or_default();
                    figures[i] = Some(JobFigures {
                        job: job.job_type.clone(),
                        items: counts.total,
                        errors: counts.error,
                        elapsed: now - t0,
                        db_ms: db_ms - d0,
                    });
                }
            }
            if e.status != pb::Status::Pending as i32 {
                let mut figures: Vec<JobFigures> = figures.into_iter().flatten().collect();
                // The service's own times of each job, which polling every
                // 50 ms blurs by up to 50 ms at each end.
                let recorded = ledger
                    .query(
                        "SELECT jr.job_type, EXTRACT(EPOCH FROM jr.end_time - jr.start_time)::float8 \
                         FROM job_runs jr JOIN executions e USING (execution_id) \
                         WHERE e.config_id = $1::text::uuid AND e.business_date = $2 \
                           AND jr.end_time IS NOT NULL AND jr.start_time IS NOT NULL",
                        &[&config_id, &date],
                    )
                    .await
                    .unwrap();
                for row in recorded {
                    let (job, seconds): (String, f64) = (row.get(0), row.get(1));
                    if let Some(f) = figures.iter_mut().find(|f| f.job == job) {
                        f.elapsed = Duration::from_secs_f64(seconds);
                    }
                }
                return figures;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets without --bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("billing-day benchmark: run it with `cargo bench --bench billing_day`");
        return;
    }
    // RUST_LOG=allegro_scheduler::billing::demo=debug shows the load's steps.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let admin_url = std::env::var("ALLEGRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let accounts = env_usize("ALLEGRO_BILLING_DAY_ACCOUNTS", 1_000_000);
    let date: NaiveDate = std::env::var("ALLEGRO_BILLING_DAY_DATE")
        .unwrap_or_else(|_| "2027-02-28".into())
        .parse()
        .expect("ALLEGRO_BILLING_DAY_DATE is YYYY-MM-DD");
    let workers = env_usize("ALLEGRO_BENCH_WORKERS", 4);
    let batch_size = env_usize("ALLEGRO_BENCH_BATCH_SIZE", 1000);
    let ceiling_batch = env_usize("ALLEGRO_BILLING_DAY_CEILING_BATCH", 10_000);
    let admin = connect(&admin_url).await;
    let url = url_for(&admin_url, LEDGER_DB);
    let ceiling_url = url_for(&admin_url, CEILING_DB);

    // The reference ledger, and its copy for the ceiling.
    for db in [LEDGER_DB, CEILING_DB] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {LEDGER_DB}"))
        .await
        .unwrap();
    allegro_scheduler::db::run_migrations(&url).await.unwrap();
    let t = Instant::now();
    let ledger = {
        let db = Db::new(&url, 4).unwrap();
        allegro_scheduler::billing::demo::load_demo_ledger(&db, CLIENT, accounts, date)
            .await
            .unwrap()
    };
    let load = t.elapsed();
    let counts = &ledger.counts;
    println!(
        "billing-day benchmark on {date}: {} accounts (days {:?} due), {} subscriptions, \
         {} usage records ({:.1} per account), {} transactions; loaded in {:.1} s",
        counts.accounts,
        ledger.due_days,
        counts.subscriptions,
        counts.usage_records,
        counts.usage_records as f64 / counts.accounts.max(1) as f64,
        counts.transactions,
        load.as_secs_f64()
    );
    if std::env::var("ALLEGRO_BILLING_DAY_LOAD_ONLY").is_ok_and(|v| v == "1") {
        return;
    }
    // The pool is gone; the template copy needs no other session on it.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&LEDGER_DB],
        )
        .await
        .unwrap();
    let t = Instant::now();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {CEILING_DB} TEMPLATE {LEDGER_DB}"
        ))
        .await
        .unwrap();
    println!(
        "ledger copied for the ceiling in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The ceiling.
    let mut ceiling_dbs = Vec::new();
    for _ in 0..workers.max(1) {
        ceiling_dbs.push(connect(&ceiling_url).await);
    }
    let ceilings = ceiling::run(&ceiling_dbs, CLIENT, date, accounts, ceiling_batch).await;
    println!(
        "ceiling: batches of {ceiling_batch} accounts over {} connections",
        ceiling_dbs.len()
    );

    // The service: server, stand-in core, one execution of the schedule.
    reset_peak_rss();
    let shutdown = CancellationToken::new();
    let service_db = Db::new(&url, 8).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let core = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_standin(
        service_db.clone(),
        listener,
        false,
        shutdown.clone(),
    ));
    let registry =
        allegro_scheduler::billing::catalogue_registry(CoreAriaClient::lazy(&core).unwrap());
    let mut settings = ServeSettings::for_database(&url);
    settings.workers = workers;
    settings.batch_size = batch_size;
    settings.db_pool_size = workers + 4;
    settings.poll_ms = 10;
    settings.scheduler = false;
    let running = server::start(&settings, registry, shutdown.clone())
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let channel = InterceptedService::new(channel, bench_key(&url, CLIENT).await);
    let mut service = Service {
        configs: JobScheduleConfigServiceClient::new(channel.clone()),
        executions: ExecutionServiceClient::new(channel),
    };
    let names: Vec<&str> = CATALOGUE.iter().map(|e| e.name).collect();
    let daily = service.config("billing-day", &names).await;
    let ledger_pg = connect(&url).await;
    let t = Instant::now();
    let mut jobs = service.run(&daily, date, &admin, &ledger_pg).await;
    // BILLING stops the schedule on its errored accounts (suspended,
    // cancelled subscriptions), as the product does; the true-ups of the
    // others are then synced by a configuration of the last job alone, as
    // an operator would before fixing those accounts.
    if jobs.len() < names.len() {
        let rest = service
            .config("billing-day-rest", &names[jobs.len()..])
            .await;
        jobs.extend(service.run(&rest, date, &admin, &ledger_pg).await);
    }
    let wall = t.elapsed();
    let peak = peak_rss_mb();

    println!(
        "\n{:<27} {:>9} {:>7} {:>8} {:>10} {:>8} | {:>9} {:>10} {:>8} {:>10} | {:>6}",
        "job",
        "items",
        "errors",
        "s",
        "items/s",
        "db s",
        "ceil.items",
        "ceil.rows",
        "ceil.s",
        "ceil.it/s",
        "ratio"
    );
    let mut ceiling_sum = Duration::ZERO;
    for job in &jobs {
        let rate = job.items as f64 / job.elapsed.as_secs_f64();
        let c = ceilings.iter().find(|c| c.job == job.job);
        let (c_items, c_rows, c_secs) =
            c.map_or((0, 0, 0.0), |c| (c.items, c.rows, c.elapsed.as_secs_f64()));
        ceiling_sum += Duration::from_secs_f64(c_secs);
        let c_rate = c_items as f64 / c_secs.max(1e-9);
        println!(
            "{:<27} {:>9} {:>7} {:>8.2} {:>10.0} {:>8.2} | {:>9} {:>10} {:>8.2} {:>10.0} | {:>5.0}%",
            job.job,
            job.items,
            job.errors,
            job.elapsed.as_secs_f64(),
            rate,
            job.db_ms / 1000.0,
            c_items,
            c_rows,
            c_secs,
            c_rate,
            100.0 * rate / c_rate
        );
    }
    println!(
        "whole schedule: {:.2} s through the service, {:.2} s for the ceilings' sum \
         ({:.2}x); peak RSS {:.1} MB ({} workers, batch size {})",
        wall.as_secs_f64(),
        ceiling_sum.as_secs_f64(),
        wall.as_secs_f64() / ceiling_sum.as_secs_f64().max(1e-9),
        peak,
        workers,
        batch_size
    );

    // The same ledger changes both ways?
    let service_summary = ceiling::ledger_summary(&connect(&url).await).await;
    let ceiling_summary = ceiling::ledger_summary(&ceiling_dbs[0]).await;
    if service_summary == ceiling_summary {
        println!("the ceiling's ledger changes equal the service's:");
        for line in &service_summary {
            println!("  {line}");
        }
    } else {
        println!("the ceiling's ledger changes DIFFER from the service's:");
        println!("  service: {service_summary:#?}\n  ceiling: {ceiling_summary:#?}");
    }

    // Retention of that day, 401 days later, in bounded statements.
    let mut conn = service_db.conn().await.unwrap();
    let later = date + chrono::Days::new(401);
    let t = Instant::now();
    let (mut executions, mut rows, mut statements, mut longest) = (0, 0, 0, Duration::ZERO);
    loop {
        let s = Instant::now();
        let gone = retention::expire_executions(&mut conn, later, 400, 500)
            .await
            .unwrap();
        (statements, longest) = (statements + 1, longest.max(s.elapsed()));
        executions += gone.len();
        if gone.is_empty() {
            break;
        }
    }
    loop {
        let s = Instant::now();
        let Some(purged) = retention::purge_chunk(&mut conn, 5000).await.unwrap() else {
            break;
        };
        (statements, longest) = (statements + 1, longest.max(s.elapsed()));
        rows += purged.rows;
    }
    let elapsed = t.elapsed();
    println!(
        "retention: {executions} executions and {rows} rows under them removed in {:.2} s \
         ({:.0} rows/s) by {statements} statements of at most 5,000 rows, the longest {:.0} ms",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        longest.as_secs_f64() * 1e3
    );
    drop(conn);
    shutdown.cancel();
    running.wait().await.unwrap();
}
