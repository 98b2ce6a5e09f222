//! Recovery without waiting out leases: a dead process's batches are taken
//! over as soon as its liveness lock is free, and a shutdown settles what
//! is in flight before it ends status streams with UNAVAILABLE.

use std::collections::HashSet;
use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use pb::watch_event::Kind;

use crate::executions::{counts, finished, status};
use crate::processes::{db, start_effects_job, ChildServer};
use crate::support::*;
use crate::test_jobs;

#[tokio::test]
async fn a_killed_process_holding_hour_long_leases_is_taken_over_at_once() {
    let url = fresh_database().await;
    let db = db(&url).await;
    db.batch_execute(
        "CREATE TABLE test_effects (account_id text PRIMARY KEY, times int NOT NULL, pid int NOT NULL)",
    )
    .await
    .unwrap();
    let first = ChildServer::start_with_lease(&url, 100, 3600).await;
    let config_id = start_effects_job(&first).await;
    first.wait_for(&config_id, |e| counts(e, 1).2 >= 300).await;
    first.kill();
    // The dead process still holds batches, leased for an hour.
    let held: i64 = db
        .query_one(
            "SELECT count(*) FROM batches WHERE state = 'CLAIMED' AND lease_until > now() + interval '50 minutes'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held > 0, "the killed process held batches");

    let started = std::time::Instant::now();
    let second = ChildServer::start_with_lease(&url, 100, 3600).await;
    let e = second.wait_for(&config_id, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (3000, 0, 3000, 0));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "finished in {:?}, long before the leases end",
        started.elapsed()
    );
    let open: i64 = db
        .query_one("SELECT count(*) FROM batches WHERE state <> 'DONE'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0);
    // Every claim after the first of a batch was a takeover (nothing was
    // released: the job never fails), and the second process counted each.
    // (Read from the rows, not from `held`: a claim or settle the killed
    // process had sent may still commit after `held` was read.)
    let reclaims: i64 = db
        .query_one(
            "SELECT COALESCE(sum(attempts - 1), 0)::int8 FROM batches",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reclaims > 0, "the second process took batches over");
    let m = crate::observability::Samples::scrape(second.metrics_addr).await;
    assert_eq!(m.get("allegro_lease_takeovers_total", &[]), reclaims as f64);
    drop(second);
    drop_database(&url).await;
}

async fn watch(
    channel: &KeyedChannel,
    config_id: &str,
    after: u64,
) -> tonic::codec::Streaming<pb::WatchEvent> {
    pb::execution_service_client::ExecutionServiceClient::new(channel.clone())
        .watch_executions(pb::WatchExecutionsRequest {
            client_id: "acme".into(),
            config_id: config_id.into(),
            business_date: String::new(),
            after_sequence: after,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn shutdown_mid_job_settles_in_flight_batches_and_watchers_resume_elsewhere() {
    let url = fresh_database().await;
    let settings = || {
        let mut s = test_settings(&url);
        s.batch_size = 5;
        s.lease_secs = 3600;
        s
    };
    let (registry, _) = test_jobs::registry();
    let a = TestServer::start_with(settings(), registry).await;
    let config_id = a.create_config("acme", daily("eod", &["SLOW"])).await;
    let mut stream = watch(&a.channel, &config_id, 0).await;
    a.executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id: config_id.clone(),
            business_date: "2026-11-24".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Read until some items settled, then shut down mid-job.
    let mut seen = HashSet::new();
    let mut last = 0;
    loop {
        let e = stream.message().await.unwrap().unwrap();
        last = last.max(e.sequence);
        seen.insert(e.sequence);
        if matches!(&e.kind, Some(Kind::CountsChanged(c)) if c.counts.unwrap().processed >= 10) {
            break;
        }
    }
    let stopping = tokio::spawn(a.stop());
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(e)) => {
                last = last.max(e.sequence);
                seen.insert(e.sequence);
            }
            Ok(None) => panic!("the stream ended OK; a watcher cannot tell it from an end"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), tonic::Code::Unavailable);
    assert!(
        end.message().contains("after_sequence"),
        "{}",
        end.message()
    );
    stopping.await.unwrap();

    let db = crate::processes::db(&url).await;
    let (claimed, done): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'CLAIMED'), count(*) FILTER (WHERE state = 'DONE') FROM batches",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(claimed, 0, "no batch left CLAIMED by the shutdown");
    assert!(done < 12, "stopped mid-job ({done} of 12 batches done)");

    // A new process; the watcher resumes where it was.
    let (registry, _) = test_jobs::registry();
    let b = TestServer::start_with(settings(), registry).await;
    let mut resumed = watch(&b.channel, &config_id, last).await;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), resumed.message())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        assert!(e.sequence > last, "nothing twice");
        seen.insert(e.sequence);
        if matches!(&e.kind, Some(Kind::ExecutionChanged(c)) if c.status == pb::Status::Completed as i32)
        {
            break;
        }
    }
    // Every status change and action was seen (only superseded counts may
    // be coalesced away).
    let rows = db
        .query(
            "SELECT sequence FROM execution_events WHERE client_id = 'acme' AND body->>'type' <> 'CountsChanged' ORDER BY sequence",
            &[],
        )
        .await
        .unwrap();
    let missed: Vec<i64> = rows
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .filter(|s| !seen.contains(&(*s as u64)))
        .collect();
    assert!(missed.is_empty(), "missed events {missed:?}");
    let e = b
        .executions()
        .get_execution(pb::GetExecutionRequest {
            client_id: "acme".into(),
            config_id: config_id.clone(),
            business_date: "2026-11-24".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts(&e, 1), (60, 0, 60, 0));
    b.stop().await;
    drop_database(&url).await;
}

