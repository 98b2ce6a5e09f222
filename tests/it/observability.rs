//! What an operator sees from the outside: `/metrics` read with an
//! exposition-format parser, and a real Prometheus scraping it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tonic::Code;

use crate::executions::{counts, finished, setup};

const DATE: &str = "2026-11-24";
const EXECUTIONS: &str = "/aria.allegro.scheduling.v1.ExecutionService";
const CONFIGS: &str = "/aria.allegro.scheduling.v1.JobScheduleConfigService";

/// GET `path` on `addr`: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The samples of one scrape, by metric name and sorted label pairs.
pub struct Samples(HashMap<(String, Vec<(String, String)>), f64>);

impl Samples {
    pub async fn scrape(addr: SocketAddr) -> Self {
        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        let mut samples = HashMap::new();
        for sample in scrape.samples {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.sort();
            samples.insert((sample.metric, labels), value);
        }
        Self(samples)
    }

    /// The value of `metric` with exactly `labels` (0 when absent).
    pub fn get(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.0
            .get(&(metric.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether any sample of `metric` exists.
    pub fn has(&self, metric: &str) -> bool {
        self.0.keys().any(|(name, _)| name == metric)
    }
}

#[tokio::test]
async fn metrics_count_the_items_of_an_execution_and_the_rpcs_made() {
    let fx = setup(&[("FLAKY", false), ("ITEMS_75", false)]).await;
    // A status stream follows the execution to its end.
    let mut stream = fx
        .server
        .executions()
        .watch_executions(pb::WatchExecutionsRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: String::new(),
            after_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the execution's end in time")
            .unwrap()
            .expect("stream open");
        if matches!(&event.kind, Some(pb::watch_event::Kind::ExecutionChanged(c))
            if c.status == pb::Status::Error as i32)
        {
            break;
        }
    }
    let (total, _, processed, errored) = counts(&e, 1);
    assert!(
        processed > 0 && errored > 0,
        "FLAKY both processes and errors"
    );

    // One refused call, with its own code.
    let refused = fx
        .server
        .executions()
        .get_execution(pb::GetExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: "24/11/2026".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    let m = Samples::scrape(fx.server.server.metrics_addr).await;
    let flaky = [("job_type", "FLAKY")];
    assert_eq!(
        m.get("allegro_work_items_planned_total", &flaky),
        total as f64
    );
    assert_eq!(
        m.get("allegro_work_items_processed_total", &flaky),
        processed as f64
    );
    assert_eq!(
        m.get("allegro_work_items_errored_total", &flaky),
        errored as f64
    );
    // The second job never started: the execution stopped on the error.
    assert_eq!(
        m.get(
            "allegro_work_items_processed_total",
            &[("job_type", "ITEMS_75")]
        ),
        0.0
    );
    assert!(m.get("allegro_batches_claimed_total", &[]) >= 4.0);
    assert!(m.get("allegro_batches_ended_total", &[("outcome", "settled")]) >= 4.0);

    let create = format!("{CONFIGS}/CreateJobScheduleConfig");
    let process = format!("{EXECUTIONS}/ProcessExecution");
    let get = format!("{EXECUTIONS}/GetExecution");
    let requests = "allegro_grpc_requests_total";
    assert_eq!(m.get(requests, &[("method", &create), ("code", "OK")]), 1.0);
    assert_eq!(
        m.get(requests, &[("method", &process), ("code", "OK")]),
        1.0
    );
    assert!(m.get(requests, &[("method", &get), ("code", "OK")]) >= 1.0);
    assert_eq!(
        m.get(requests, &[("method", &get), ("code", "INVALID_ARGUMENT")]),
        1.0
    );
    assert!(
        m.get(
            "allegro_grpc_request_duration_seconds_count",
            &[("method", &get)]
        ) >= 2.0
    );
    assert_eq!(m.get("allegro_status_streams_open", &[]), 1.0);
    // The stream has taken every event up to the execution's end.
    assert!(m.has("allegro_events_pending_delivery"));
    assert_eq!(m.get("allegro_events_pending_delivery", &[]), 0.0);
    // One process, nobody's lease expired.
    assert!(m.has("allegro_lease_takeovers_total"));
    assert_eq!(m.get("allegro_lease_takeovers_total", &[]), 0.0);

    // Scraped from the database: the execution is in ERROR.
    assert_eq!(
        m.get(
            "allegro_executions",
            &[("status", "ERROR"), ("phase", "STOPPED_ON_ERROR")]
        ),
        1.0
    );
    assert_eq!(m.get("allegro_ready_batches", &[]), 0.0);
    assert!(m.get("allegro_db_pool_connections", &[("state", "max_size")]) >= 1.0);
    assert!(m.has("allegro_claim_latency_seconds_count"));
    assert!(m.has("allegro_plan_duration_seconds_count"));

    // Once the stream is closed, it counts as a finished call.
    drop(stream);
    let watch = format!("{EXECUTIONS}/WatchExecutions");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = Samples::scrape(fx.server.server.metrics_addr).await;
        if m.get("allegro_status_streams_open", &[]) == 0.0 {
            assert!(
                m.get(
                    "allegro_grpc_request_duration_seconds_count",
                    &[("method", &watch)]
                ) >= 1.0
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fx.server.stop().await;
}

#[tokio::test]
async fn an_unknown_path_is_served_as_not_found() {
    let fx = setup(&[("EMPTY", false)]).await;
    let (status, _) = http_get(fx.server.server.metrics_addr, "/nothing").await;
    assert_eq!(status, 404);
    fx.server.stop().await;
}

/// A tool from the Debian package `prometheus` (scripts/test.sh installs
/// it); `None`, said loudly, when it is not installed.
fn prometheus_tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        eprintln!(
            "SKIPPED: `{name}` is not installed (Debian package `prometheus`; \
             scripts/test.sh installs it)"
        );
    }
    found
}

fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn the_sample_scrape_config_and_alert_rules_pass_promtool() {
    let Some(promtool) = prometheus_tool("promtool") else {
        return;
    };
    let dir = deploy_dir();
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A free port on loopback (Prometheus cannot listen on port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_processed_counter() {
    let Some(prometheus) = prometheus_tool("prometheus") else {
        return;
    };
    let fx = setup(&[("ITEMS_120", false)]).await;
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(counts(&e, 1).2, 120);

    // The sample configuration, pointed at this server, scraping every
    // second.
    let work = std::env::temp_dir().join(format!("allegro-prometheus-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).unwrap();
    let config = std::fs::read_to_string(deploy_dir().join("prometheus.yml"))
        .unwrap()
        .replace("127.0.0.1:9464", &fx.server.server.metrics_addr.to_string())
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    assert!(config.contains(&fx.server.server.metrics_addr.to_string()));
    std::fs::write(work.join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy_dir().join("alerts.yml"), work.join("alerts.yml")).unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = tokio::process::Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            work.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let found = loop {
        if let Some(value) = query_processed(web).await {
            if value == 120.0 {
                break true;
            }
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    child.kill().await.ok();
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        found,
        "Prometheus never reported 120 processed ITEMS_120 items"
    );
    fx.server.stop().await;
}

/// The processed counter of ITEMS_120 as Prometheus's query API answers it
/// (`None` until Prometheus is up and has scraped).
async fn query_processed(web: SocketAddr) -> Option<f64> {
    if tokio::net::TcpStream::connect(web).await.is_err() {
        return None;
    }
    let (status, body) = http_get(
        web,
        "/api/v1/query?query=allegro_work_items_processed_total",
    )
    .await;
    if status != 200 {
        return None;
    }
    let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
    answer["data"]["result"]
        .as_array()?
        .iter()
        .find(|series| series["metric"]["job_type"] == "ITEMS_120")
        .and_then(|series| series["value"][1].as_str()?.parse().ok())
}
