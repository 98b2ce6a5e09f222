//! Shared test fixtures: databases copied from a migrated template, servers
//! on port 0, clients.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use allegro_scheduler::billing::core_aria::{CoreAriaClient, DEFAULT_CORE_ARIA_ENDPOINT};
use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::job::JobRegistry;
use allegro_scheduler::server::{self, RunningServer};
use allegro_scheduler::settings::ServeSettings;
use pb::execution_service_client::ExecutionServiceClient;
use pb::job_catalogue_service_client::JobCatalogueServiceClient;
use pb::job_schedule_config_service_client::JobScheduleConfigServiceClient;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The admin URL of the test PostgreSQL server.
pub fn admin_url() -> String {
    std::env::var("ALLEGRO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `admin_url` with another database name.
pub fn url_for(database: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{database}")
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL (see scripts/test.sh)");
    tokio::spawn(conn);
    client
}

/// Name of the template database for the current migrations: a new set of
/// migrations gets a new template.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut entries: Vec<_> = walk(&dir);
        entries.sort();
        let mut hasher = Sha256::new();
        for path in entries {
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update(std::fs::read(&path).unwrap());
        }
        let digest = hasher.finalize();
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("allegro_tpl_{hex}")
    })
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

static TEMPLATE: OnceCell<()> = OnceCell::const_new();

async fn ensure_template() {
    TEMPLATE
        .get_or_init(|| async {
            let admin = admin_client().await;
            // Serialise template creation across test processes.
            admin
                .execute("SELECT pg_advisory_lock(7431002)", &[])
                .await
                .unwrap();
            let tpl = template_name();
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&tpl])
                .await
                .unwrap()
                .is_some();
            if !exists {
                // Old templates and leftover test databases of earlier runs
                // that nothing is connected to (another checkout's tests may
                // be running on the same server: theirs are in use).
                let stale = admin
                    .query(
                        "SELECT datname FROM pg_database d WHERE (datname LIKE 'allegro_tpl_%' \
                         OR datname LIKE 'allegro_test_%') AND NOT EXISTS \
                         (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
                        &[],
                    )
                    .await
                    .unwrap();
                for row in stale {
                    let name: String = row.get(0);
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                        .await;
                }
                let building = format!("{tpl}_building");
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                    .await
                    .unwrap();
                admin
                    .batch_execute(&format!("CREATE DATABASE {building}"))
                    .await
                    .unwrap();
                allegro_scheduler::db::run_migrations(&url_for(&building))
                    .await
                    .expect("migrate template");
                admin
                    .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {tpl}"))
                    .await
                    .unwrap();
            }
            admin
                .execute("SELECT pg_advisory_unlock(7431002)", &[])
                .await
                .unwrap();
        })
        .await;
}

/// A fresh, migrated database for one test; its URL.
pub async fn fresh_database() -> String {
    ensure_template().await;
    let name = format!("allegro_test_{}", uuid::Uuid::new_v4().simple());
    let admin = admin_client().await;
    let mut tries = 0;
    loop {
        match admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE {}",
                template_name()
            ))
            .await
        {
            Ok(()) => break,
            // Another session copying the template at the same instant.
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    url_for(&name)
}

/// A test's server, its database and clients.
pub struct TestServer {
    pub server: RunningServer,
    pub database_url: String,
    pub channel: Channel,
    shutdown: CancellationToken,
}

/// The catalogue jobs, syncing with core Aria at the default endpoint
/// (connected lazily: tests that never run a sync job need no core).
pub fn catalogue_jobs() -> JobRegistry {
    allegro_scheduler::billing::catalogue_registry(
        CoreAriaClient::lazy(DEFAULT_CORE_ARIA_ENDPOINT).expect("valid endpoint"),
    )
}

/// Settings for a test server on `database_url`: quick polling so tests do
/// not wait on idle workers.
pub fn test_settings(database_url: &str) -> ServeSettings {
    let mut s = ServeSettings::for_database(database_url);
    s.poll_ms = 20;
    s.batch_size = 50;
    s.workers = 2;
    s.db_pool_size = 8;
    // Tests that schedule drive the scheduler themselves.
    s.scheduler = false;
    s
}

