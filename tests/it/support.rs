//! Shared test fixtures: databases copied from a migrated template, servers
//! on port 0, clients.

#![allow(dead_code)]

use std::sync::OnceLock;

use allegro_scheduler::billing::core_aria::{CoreAriaClient, DEFAULT_CORE_ARIA_ENDPOINT};
use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::api::bearer::BearerKey;
use allegro_scheduler::scheduling::domain::access::{ClientScope, Role};
use allegro_scheduler::scheduling::job::JobRegistry;
use allegro_scheduler::scheduling::usecases::access::KeyRequest;
use allegro_scheduler::server::{self, RunningServer};
use allegro_scheduler::settings::ServeSettings;
use pb::access_service_client::AccessServiceClient;
use pb::execution_service_client::ExecutionServiceClient;
use pb::job_catalogue_service_client::JobCatalogueServiceClient;
use pb::job_schedule_config_service_client::JobScheduleConfigServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The client most tests act for.
pub const CLIENT: &str = "acme";

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

/// A tag of this checkout, so that test runs of several checkouts on one
/// PostgreSQL server never touch each other's databases.
fn checkout_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| hash_hex(env!("CARGO_MANIFEST_DIR").as_bytes(), 4))
}

fn hash_hex(bytes: &[u8], len: usize) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)[..len]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Name of the template database for the current migrations of this
/// checkout: a new set of migrations gets a new template.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut entries: Vec<_> = walk(&dir);
        entries.sort();
        let mut content = Vec::new();
        for path in entries {
            content.extend(
                path.strip_prefix(&dir)
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes(),
            );
            content.extend(std::fs::read(&path).unwrap());
        }
        format!("allegro_tpl_{}_{}", checkout_tag(), hash_hex(&content, 6))
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

/// Advisory lock key serialising template builds and copies of this
/// checkout (a copy fails while another session reads the template).
fn lock_key() -> i64 {
    i64::from_str_radix(checkout_tag(), 16).unwrap()
}

/// Builds the template if it is missing: drops this checkout's stale
/// templates and leftover test databases nothing is connected to, then
/// migrates a new one. Called under the checkout's advisory lock.
async fn ensure_template(admin: &tokio_postgres::Client) {
    let tpl = template_name();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&tpl])
        .await
        .unwrap()
        .is_some();
    if exists {
        return;
    }
    let tag = checkout_tag();
    let stale = admin
        .query(
            "SELECT datname FROM pg_database d WHERE (datname LIKE $1 OR datname LIKE $2) \
             AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            &[
                &format!("allegro_tpl_{tag}_%"),
                &format!("allegro_test_{tag}_%"),
            ],
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

/// Once per test process: drops this checkout's test databases that earlier
/// runs left behind (a test that failed before stopping its server), when
/// nothing is connected to them.
async fn drop_leftovers(admin: &tokio_postgres::Client) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let ours = format!("allegro_test_{}_{}_%", checkout_tag(), std::process::id());
    let stale = admin
        .query(
            "SELECT datname FROM pg_database d WHERE datname LIKE $1 AND datname NOT LIKE $2 \
             AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            &[&format!("allegro_test_{}_%", checkout_tag()), &ours],
        )
        .await
        .unwrap();
    for row in stale {
        let name: String = row.get(0);
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await;
    }
}

/// A new, migrated, empty database for one test (a copy of the template);
/// [`TestServer::stop`] drops it.
pub async fn fresh_database() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "allegro_test_{}_{}_{}",
        checkout_tag(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let admin = admin_client().await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&lock_key()])
        .await
        .unwrap();
    ensure_template(&admin).await;
    drop_leftovers(&admin).await;
    let created = admin
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            template_name()
        ))
        .await;
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&lock_key()])
        .await
        .unwrap();
    created.expect("create test database");
    drop_at_exit(&name);
    url_for(&name)
}

/// The test databases this process made, dropped when it exits: many
/// tests end without stopping their server (or fail before they do), and
/// one database per test is for that test alone.
static CREATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Remembers `name` for [`drop_created_databases`], registered to run at
/// exit with the first database.
fn drop_at_exit(name: &str) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    CREATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name.to_string());
    REGISTERED.call_once(|| {
        // SAFETY: registers a plain function without arguments to run at
        // exit; it does its work on a thread of its own.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(drop_created_databases);
        }
    });
}

