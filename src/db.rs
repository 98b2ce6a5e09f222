//! The service's PostgreSQL: one connection pool shared by both wings'
//! stores, the embedded migrations, and the error of the store layer.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as QueryError};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use futures_util::FutureExt as _;

/// Migrations of `migrations/`, compiled into the binary and applied at
/// startup.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key held while migrating, so several processes starting on
/// one database migrate one after the other.
const MIGRATION_LOCK_KEY: i64 = 0x616c_6c65_6772_6f01;

/// A pooled PostgreSQL connection.
pub type Conn = Object<AsyncPgConnection>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The query failed in the database.
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    /// No connection could be had from the pool.
    #[error("database unavailable: {0}")]
    Pool(String),
    /// A stored value does not parse (a state name, a time zone, a rule):
    /// the row was written by something other than this service.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Applying the embedded migrations failed.
    #[error("migrations failed: {0}")]
    Migration(String),
}

/// What a failed store operation means for the caller, so the one error
/// mapping can answer with a code the caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The transaction lost a serialization check or a deadlock: retrying
    /// the request may succeed (ABORTED).
    Conflict,
    /// A statement ran past the pool's statement timeout
    /// (DEADLINE_EXCEEDED).
    Timeout,
    /// The database is unreachable: the connection was lost or none could
    /// be had in time (UNAVAILABLE).
    Unavailable,
    /// Anything else is a bug of the service (INTERNAL).
    Bug,
}

impl DbError {
    /// Classifies the failure. diesel-async keeps only some SQLSTATEs as
    /// error kinds (serialization failure, lost connection); deadlocks
    /// (40P01), statement timeouts (57014) and server shutdowns (57P01..3)
    /// arrive as `Unknown` and are recognised by PostgreSQL's message, which
    /// is in English unless the server sets another `lc_messages`.
    pub fn failure(&self) -> Failure {
        let (kind, message) = match self {
            DbError::Pool(_) => return Failure::Unavailable,
            DbError::Migration(_) | DbError::Corrupt(_) => return Failure::Bug,
            DbError::Query(QueryError::DatabaseError(kind, info)) => (kind, info.message()),
            DbError::Query(_) => return Failure::Bug,
        };
        match kind {
            DatabaseErrorKind::SerializationFailure => Failure::Conflict,
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                Failure::Unavailable
            }
            _ if message.starts_with("deadlock detected") => Failure::Conflict,
            _ if message.starts_with("canceling statement due to statement timeout") => {
                Failure::Timeout
            }
            _ if message.starts_with("terminating connection")
                || message.starts_with("the database system is") =>
            {
                Failure::Unavailable
            }
            _ => Failure::Bug,
        }
    }

    /// The name of the unique constraint this error violated, if it is one.
    pub fn unique_violation(&self) -> Option<&str> {
        match self {
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                info,
            )) => info.constraint_name(),
            _ => None,
        }
    }
}

/// `application_name` of the service's pooled connections, so its
/// sessions are recognisable in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "allegro-scheduler";

/// `application_name` of the API requests' pool, told apart from the
/// engine's in `pg_stat_activity`.
pub const API_APPLICATION_NAME: &str = "allegro-scheduler-api";

/// How the pool treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Most connections.
    pub max_size: usize,
    /// `statement_timeout` of every pooled connection: a statement running
    /// longer is cancelled and the request answers DEADLINE_EXCEEDED.
    pub statement_timeout: Duration,
    /// How long a request waits for a free connection (or for a new one to
    /// connect) before it answers UNAVAILABLE.
    pub wait_timeout: Duration,
    /// `application_name` of its connections.
    pub application_name: &'static str,
}

impl PoolOptions {
    /// `max_size` connections with the default timeouts (statement 60 s,
    /// wait 30 s).
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size,
            statement_timeout: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(30),
            application_name: APPLICATION_NAME,
        }
    }
}

/// The connection pool of the service.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncPgConnection>,
    url: String,
}

/// Connects to `url` and applies the session settings of the pool.
async fn connect(
    url: String,
    statement_timeout: Duration,
    application_name: &'static str,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = <AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url).await?;
    let setup = format!(
        "SET statement_timeout = {}; SET application_name = '{application_name}'",
        statement_timeout.as_millis().max(1)
    );
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &setup)
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

impl Db {
    /// Builds a pool of at most `max_size` connections to `url` with the
    /// default timeouts of [`PoolOptions::new`]. Connects lazily.
    pub fn new(url: &str, max_size: usize) -> Result<Self, DbError> {
        Self::with_options(url, PoolOptions::new(max_size))
    }

    /// Builds a pool to `url` as `options` say. Every new connection gets
    /// the statement timeout and the application name. Connects lazily.
    pub fn with_options(url: &str, options: PoolOptions) -> Result<Self, DbError> {
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        // No `SELECT 1` on every checkout: that was a round trip (and a
        // transaction) per request. A connection found broken is still
        // dropped (diesel-async marks it), and a lost server answers
        // UNAVAILABLE on the next statement.
        config.recycling_method = RecyclingMethod::Fast;
        let statement_timeout = options.statement_timeout;
        let application_name = options.application_name;
        config.custom_setup = Box::new(move |url| {
            connect(url.to_string(), statement_timeout, application_name).boxed()
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(options.max_size)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.wait_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))?;
        Ok(Self {
            pool,
            url: url.to_string(),
        })
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> Result<Conn, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| DbError::Pool(e.to_string()))
    }

    /// The pool's connections now (open, available, waiting), for the
    /// metrics endpoint.
    pub fn pool_status(&self) -> deadpool::Status {
        self.pool.status()
    }

    /// The database URL, for connections that must not be pooled (LISTEN).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key that signs page tokens: made once per database (at the first
    /// start after the migration that created its table) and shared by every
    /// process on it, so any replica accepts the tokens of another.
    pub async fn page_token_key(&self) -> Result<Vec<u8>, DbError> {
        use diesel::sql_types::Bytea;
        use diesel_async::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct Secret {
            #[diesel(sql_type = Bytea)]
            page_token_key: Vec<u8>,
        }

        let mut conn = self.conn().await?;
        // gen_random_uuid() draws from PostgreSQL's strong random source;
        // two of them give 244 random bits.
        diesel::sql_query(
            "INSERT INTO service_secrets (id, page_token_key) VALUES (1, \
             decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')) \
             ON CONFLICT (id) DO NOTHING",
        )
        .execute(&mut conn)
        .await?;
        let secret: Secret =
            diesel::sql_query("SELECT page_token_key FROM service_secrets WHERE id = 1")
                .get_result(&mut conn)
                .await?;
        Ok(secret.page_token_key)
    }

    /// Applies pending migrations under an advisory lock.
    pub async fn migrate(&self) -> Result<(), DbError> {
        run_migrations(&self.url).await
    }
}

/// Applies the embedded migrations to the database at `url`. Runs on a
/// blocking thread: diesel's migration harness is synchronous.
pub async fn run_migrations(url: &str) -> Result<(), DbError> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
        use diesel_migrations::MigrationHarness;

        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| DbError::Migration(e.to_string()))?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)?;
        let result = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|applied| {
                for m in applied {
                    tracing::info!(migration = %m, "applied migration");
                }
            })
            .map_err(|e| DbError::Migration(e.to_string()));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)?;
        result
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}
