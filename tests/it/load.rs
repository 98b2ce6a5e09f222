//! The API under load: a cancelled call leaves the pool's connections in
//! place, deadlines answer DEADLINE_EXCEEDED, and a flood past the limit is
//! refused at once while the calls within it succeed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::settings::ServeSettings;
use tonic::{Code, Request};

use crate::support::*;
use crate::test_jobs;

const DATE: &str = "2026-11-24";

/// A server with one configuration and its execution on `DATE`.
struct Fixture {
    server: TestServer,
    config_id: String,
}

async fn setup(tune: impl FnOnce(&mut ServeSettings)) -> Fixture {
    let url = fresh_database().await;
    let (registry, _controls) = test_jobs::registry();
    let mut settings = test_settings(&url);
    settings.max_requests_per_key = 10_000;
    tune(&mut settings);
    let server = TestServer::start_with(settings, registry).await;
    let mut config = daily("eod", &[]);
    config.jobs = vec![pb::JobSpec {
        job_type: "EMPTY".into(),
        manual: true,
    }];
    let config_id = server.create_config("acme", config).await;
    server
        .executions()
        .create_execution(pb::CreateExecutionRequest {
            client_id: "acme".into(),
            config_id: config_id.clone(),
            business_date: DATE.into(),
            manual_job_positions: vec![],
            reason: String::new(),
        })
        .await
        .unwrap();
    Fixture { server, config_id }
}

impl Fixture {
    fn get(&self) -> pb::GetExecutionRequest {
        pb::GetExecutionRequest {
            client_id: "acme".into(),
            config_id: self.config_id.clone(),
            business_date: DATE.into(),
        }
    }