/// Drops every database [`fresh_database`] made in this process that is
/// still there. Runs at exit, when the thread-locals of the main thread
/// (tokio's among them) are gone, so on a new thread with a runtime of its
/// own; a failure (a panic there ends only that thread) leaves the
/// databases to the next run's [`drop_leftovers`].
extern "C" fn drop_created_databases() {
    let names = std::mem::take(&mut *CREATED.lock().unwrap_or_else(|e| e.into_inner()));
    if names.is_empty() {
        return;
    }
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let admin = admin_client().await;
            for name in names {
                drop_named(&admin, &name).await;
            }
        });
    })
    .join();
}

/// Drops a test's database (its server has stopped).
pub async fn drop_database(url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    if !name.starts_with("allegro_test_") {
        return;
    }
    drop_named(&admin_client().await, name).await;
}

/// Drops the test database `name`, ending any session still on it.
async fn drop_named(admin: &tokio_postgres::Client, name: &str) {
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// Name of the key every test server's clients use: the actor the action
/// history shows for their calls.
pub const TEST_KEY_NAME: &str = "ops@aria";

/// A channel that sends an API key with every call.
pub type KeyedChannel = InterceptedService<Channel, BearerKey>;

/// `channel` sending `key`.
pub fn keyed(channel: Channel, key: &str) -> KeyedChannel {
    InterceptedService::new(channel, BearerKey::new(key).expect("ASCII key"))
}

/// Writes a key straight into the database at `database_url` (as the
/// `create-admin-key` command does); returns the key text.
pub async fn issue_key(
    database_url: &str,
    name: &str,
    role: Role,
    managing_client: &str,
    scope: ClientScope,
    expire_time: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let db = allegro_scheduler::db::Db::new(database_url, 1).expect("pool");
    let mut conn = db.conn().await.expect("connection");
    allegro_scheduler::scheduling::usecases::access::issue_key(
        &mut conn,
        &KeyRequest {
            client_id: managing_client.to_string(),
            name: name.to_string(),
            role,
            scope,
            expire_time,
            created_by: "tests".to_string(),
        },
    )
    .await
    .expect("issue key")
    .key
}

/// A platform admin key for every client, named [`TEST_KEY_NAME`] (managed
/// by a client of its own, so several servers on one database each get one).
pub async fn platform_key(database_url: &str) -> String {
    let manager = format!("tests-{}", uuid::Uuid::new_v4().simple());
    issue_key(
        database_url,
        TEST_KEY_NAME,
        Role::Admin,
        &manager,
        ClientScope::All,
        None,
    )
    .await
}

/// A test's server, its database and clients.
pub struct TestServer {
    pub server: RunningServer,
    pub database_url: String,
    /// Sends the platform admin key [`TestServer::key`] with every call.
    pub channel: KeyedChannel,
    /// Sends no key.
    pub raw_channel: Channel,
    /// A platform admin key for every client.
    pub key: String,
    shutdown: CancellationToken,
    /// The database was made for this server alone ([`TestServer::start`]):
    /// stopping drops it. Servers started on a given URL leave it for the
    /// next server of the test (restarts, several processes).
    pub owns_database: bool,
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
        let mut server = Self::start_with(test_settings(&url), catalogue_jobs()).await;
        server.owns_database = true;
        server
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
        let raw_channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to server");
        let database_url = settings.database_url.clone().unwrap();
        let key = platform_key(&database_url).await;
        Self {
            database_url,
            server,
            channel: keyed(raw_channel.clone(), &key),
            raw_channel,
            key,
            shutdown,
            owns_database: false,
        }
    }

    /// Creates `config` for `client` with the admin key and answers its
    /// id: the setup most tests begin with.
    pub async fn create_config(&self, client: &str, config: pb::JobScheduleConfig) -> String {
        self.configs()
            .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                client_id: client.into(),
                config: Some(config),
            })
            .await
            .expect("configuration created")
            .into_inner()
            .config_id
    }

    pub fn configs(&self) -> JobScheduleConfigServiceClient<KeyedChannel> {
        JobScheduleConfigServiceClient::new(self.channel.clone())
    }

    pub fn executions(&self) -> ExecutionServiceClient<KeyedChannel> {
        ExecutionServiceClient::new(self.channel.clone())
    }

    pub fn catalogue(&self) -> JobCatalogueServiceClient<KeyedChannel> {
        JobCatalogueServiceClient::new(self.channel.clone())
    }

    pub fn access(&self) -> AccessServiceClient<KeyedChannel> {
        AccessServiceClient::new(self.channel.clone())
    }

    /// Graceful shutdown; the database goes too when the server owns it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.wait().await.expect("clean shutdown");
        if self.owns_database {
            drop_database(&self.database_url).await;
        }
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
    channel: &KeyedChannel,
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