impl TestServer {
    /// A server with the catalogue jobs on a fresh database.
    pub async fn start() -> Self {
        let url = fresh_database().await;
        Self::start_with(test_settings(&url), catalogue_jobs()).await
    }

    /// A server with these settings and job types.
    pub async fn start_with(settings: ServeSettings, registry: JobRegistry) -> Self {
        Self::start_with_clock(
            settings,
            registry,
            std::sync::Arc::new(allegro_scheduler::clock::SystemClock),
        )
        .await
    }

    /// A server with these settings, job types and clock.
    pub async fn start_with_clock(
        settings: ServeSettings,
        registry: JobRegistry,
        clock: std::sync::Arc<dyn allegro_scheduler::clock::Clock>,
    ) -> Self {
        init_tracing();
        let shutdown = CancellationToken::new();
        let server = server::start_with_clock(&settings, registry, clock, shutdown.clone())
            .await
            .expect("server starts");
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to server");
        Self {
            database_url: settings.database_url.clone().unwrap(),
            server,
            channel,
            shutdown,
        }
    }

    pub fn configs(&self) -> JobScheduleConfigServiceClient<Channel> {
        JobScheduleConfigServiceClient::new(self.channel.clone())
    }

    pub fn executions(&self) -> ExecutionServiceClient<Channel> {
        ExecutionServiceClient::new(self.channel.clone())
    }

    pub fn catalogue(&self) -> JobCatalogueServiceClient<Channel> {
        JobCatalogueServiceClient::new(self.channel.clone())
    }

    /// Graceful shutdown.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.wait().await.expect("clean shutdown");
    }
}

/// A valid configuration of `name`, DAILY, with the given job types.
pub fn daily(name: &str, jobs: &[&str]) -> pb::JobScheduleConfig {
    pb::JobScheduleConfig {
        name: name.to_string(),
        frequency: pb::Frequency::Daily as i32,
        jobs: jobs
            .iter()
            .map(|j| pb::JobSpec {
                job_type: j.to_string(),
                manual: false,
            })
            .collect(),
        ..Default::default()
    }
}

/// The same as [`daily`] but SCHEDULED.
pub fn scheduled(name: &str, jobs: &[&str]) -> pb::JobScheduleConfig {
    pb::JobScheduleConfig {
        frequency: pb::Frequency::Scheduled as i32,
        ..daily(name, jobs)
    }
}

/// The field violations of an INVALID_ARGUMENT status, as field names.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "expected INVALID_ARGUMENT, got {status:?}"
    );
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// The `ErrorInfo.reason` of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// Logs of the servers under test, when `RUST_LOG` asks for them.
pub fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var("RUST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// A codec that sends and receives raw message bytes, to put any bytes on
/// the wire as a request.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder and decoder of [`RawCodec`].
pub struct RawBytes;

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

/// Sends `bytes` as the request message of the unary method `path` (e.g.
/// `/aria.allegro.scheduling.v1.JobCatalogueService/ListJobTypes`).
pub async fn raw_unary(
    channel: &Channel,
    path: &str,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::try_from(path.to_string())
        .map_err(|e| tonic::Status::internal(format!("bad path in the test: {e}")))?;
    grpc.unary(tonic::Request::new(bytes), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

/// Asserts what every error status of the service must satisfy: a code the
/// caller can act on (never INTERNAL, UNKNOWN or CANCELLED), a BadRequest
/// violation naming a field on every INVALID_ARGUMENT, and message plus
/// details under 1 KB. Returns what is wrong, if anything.
pub fn status_problem(status: &tonic::Status) -> Option<String> {
    use tonic::Code;
    use tonic_types::StatusExt;
    if matches!(
        status.code(),
        Code::Internal | Code::Unknown | Code::Cancelled
    ) {
        return Some(format!("code {:?}", status.code()));
    }
    let size = status.message().len() + status.details().len();
    if size >= 1024 {
        return Some(format!("message + details are {size} bytes"));
    }
    if status.code() == Code::InvalidArgument {
        let named = status
            .get_details_bad_request()
            .is_some_and(|b| b.field_violations.iter().any(|v| !v.field.is_empty()));
        if !named {
            return Some("INVALID_ARGUMENT without a BadRequest field violation".into());
        }
    }
    None
}
