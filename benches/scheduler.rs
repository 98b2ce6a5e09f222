//! Scheduler benchmark: 100,000 automatic configurations over 1,000
//! clients on a local PostgreSQL. Prints the statements of an idle tick, the
//! idle service's CPU, the cost of the former tick (every configuration
//! loaded, its rule evaluated from 2000-01-01, its row updated) for
//! comparison, and how late 1,000 runs due in the same minute start.
//!
//! `cargo bench --bench scheduler` (env: ALLEGRO_BENCH_DATABASE_URL, an
//! admin URL, default postgres://postgres@127.0.0.1:5432/postgres;
//! ALLEGRO_BENCH_CONFIGS, default 100000; ALLEGRO_BENCH_IDLE_SECS, default
//! 20).

// Tests and benchmarks may unwrap: a failure there is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use allegro_scheduler::clock::SystemClock;
use allegro_scheduler::db::Db;
use allegro_scheduler::scheduling::domain::calendar;
use allegro_scheduler::scheduling::domain::config::JobScheduleConfig;
use allegro_scheduler::scheduling::engine::Engine;
use allegro_scheduler::scheduling::job::JobRegistry;
use allegro_scheduler::scheduling::store::configs;
use allegro_scheduler::server;
use allegro_scheduler::settings::ServeSettings;
use tokio_util::sync::CancellationToken;

use support::{connect, cpu_secs, env_usize, NoopJob};

/// How long a backend may keep its statistics before flushing them (PostgreSQL
/// 15 flushes an idle backend's counters within 10 s).
const STATS_FLUSH: Duration = Duration::from_secs(11);

