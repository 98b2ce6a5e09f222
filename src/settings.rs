//! Service settings, from flags or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::scheduling::api::auth::Limits;
use crate::scheduling::engine::retention::RetentionSettings;
use crate::scheduling::engine::EngineSettings;

/// Settings of `allegro-scheduler serve`. Every flag has an environment
/// variable twin.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeSettings {
    /// Address the gRPC server listens on (port 0 picks a free port).
    #[arg(long, env = "ALLEGRO_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// PostgreSQL URL. When unset, the service starts a private PostgreSQL
    /// cluster under `--data-dir` (the embedded default).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the embedded PostgreSQL cluster keeps its data.
    #[arg(long, env = "ALLEGRO_DATA_DIR", default_value = ".allegro-data")]
    pub data_dir: PathBuf,
    /// Port of the embedded PostgreSQL cluster (127.0.0.1 only).
    #[arg(long, env = "ALLEGRO_EMBEDDED_PG_PORT", default_value_t = 54329)]
    pub embedded_pg_port: u16,
    /// Size of the connection pool of API requests.
    #[arg(long, env = "ALLEGRO_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// Requests on the database at once while the engine is processing
    /// (default: half the cores, at least 1; 0: no limit). Reads running
    /// beside the batches take their CPU; a request past it waits for a
    /// place (up to `--db-pool-wait-ms`) at no cost.
    #[arg(long, env = "ALLEGRO_READS_WHILE_PROCESSING", default_value_t = default_reads_while_processing())]
    pub reads_while_processing: usize,
    /// Seconds a client's configuration listing is served from memory
    /// (0: every listing reads the database). Any change drops it at once
    /// through a database notification; the age only bounds how stale it
    /// could get if the notifications stopped without the service noticing.
    #[arg(long, env = "ALLEGRO_CONFIG_CACHE_SECS", default_value_t = 10)]
    pub config_cache_secs: u64,
    /// Size of the engine's own connection pool (workers, scheduler,
    /// planner, event hub), so API reads never starve batch settles.
    #[arg(long, env = "ALLEGRO_ENGINE_DB_POOL_SIZE", default_value_t = 8)]
    pub engine_db_pool_size: usize,
    /// Milliseconds a statement on a pooled connection may run before
    /// PostgreSQL cancels it (the request answers DEADLINE_EXCEEDED).
    #[arg(
        long,
        env = "ALLEGRO_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub db_statement_timeout_ms: u64,
    /// Milliseconds an API request waits for a pooled connection before it
    /// answers UNAVAILABLE (short: a busy service sheds load rather than
    /// queueing it).
    #[arg(long, env = "ALLEGRO_DB_POOL_WAIT_MS", default_value_t = 1_000)]
    pub db_pool_wait_ms: u64,
    /// Work items per batch.
    #[arg(long, env = "ALLEGRO_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,
    /// Concurrent engine workers in this process (0: serve the API only).
    #[arg(long, env = "ALLEGRO_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Threads of the engine's own runtime, apart from the API's, so a
    /// burst of calls does not slow batch processing (0: the workers share
    /// the API's runtime).
    #[arg(long, env = "ALLEGRO_ENGINE_THREADS", default_value_t = 2)]
    pub engine_threads: usize,
    /// Seconds a claimed batch stays with its worker before another process
    /// may take it over.
    #[arg(long, env = "ALLEGRO_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Milliseconds an idle worker waits before looking for work again.
    #[arg(long, env = "ALLEGRO_POLL_MS", default_value_t = 200)]
    pub poll_ms: u64,
    /// Run the scheduler of automatic runs in this process (every process
    /// may: runs are still created once).
    #[arg(long, env = "ALLEGRO_SCHEDULER", default_value_t = true, action = clap::ArgAction::Set)]
    pub scheduler: bool,
    /// Milliseconds between scheduler ticks.
    #[arg(long, env = "ALLEGRO_SCHEDULER_TICK_MS", default_value_t = 1000)]
    pub scheduler_tick_ms: u64,
    /// Hours after its start instant during which a run missed through
    /// downtime is still started; older ones are recorded as MISSED.
    #[arg(long, env = "ALLEGRO_CATCH_UP_HOURS", default_value_t = 24)]
    pub catch_up_hours: u64,
    /// Core Aria's gRPC address for the sync jobs. Unset: the service starts
    /// the stand-in core in-process on `--standin-listen` and uses it.
    #[arg(long, env = "ALLEGRO_CORE_ARIA_URL")]
    pub core_aria_url: Option<String>,
    /// Where the in-process stand-in core listens when no core is given.
    #[arg(
        long,
        env = "ALLEGRO_STANDIN_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub standin_listen: SocketAddr,
    /// Serve the in-process stand-in core's control service (fault
    /// injection, read-back of what it received): a development tool, off
    /// unless asked for (`scripts/start.sh` turns it on for the embedded
    /// default). It carries no authentication of its own.
    #[arg(long, env = "ALLEGRO_STANDIN_CONTROL")]
    pub standin_control: bool,
    /// When set, and that client has no configuration yet, load a demo
    /// ledger for it and create its DAILY schedule at startup.
    #[arg(long, env = "ALLEGRO_DEMO_CLIENT")]
    pub demo_client: Option<String>,
    /// Accounts in the demo ledger.
    #[arg(long, env = "ALLEGRO_DEMO_ACCOUNTS", default_value_t = 5000)]
    pub demo_accounts: usize,
    /// Hours status events are kept for watchers to resume from.
    #[arg(long, env = "ALLEGRO_EVENT_RETENTION_HOURS", default_value_t = 24)]
    pub event_retention_hours: u64,
    /// Days an execution is kept after its business date (clients may have
    /// their own in `client_retention`); older ones are removed with
    /// everything under them.
    #[arg(long, env = "ALLEGRO_RETENTION_DAYS", default_value_t = 400)]
    pub retention_days: u32,
    /// Seconds between retention passes.
    #[arg(long, env = "ALLEGRO_RETENTION_INTERVAL_SECS", default_value_t = 600)]
    pub retention_interval_secs: u64,
    /// Rows one retention statement deletes at most.
    #[arg(long, env = "ALLEGRO_RETENTION_CHUNK_ROWS", default_value_t = 5000)]
    pub retention_chunk_rows: u32,
    /// TLS: the server's certificate chain (PEM). With `--tls-key`.
    #[arg(long, env = "ALLEGRO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the server's private key (PEM). With `--tls-cert`.
    #[arg(long, env = "ALLEGRO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// TLS: CA certificates (PEM) of client certificates; when set, every
    /// client must present a certificate signed by one of them.
    #[arg(long, env = "ALLEGRO_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Allow listening without TLS on an address other than loopback.
    #[arg(long, env = "ALLEGRO_INSECURE_PLAINTEXT", default_value_t = false)]
    pub insecure_plaintext: bool,
    /// Calls one API key may have in progress at once (status streams
    /// excluded); past it, RESOURCE_EXHAUSTED.
    #[arg(long, env = "ALLEGRO_MAX_REQUESTS_PER_KEY", default_value_t = 64)]
    pub max_requests_per_key: usize,
    /// Status streams one API key may have open at once; past it,
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "ALLEGRO_MAX_STREAMS_PER_KEY", default_value_t = 16)]
    pub max_streams_per_key: usize,
    /// Serve the operator console (a web page signed in with an API key).
    #[arg(long, env = "ALLEGRO_CONSOLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub console: bool,
    /// Address the operator console listens on (plain HTTP: loopback
    /// unless `--insecure-plaintext`; port 0 picks a free port).
    #[arg(long, env = "ALLEGRO_CONSOLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub console_listen: SocketAddr,
    /// Where `/metrics` (Prometheus) is served, on a listener of its own
    /// (port 0 picks a free port).
    #[arg(long, env = "ALLEGRO_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Label work item metrics by client too (one series per client: keep
    /// off with many clients).
    #[arg(long, env = "ALLEGRO_METRICS_BY_CLIENT", default_value_t = false)]
    pub metrics_by_client: bool,
    /// Calls in flight over all connections; past it a call answers
    /// RESOURCE_EXHAUSTED at once with a retry hint.
    #[arg(long, env = "ALLEGRO_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams one connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(
        long,
        env = "ALLEGRO_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_streams_per_connection: u32,
    /// Deadline in milliseconds of a call that sends no `grpc-timeout`, and
    /// the longest one granted; past it, DEADLINE_EXCEEDED.
    #[arg(long, env = "ALLEGRO_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
}