    /// Calls GetExecution.
    async fn get_execution(&self, request: Request<pb::GetExecutionRequest>) -> Code {
        match self.server.executions().get_execution(request).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        }
    }

    /// `n` GetExecution calls at once; their codes.
    async fn many(&self, n: usize, client_timeout: Option<Duration>) -> Vec<Code> {
        let calls = (0..n).map(|_| {
            let call = self.get_execution(Request::new(self.get()));
            async move {
                match client_timeout {
                    // Dropping the call resets its stream: the server sees
                    // the caller go away.
                    Some(t) => tokio::time::timeout(t, call)
                        .await
                        .unwrap_or(Code::Cancelled),
                    None => call.await,
                }
            }
        });
        futures_util::future::join_all(calls).await
    }

    /// `n` TriggerJob calls (each a transaction) cancelled by their callers
    /// after `client_timeout`; their codes.
    async fn cancelled_triggers(&self, n: usize, client_timeout: Duration) -> Vec<Code> {
        let calls = (0..n).map(|_| {
            let mut client = self.server.executions();
            let request = pb::TriggerJobRequest {
                override_exception_window: false,
                client_id: "acme".into(),
                config_id: self.config_id.clone(),
                business_date: DATE.into(),
                position: 1,
                reason: String::new(),
            };
            async move {
                let call = client.trigger_job(request);
                match tokio::time::timeout(client_timeout, call).await {
                    Ok(Ok(_)) => Code::Ok,
                    Ok(Err(status)) => status.code(),
                    Err(_) => Code::Cancelled,
                }
            }
        });
        futures_util::future::join_all(calls).await
    }

    /// A session holding an exclusive lock on `tables` until dropped (its
    /// transaction rolls back): every statement touching them waits. The
    /// tables are locked one after the other, so a statement of the server
    /// that holds the second and waits for the first is a deadlock, which
    /// PostgreSQL may settle by refusing the lock: it is then taken again,
    /// once the server's statement has gone through.
    async fn lock(&self, tables: &str) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.server.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let sql = format!("BEGIN; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE");
        let mut attempts = 0;
        loop {
            match client.batch_execute(&sql).await {
                Ok(()) => return client,
                Err(e)
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
                        && attempts < 10 =>
                {
                    attempts += 1;
                    client.batch_execute("ROLLBACK").await.unwrap();
                }
                Err(e) => panic!("lock {tables}: {e}"),
            }
        }
    }

    /// Blocks every read and action on executions until dropped.
    async fn block_reads(&self) -> tokio_postgres::Client {
        self.lock("executions, job_runs").await
    }

    /// Blocks every read of configurations (and nothing the engine's
    /// workers do) until dropped.
    async fn block_config_reads(&self) -> tokio_postgres::Client {
        self.lock("job_schedule_configs").await
    }

    /// The backends of the request pool.
    async fn request_backends(&self) -> BTreeSet<i32> {
        let (client, conn) =
            tokio_postgres::connect(&self.server.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = $1",
                &[&allegro_scheduler::db::API_APPLICATION_NAME],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

#[tokio::test]
async fn cancelled_calls_leave_the_pool_connections_in_place() {
    let fx = setup(|s| {
        s.db_pool_size = 4;
        s.max_concurrent_requests = 10_000;
        s.max_streams_per_connection = 10_000;
    })
    .await;
    // Fill the pool: four calls wait on the lock, each on a connection.
    let lock = fx.block_reads().await;
    let warm = fx.many(4, None);
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(lock);
    };
    let (codes, ()) = tokio::join!(warm, release);
    assert!(codes.iter().all(|c| *c == Code::Ok), "{codes:?}");
    let before = fx.request_backends().await;
    assert_eq!(before.len(), 4, "{before:?}");

    // Hundreds of calls cancelled by their callers, four at a time
    // mid-statement: reads, and actions inside their transaction.
    for _ in 0..3 {
        let lock = fx.block_reads().await;
        let (reads, actions) = tokio::join!(
            fx.many(50, Some(Duration::from_millis(100))),
            fx.cancelled_triggers(50, Duration::from_millis(100)),
        );
        assert!(reads.iter().all(|c| *c == Code::Cancelled), "{reads:?}");
        assert!(actions.iter().all(|c| *c == Code::Cancelled), "{actions:?}");
        drop(lock);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The abandoned calls finish (or give up waiting for a connection).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let codes = fx.many(8, None).await;
    assert!(codes.iter().all(|c| *c == Code::Ok), "{codes:?}");
    let after = fx.request_backends().await;
    assert_eq!(after, before, "connections were replaced");
    fx.server.stop().await;
}

#[tokio::test]
async fn deadlines_answer_deadline_exceeded() {
    let fx = setup(|s| s.request_timeout_ms = 3_000).await;
    let lock = fx.block_reads().await;

    // The caller's deadline.
    let mut request = Request::new(fx.get());
    request.set_timeout(Duration::from_millis(150));
    let started = Instant::now();
    let code = fx.get_execution(request).await;
    let took = started.elapsed();
    assert_eq!(code, Code::DeadlineExceeded);
    assert!(took < Duration::from_millis(2_500), "{took:?}");

    // None sent: the server's default.
    let started = Instant::now();
    let code = fx.get_execution(Request::new(fx.get())).await;
    let took = started.elapsed();
    assert_eq!(code, Code::DeadlineExceeded);
    assert!(took >= Duration::from_millis(2_900), "{took:?}");
    assert!(took < Duration::from_millis(6_000), "{took:?}");

    // A longer deadline than the default is capped by it.
    let mut request = Request::new(fx.get());
    request.set_timeout(Duration::from_secs(60));
    let started = Instant::now();
    assert_eq!(fx.get_execution(request).await, Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_millis(6_000));

    drop(lock);
    assert_eq!(fx.get_execution(Request::new(fx.get())).await, Code::Ok);
    fx.server.stop().await;
}

#[tokio::test]
async fn a_flood_past_the_limit_is_refused_at_once() {
    let fx = setup(|s| {
        s.max_concurrent_requests = 8;
        s.db_pool_size = 8;
        s.db_pool_wait_ms = 10_000;
    })
    .await;
    let lock = fx.block_reads().await;
    // Eight calls within the limit wait on the lock.
    let within = {
        let channel = fx.server.channel.clone();
        let get = fx.get();
        tokio::spawn(async move {
            let calls = (0..8).map(|_| {
                let mut client =
                    pb::execution_service_client::ExecutionServiceClient::new(channel.clone());
                let get = get.clone();
                async move { client.get_execution(get).await.map(|_| ()) }
            });
            futures_util::future::join_all(calls).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The flood: every call refused at once, with a retry hint.
    let started = Instant::now();
    let calls = (0..100).map(|_| {
        let mut client = fx.server.executions();
        let get = fx.get();
        async move { client.get_execution(get).await }
    });
    let refused = futures_util::future::join_all(calls).await;
    let took = started.elapsed();
    for answer in &refused {
        let status = answer.as_ref().expect_err("refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("retry"), "{status:?}");
        assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());
    }
    assert!(took < Duration::from_millis(1000), "{took:?}");

    // Nothing else fails: the calls within the limit answer, and so do the
    // next ones.
    drop(lock);
    for answer in within.await.unwrap() {
        answer.expect("a call within the limit succeeds");
    }
    let codes = fx.many(8, None).await;
    assert!(codes.iter().all(|c| *c == Code::Ok), "{codes:?}");
    fx.server.stop().await;
}

/// The plans of the read statements on realistic sizes (50,000 executions,
/// 100,000 job runs, 400,000 work items, 200,000 status events): each an
/// index lookup, no sequential scan. The statements are those the store
/// sends (diesel's SQL for GetExecution, GetJobStats, ListExecutions and
/// ListJobScheduleConfigs), with the parameters written in.
#[tokio::test]
async fn read_plans_use_indexes_on_realistic_sizes() {
    let url = fresh_database().await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO job_schedule_configs (config_id, client_id, name, frequency, jobs) \
               SELECT md5('c' || c)::uuid, 'client-' || (c % 50), 'config-' || c, 'SCHEDULED', \
                      '[{\"job_type\": \"EMPTY\", \"manual\": false}]' \
               FROM generate_series(1, 500) c; \
             INSERT INTO executions (execution_id, client_id, config_id, config_name, business_date) \
               SELECT md5('e' || c || '-' || d)::uuid, 'client-' || (c % 50), md5('c' || c)::uuid, \
                      'config-' || c, date '2026-01-01' + d \
               FROM generate_series(1, 500) c, generate_series(1, 100) d; \
             INSERT INTO job_runs (execution_id, position, job_type, manual) \
               SELECT execution_id, p, 'EMPTY', false FROM executions, generate_series(1, 2) p; \
             INSERT INTO work_items (job_run_id, seq, account_id, payload) \
               SELECT r, s, 'A' || s, '{}' FROM generate_series(1, 4000) r, generate_series(1, 100) s; \
             INSERT INTO execution_events (client_id, sequence, execution_id, config_id, business_date, body) \
               SELECT 'client-' || (n % 50), n, md5('e' || n)::uuid, md5('c' || (n % 500))::uuid, \
                      date '2026-01-01' + (n % 100), '{}' \
               FROM generate_series(1, 200000) n; \
             ANALYZE",
        )
        .await
        .unwrap();
    let key = "client_id = 'client-7' AND config_id = md5('c7')::uuid";
    let reads = [
        (
            "GetExecution",
            "SELECT * FROM executions LEFT OUTER JOIN job_runs \
             ON executions.execution_id = job_runs.execution_id \
             WHERE executions.client_id = 'client-7' AND executions.config_id = md5('c7')::uuid \
             AND executions.business_date = '2026-02-01' ORDER BY job_runs.position"
                .to_string(),
        ),
        (
            "GetJobStats",
            "SELECT job_runs.* FROM job_runs INNER JOIN executions \
             ON executions.execution_id = job_runs.execution_id \
             WHERE executions.client_id = 'client-7' AND executions.config_id = md5('c7')::uuid \
             AND executions.business_date = '2026-02-01' AND job_runs.position = 1 LIMIT 1"
                .to_string(),
        ),
        (
            "ListExecutions",
            format!("SELECT * FROM executions WHERE {key} ORDER BY business_date DESC LIMIT 51"),
        ),
        (
            "ListJobScheduleConfigs",
            "SELECT * FROM job_schedule_configs WHERE client_id = 'client-7' \
             AND name > 'config-107' ORDER BY name LIMIT 51"
                .to_string(),
        ),
        (
            "drill-down: work items of a job run",
            "SELECT * FROM work_items WHERE job_run_id = 4242 AND seq > 10 ORDER BY seq LIMIT 51"
                .to_string(),
        ),
        (
            "status stream: events after a sequence",
            "SELECT * FROM execution_events WHERE client_id = 'client-7' AND sequence > 199000 \
             ORDER BY sequence LIMIT 500"
                .to_string(),
        ),
    ];
    for (name, sql) in reads {
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {sql}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        for table in ["executions", "job_runs", "work_items", "execution_events"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{name} scans {table}:\n{plan}"
            );
        }
        assert!(plan.contains("Index"), "{name} uses no index:\n{plan}");
    }
    drop(client);
    drop_database(&url).await;
}

/// API backends of the fixture's database waiting on a lock.
async fn waiting_request_backends(fx: &Fixture) -> i64 {
    let (client, conn) = tokio_postgres::connect(&fx.server.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = $1 AND wait_event_type = 'Lock'",
            &[&allegro_scheduler::db::API_APPLICATION_NAME],
        )
        .await
        .unwrap()
        .get(0)
}

/// `n` ListJobScheduleConfigs calls started at once, left running.
fn list_calls(fx: &Fixture, n: usize) -> Vec<tokio::task::JoinHandle<Code>> {
    (0..n)
        .map(|_| {
            let mut configs = fx.server.configs();
            tokio::spawn(async move {
                match configs
                    .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
                        client_id: "acme".into(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn while_the_engine_processes_requests_take_few_places_on_the_database() {
    let fx = setup(|s| {
        s.db_pool_size = 8;
        s.reads_while_processing = 1;
        s.db_pool_wait_ms = 5_000;
        // Every listing must reach the database, where the lock holds it.
        s.config_cache_secs = 0;
    })
    .await;
    let engine = fx.server.server.engine.clone();
    let mut slow = daily("slow", &["SLOW"]);
    slow.frequency = pb::Frequency::Scheduled as i32;
    let config_id = fx.server.create_config("acme", slow).await;
    fx.server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id,
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // One batch of sixty items at 20 ms each: the engine processes for a
    // second or more.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !engine.is_processing() {
        assert!(Instant::now() < deadline, "the engine never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Configuration reads wait on a lock the workers never need: while
    // the engine processes, one of six is on the database, the others wait
    // for its place without a connection.
    let lock = fx.block_config_reads().await;
    let calls = list_calls(&fx, 6);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(engine.is_processing());
    assert_eq!(waiting_request_backends(&fx).await, 1);
    drop(lock);
    for call in calls {
        assert_eq!(call.await.unwrap(), Code::Ok);
    }

    // Once the engine is idle, all six reach the database at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.is_processing() {
        assert!(Instant::now() < deadline, "the engine never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lock = fx.block_config_reads().await;
    let calls = list_calls(&fx, 6);
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting_request_backends(&fx).await < 6 {
        assert!(
            Instant::now() < deadline,
            "the idle engine's requests were held back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(lock);
    for call in calls {
        assert_eq!(call.await.unwrap(), Code::Ok);
    }
    fx.server.stop().await;
}
