//! What the benchmarks share: a fresh database, an operator key written
//! straight into it, a no-op job, and the figures every report prints
//! (percentiles, peak RSS, CPU seconds). Each benchmark includes it with
//! `mod support;` and uses what it needs.

#![allow(dead_code)]

use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::api::bearer::BearerKey;
use allegro_scheduler::scheduling::domain::access::{ClientScope, Role};
use allegro_scheduler::scheduling::job::{
    ItemOutcome, JobContext, JobError, JobType, PlanStream, PlannedItem, WorkItem,
};
use allegro_scheduler::scheduling::usecases::access::{issue_key, KeyRequest};
use async_trait::async_trait;
use pb::job_schedule_config_service_client::JobScheduleConfigServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A channel sending the benchmark's API key.
pub type Keyed = InterceptedService<Channel, BearerKey>;

/// An operator key for `client`, written straight into the database at
/// `url` (the benchmarks have no admin key to ask with).
pub async fn bench_key(url: &str, client: &str) -> BearerKey {
    let db = allegro_scheduler::db::Db::new(url, 1).unwrap();
    let mut conn = db.conn().await.unwrap();
    let issued = issue_key(
        &mut conn,
        &KeyRequest {
            client_id: client.into(),
            name: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            role: Role::Operator,
            scope: ClientScope::one(client),
            expire_time: None,
            created_by: "bench".into(),
        },
    )
    .await
    .unwrap();
    BearerKey::new(&issued.key).unwrap()
}

/// Creates a SCHEDULED configuration of the `bench` client running `job`
/// and returns its id.
pub async fn scheduled_config(
    configs: &mut JobScheduleConfigServiceClient<Keyed>,
    name: &str,
    job: &str,
) -> String {
    configs
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "bench".into(),
            config: Some(pb::JobScheduleConfig {
                name: name.into(),
                frequency: pb::Frequency::Scheduled as i32,
                jobs: vec![pb::JobSpec {
                    job_type: job.into(),
                    manual: false,
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id
}

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peak resident set of this process so far, in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// The `p` quantile (0 to 1) of `samples`, sorting them.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

/// A plain PostgreSQL connection (for statistics and setup), retrying for
/// a while: other work on a shared PostgreSQL may hold every connection for
/// a moment.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let mut attempts = 0;
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return client;
            }
            Err(e) if attempts < 60 => {
                attempts += 1;
                eprintln!("connect to {url}: {e:?}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("connect to {url}: {e:?}"),
        }
    }
}

/// Drops and creates the database `name` on the server of the admin URL
/// `admin`, and returns its URL.
pub async fn fresh_db(admin: &str, name: &str) -> String {
    let client = connect(admin).await;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

/// Plans `items` items and processes them without doing anything; with
/// `fail`, every item errors.
pub struct NoopJob {
    /// Its catalogue name.
    pub name: &'static str,
    /// How many items it plans.
    pub items: usize,
    /// Every item errors.
    pub fail: bool,
}

#[async_trait]
impl JobType for NoopJob {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "benchmark no-op"
    }
    fn work_item(&self) -> &str {
        "nothing"
    }
    async fn plan(&self, _ctx: &JobContext) -> Result<PlanStream, JobError> {
        let total = self.items;
        let chunk = 10_000;
        let stream = futures_util::stream::iter((0..total.div_ceil(chunk)).map(move |c| {
            let start = c * chunk;
            let end = (start + chunk).min(total);
            Ok((start..end)
                .map(|i| PlannedItem {
                    account_id: format!("A{i:07}"),
                    payload: serde_json::json!({ "i": i }),
                })
                .collect::<Vec<_>>())
        }));
        Ok(Box::pin(stream))
    }
    async fn process(
        &self,
        _ctx: &JobContext,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError> {
        Ok(items
            .iter()
            .map(|_| {
                if self.fail {
                    ItemOutcome::error("BENCH_ERROR", "benchmark item failed on purpose")
                } else {
                    ItemOutcome::Processed
                }
            })
            .collect())
    }
}