impl ServeSettings {
    /// Settings with defaults for everything but the database, for tests and
    /// embedding.
    pub fn for_database(database_url: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: Some(database_url.to_string()),
            data_dir: PathBuf::from(".allegro-data"),
            embedded_pg_port: 54329,
            db_pool_size: 16,
            reads_while_processing: default_reads_while_processing(),
            config_cache_secs: 10,
            engine_db_pool_size: 8,
            db_statement_timeout_ms: 60_000,
            db_pool_wait_ms: 1_000,
            batch_size: 1000,
            workers: 4,
            engine_threads: 2,
            lease_secs: 30,
            poll_ms: 200,
            scheduler: true,
            scheduler_tick_ms: 1000,
            catch_up_hours: 24,
            event_retention_hours: 24,
            retention_days: 400,
            retention_interval_secs: 600,
            retention_chunk_rows: 5000,
            core_aria_url: None,
            standin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            standin_control: false,
            demo_client: None,
            demo_accounts: 5000,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            insecure_plaintext: false,
            max_requests_per_key: 64,
            max_streams_per_key: 16,
            console: true,
            console_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_by_client: false,
            max_concurrent_requests: 256,
            max_streams_per_connection: 100,
            request_timeout_ms: 30_000,
        }
    }

    /// The bounds on calls in flight and their deadlines.
    pub fn load(&self) -> crate::load::LoadLimits {
        crate::load::LoadLimits {
            max_in_flight: self.max_concurrent_requests.max(1),
            default_deadline: Duration::from_millis(self.request_timeout_ms.max(1)),
        }
    }

    /// The per-key abuse limits.
    pub fn limits(&self) -> Limits {
        Limits {
            requests_per_key: self.max_requests_per_key.max(1),
            streams_per_key: self.max_streams_per_key.max(1),
        }
    }

    /// The API requests' connection pool: its size and timeouts.
    pub fn pool(&self) -> crate::db::PoolOptions {
        crate::db::PoolOptions {
            max_size: self.db_pool_size,
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms.max(1)),
            wait_timeout: Duration::from_millis(self.db_pool_wait_ms.max(1)),
            application_name: crate::db::API_APPLICATION_NAME,
        }
    }

    /// The engine's connection pool: its own size, the same statement
    /// timeout, and the long default wait (a worker waits its turn).
    pub fn engine_pool(&self) -> crate::db::PoolOptions {
        crate::db::PoolOptions {
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms.max(1)),
            ..crate::db::PoolOptions::new(self.engine_db_pool_size.max(1))
        }
    }

    /// How retention of executions runs.
    pub fn retention(&self) -> RetentionSettings {
        RetentionSettings {
            default_days: self.retention_days.max(1),
            interval: Duration::from_secs(self.retention_interval_secs.max(1)),
            chunk_rows: self.retention_chunk_rows.max(10),
        }
    }

    /// The engine's tunables.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            batch_size: self.batch_size.max(1),
            workers: self.workers,
            lease: Duration::from_secs(self.lease_secs.max(1)),
            poll_interval: Duration::from_millis(self.poll_ms.max(1)),
            scheduler: self.scheduler,
            scheduler_tick: Duration::from_millis(self.scheduler_tick_ms.max(10)),
            catch_up: Duration::from_secs(self.catch_up_hours * 3600),
            metrics_by_client: self.metrics_by_client,
        }
    }
}

/// The default of `--reads-while-processing`: half the cores this process
/// may use (1 to 16). Measured on 2 cores with 50 readers polling
/// (`cargo bench --bench api`): one place keeps about 0.7 of the engine's
/// unloaded throughput, two about 0.65, no limit about 0.4.
pub fn default_reads_while_processing() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .clamp(1, 16)
}