/// A PostgreSQL cluster of this test alone, under `target/`, on a free
/// port: the shared server is never restarted.
struct PrivateCluster {
    dir: std::path::PathBuf,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    let root = unsafe_is_root();
    let mut command = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")]);
        c
    } else {
        std::process::Command::new(format!("{PG_BIN}/{program}"))
    };
    let out = command
        .args(args)
        .output()
        .expect("run a PostgreSQL binary");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn unsafe_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivateCluster {
    fn start() -> Option<Self> {
        if !std::path::Path::new(PG_BIN).join("initdb").exists() {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("restart-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if unsafe_is_root() {
            let chown = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let data = dir.join("data");
        let d = data.to_str().unwrap();
        as_postgres(
            "initdb",
            &["-D", d, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            dir.to_str().unwrap()
        );
        let log = dir.join("log");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                d,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        Some(Self { dir, port })
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn restart(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        // With a log file, so the server holds no pipe of ours open.
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = std::process::Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{PG_BIN}/pg_ctl"),
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_database_restart_mid_batch_loses_nothing_and_waits_for_no_lease() {
    let Some(cluster) = PrivateCluster::start() else {
        panic!("PostgreSQL 15 server binaries are needed for this test ({PG_BIN})");
    };
    let url = cluster.url();
    let mut settings = test_settings(&url);
    settings.batch_size = 5;
    settings.lease_secs = 3600;
    let (registry, _) = test_jobs::registry();
    let server = TestServer::start_with(settings, registry).await;
    let config_id = server.create_config("acme", daily("eod", &["SLOW"])).await;
    let get = || {
        let mut executions = server.executions();
        let config_id = config_id.clone();
        async move {
            executions
                .get_execution(pb::GetExecutionRequest {
                    client_id: "acme".into(),
                    config_id,
                    business_date: "2026-11-24".into(),
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id: config_id.clone(),
            business_date: "2026-11-24".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get().await.map(|e| counts(&e, 1).2).unwrap_or(0) < 10 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Batches of 100 ms are in flight on both workers.
    let restart = tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    });
    let cluster = restart.await.unwrap();

    let started = std::time::Instant::now();
    let e = loop {
        if let Ok(e) = get().await {
            if finished(&e) {
                break e;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not finished a minute after the restart (leases are an hour)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (60, 0, 60, 0));
    let db = crate::processes::db(&url).await;
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE state <> 'DONE'), COALESCE(sum(processed), 0)::int8 FROM batches",
            &[],
        )
        .await
        .unwrap();
    let (open, settled): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((open, settled), (0, 60), "every item settled exactly once");
    server.stop().await;
    drop(cluster);
}
