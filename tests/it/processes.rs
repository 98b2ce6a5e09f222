//! Several service processes on one database: a process killed mid-job
//! (SIGKILL) loses nothing, and two live processes share the work without
//! doing anything twice. The service processes are this test binary re-run
//! in child mode (`child_server`), so they carry the test job types.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::server;
use tokio_util::sync::CancellationToken;

use crate::executions::{counts, finished, status};
use crate::support::*;
use crate::test_jobs;

/// Runs a service in this process when started as a child by the tests
/// below; ignored in a normal test run.
#[tokio::test]
#[ignore = "a service process started by other tests"]
async fn child_server() {
    let url = std::env::var("ALLEGRO_CHILD_DATABASE_URL").expect("child mode only");
    let (registry, _) = test_jobs::registry();
    let mut settings = test_settings(&url);
    settings.batch_size = std::env::var("ALLEGRO_CHILD_BATCH_SIZE")
        .unwrap()
        .parse()
        .unwrap();
    settings.lease_secs = std::env::var("ALLEGRO_CHILD_LEASE_SECS")
        .map(|s| s.parse().unwrap())
        .unwrap_or(2);
    settings.workers = 2;
    let running = server::start(&settings, registry, CancellationToken::new())
        .await
        .expect("child server starts");
    println!("CHILD_LISTENING {} {}", running.addr, running.metrics_addr);
    running.wait().await.unwrap();
}

pub(crate) struct ChildServer {
    child: Child,
    channel: KeyedChannel,
    /// Where the child serves `/metrics`.
    pub(crate) metrics_addr: std::net::SocketAddr,
}

impl ChildServer {
    pub(crate) async fn start(database_url: &str, batch_size: usize) -> Self {
        Self::start_with_lease(database_url, batch_size, 2).await
    }

    /// A child service whose leases last `lease_secs`.
    pub(crate) async fn start_with_lease(
        database_url: &str,
        batch_size: usize,
        lease_secs: u64,
    ) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "processes::child_server",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ALLEGRO_CHILD_DATABASE_URL", database_url)
            .env("ALLEGRO_CHILD_BATCH_SIZE", batch_size.to_string())
            .env("ALLEGRO_CHILD_LEASE_SECS", lease_secs.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child service");
        let stdout = child.stdout.take().unwrap();
        let (addr, metrics_addr) = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                let line = lines.next().expect("child printed its address").unwrap();
                // The harness prints "test ... " on the same line first.
                if let Some((_, addr)) = line.split_once("CHILD_LISTENING ") {
                    // Keep draining so the child never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    let mut addrs = addr.split_whitespace();
                    let grpc = addrs.next().unwrap().to_string();
                    let metrics: std::net::SocketAddr = addrs.next().unwrap().parse().unwrap();
                    return (grpc, metrics);
                }
            }
        })
        .await
        .unwrap();
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let key = platform_key(database_url).await;
        Self {
            child,
            channel: keyed(channel, &key),
            metrics_addr,
        }
    }

    pub(crate) fn configs(
        &self,
    ) -> pb::job_schedule_config_service_client::JobScheduleConfigServiceClient<KeyedChannel> {
        pb::job_schedule_config_service_client::JobScheduleConfigServiceClient::new(
            self.channel.clone(),
        )
    }

    pub(crate) fn executions(
        &self,
    ) -> pb::execution_service_client::ExecutionServiceClient<KeyedChannel> {
        pb::execution_service_client::ExecutionServiceClient::new(self.channel.clone())
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) async fn get(&self, config_id: &str) -> pb::Execution {
        self.executions()
            .get_execution(pb::GetExecutionRequest {
                client_id: CLIENT.into(),
                config_id: config_id.into(),
                business_date: "2026-11-24".into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn wait_for(
        &self,
        config_id: &str,
        done: impl Fn(&pb::Execution) -> bool,
    ) -> pb::Execution {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let e = self.get(config_id).await;
            if done(&e) {
                return e;
            }
            assert!(std::time::Instant::now() < deadline, "never held: {e:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn db(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

pub(crate) async fn start_effects_job(server: &ChildServer) -> String {
    let config_id = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: Some(daily("eod", &["EFFECTS"])),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
    server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: CLIENT.into(),
            config_id: config_id.clone(),
            business_date: "2026-11-24".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    config_id
}

#[tokio::test]
async fn a_killed_process_loses_nothing_and_counts_nothing_twice() {
    let url = fresh_database().await;
    let db = db(&url).await;
    db.batch_execute("CREATE TABLE test_effects (account_id text PRIMARY KEY, times int NOT NULL, pid int NOT NULL)")
        .await
        .unwrap();
    let first = ChildServer::start(&url, 100).await;
    let first_pid = first.pid();
    let config_id = start_effects_job(&first).await;
    // Mid-job: some batches settled, most not.
    let mid = first.wait_for(&config_id, |e| counts(e, 1).2 >= 300).await;
    assert!(counts(&mid, 1).2 < 3000, "killed before the end");
    first.kill();

    let second = ChildServer::start(&url, 100).await;
    let e = second.wait_for(&config_id, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (3000, 0, 3000, 0));

    // Every item settled exactly once: each batch settled once, and the
    // settled batches cover the items exactly.
    let row = db
        .query_one(
            "SELECT count(*), COALESCE(sum(processed), 0)::int8, count(*) FILTER (WHERE state <> 'DONE') FROM batches",
            &[],
        )
        .await
        .unwrap();
    let (batches, settled, open): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((batches, settled, open), (30, 3000, 0));
    let counter: i64 = db
        .query_one("SELECT processed FROM job_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(counter, 3000);
    // Every item's work ran; the work of both processes shows, i.e. the
    // second process took over the killed one's batches.
    let effects = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE pid = $1), count(*) FILTER (WHERE pid <> $1) FROM test_effects",
            &[&first_pid],
        )
        .await
        .unwrap();
    let (all, by_first, by_second): (i64, i64, i64) =
        (effects.get(0), effects.get(1), effects.get(2));
    assert_eq!(all, 3000);
    assert!(by_first >= 300 && by_second > 0, "{by_first} / {by_second}");
    drop(second);
}

#[tokio::test]
async fn two_processes_share_the_work_and_do_nothing_twice() {
    let url = fresh_database().await;
    let db = db(&url).await;
    db.batch_execute("CREATE TABLE test_effects (account_id text PRIMARY KEY, times int NOT NULL, pid int NOT NULL)")
        .await
        .unwrap();
    let a = ChildServer::start(&url, 50).await;
    let b = ChildServer::start(&url, 50).await;
    let config_id = start_effects_job(&a).await;
    let e = b.wait_for(&config_id, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (3000, 0, 3000, 0));
    let row = db
        .query_one(
            "SELECT count(*), max(times), count(DISTINCT pid) FROM test_effects",
            &[],
        )
        .await
        .unwrap();
    let (items, max_times, processes): (i64, i32, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(items, 3000, "every item done");
    assert_eq!(max_times, 1, "nothing done twice");
    assert_eq!(processes, 2, "both processes took batches");
    let per_process = db
        .query("SELECT pid, count(*) FROM test_effects GROUP BY pid", &[])
        .await
        .unwrap();
    for r in per_process {
        let pid: i32 = r.get(0);
        assert!(pid == a.pid() || pid == b.pid());
    }
}