/// Transactions committed in the benchmark database so far (waits for the
/// other backends' counters to be flushed first).
async fn commits(client: &tokio_postgres::Client) -> i64 {
    tokio::time::sleep(STATS_FLUSH).await;
    client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn registry() -> JobRegistry {
    let mut registry = JobRegistry::default();
    registry.register(Arc::new(NoopJob {
        name: "NOTHING",
        items: 0,
        fail: false,
    }));
    registry
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scheduler benchmark: run it with `cargo bench --bench scheduler`");
        return;
    }
    let admin = std::env::var("ALLEGRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let total = env_usize("ALLEGRO_BENCH_CONFIGS", 100_000);
    let idle_secs = env_usize("ALLEGRO_BENCH_IDLE_SECS", 20);
    let name = format!("allegro_bench_scheduler_{}", std::process::id());
    let admin_client = connect(&admin).await;
    admin_client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{name}");
    let db = Db::new(&url, 8).unwrap();
    db.migrate().await.unwrap();
    let client = connect(&url).await;

    // 100,000 automatic configurations over 1,000 clients, daily at a time
    // of day twelve hours away (nothing due while measuring idle).
    let loading = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO job_schedule_configs (config_id, client_id, name, frequency, \
                 scheduled_time, time_zone, recurrence_rule, jobs, rule_start_date, \
                 scheduled_through, next_start) \
             SELECT gen_random_uuid(), 'client-' || (i % 1000), 'config-' || i, 'SCHEDULED', \
                 (now() AT TIME ZONE 'UTC' + interval '12 hours')::time(0), 'UTC', 'FREQ=DAILY', \
                 '[{{\"job_type\": \"NOTHING\", \"manual\": false}}]'::jsonb, \
                 (now() AT TIME ZONE 'UTC')::date, now(), \
                 date_trunc('second', now() + interval '12 hours') \
             FROM generate_series(1, {total}) AS i; \
             ANALYZE job_schedule_configs;"
        ))
        .await
        .unwrap();
    println!(
        "loaded {total} configurations over 1000 clients in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    // Statements of an idle tick: an engine of its own, nothing else on
    // the database.
    let mut engine_settings = ServeSettings::for_database(&url).engine();
    engine_settings.workers = 0;
    let engine = Engine::new(
        db.clone(),
        registry(),
        engine_settings,
        Arc::new(SystemClock),
    );
    engine.schedule_tick().await.unwrap();
    let ticks = 10;
    let before = commits(&client).await;
    let started = Instant::now();
    for _ in 0..ticks {
        engine.schedule_tick().await.unwrap();
    }
    let tick_wall = started.elapsed() / ticks;
    let after = commits(&client).await;
    // One of the counted commits is the first read itself.
    let per_tick = (after - before - 1) as f64 / f64::from(ticks);
    println!(
        "idle tick: {per_tick:.1} statements, {:.2} ms (over {ticks} ticks)",
        tick_wall.as_secs_f64() * 1e3
    );

    // The former tick, for comparison, on a sample: load every automatic
    // configuration, evaluate its rule from 2000-01-01, update its row.
    let sample = (total / 50).max(1);
    let cpu0 = cpu_secs();
    let started = Instant::now();
    let rows = {
        let mut conn = db.conn().await.unwrap();
        configs::list_page(&mut conn, "client-1", None, i64::MAX)
            .await
            .unwrap()
    };
    let mut evaluated = 0;
    let mut conn = db.conn().await.unwrap();
    let now = chrono::Utc::now();
    'outer: for client_no in 0..1000 {
        let rows = if client_no == 1 {
            rows.clone()
        } else {
            configs::list_page(&mut conn, &format!("client-{client_no}"), None, i64::MAX)
                .await
                .unwrap()
        };
        for row in rows {
            let through = row.scheduled_through();
            let mut config = JobScheduleConfig::try_from(row).unwrap();
            config.draft.rule_start_date = None;
            let _ = calendar::runs_between(&config.draft, through, now, 1000);
            client
                .execute(
                    "UPDATE job_schedule_configs SET scheduled_through = GREATEST(scheduled_through, $2) WHERE config_id = $1",
                    &[&config.config_id, &now],
                )
                .await
                .unwrap();
            evaluated += 1;
            if evaluated >= sample {
                break 'outer;
            }
        }
    }
    let old_wall = started.elapsed().as_secs_f64() * total as f64 / sample as f64;
    let old_cpu = (cpu_secs() - cpu0) * total as f64 / sample as f64;
    println!(
        "former tick (measured on {sample}, scaled to {total}): {total} statements, \
         {old_wall:.1} s wall, {old_cpu:.1} s CPU of this process per tick"
    );
    drop(conn);

    // The idle service: scheduler ticking every second, two workers polling.
    let mut settings = ServeSettings::for_database(&url);
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.workers = 2;
    settings.db_pool_size = 8;
    settings.scheduler = true;
    settings.scheduler_tick_ms = 1000;
    let shutdown = CancellationToken::new();
    let running = server::start(&settings, registry(), shutdown.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = commits(&client).await;
    let cpu0 = cpu_secs();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs as u64)).await;
    let cpu = (cpu_secs() - cpu0) / started.elapsed().as_secs_f64() * 100.0;
    let after = commits(&client).await;
    println!(
        "idle service over {idle_secs} s: {cpu:.2} % of a core; {:.1} transactions/s in all \
         (scheduler, 2 workers polling every 200 ms, reaper)",
        (after - before - 1) as f64 / idle_secs as f64
    );

    // 1,000 runs due in the same minute: due at one instant 10 s ahead.
    let due = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 10, 0).unwrap();
    client
        .execute(
            "UPDATE job_schedule_configs SET scheduled_time = ($1 AT TIME ZONE 'UTC')::time, \
                 next_start = $1, scheduled_through = now(), version = version + 1 \
             WHERE config_id IN (SELECT config_id FROM job_schedule_configs \
                                 ORDER BY config_id LIMIT 1000)",
            &[&due],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM executions WHERE start_time IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n >= 1000 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = client
        .query(
            "SELECT extract(epoch FROM (start_time - $1))::float8 FROM executions \
             WHERE start_time IS NOT NULL ORDER BY 1",
            &[&due],
        )
        .await
        .unwrap();
    let lates: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    if lates.is_empty() {
        println!("1000 runs due at once: none started");
    } else {
        let p99 = lates[((lates.len() as f64 - 1.0) * 0.99).round() as usize];
        println!(
            "1000 runs due at once: {} started; from due to started: max {:.2} s, p99 {:.2} s",
            lates.len(),
            lates.last().unwrap(),
            p99
        );
    }
    shutdown.cancel();
    running.wait().await.unwrap();
    drop(client);
    admin_client
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}
