//! The service's PostgreSQL: one connection pool shared by both wings'
//! stores, the embedded migrations, and the error of the store layer.

use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

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

impl DbError {
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

/// The connection pool of the service.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncPgConnection>,
    url: String,
}

impl Db {
    /// Builds a pool of at most `max_size` connections to `url`. Connects
    /// lazily.
    pub fn new(url: &str, max_size: usize) -> Result<Self, DbError> {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
        let pool = Pool::builder(manager)
            .max_size(max_size)
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

    /// The database URL, for connections that must not be pooled (LISTEN).
    pub fn url(&self) -> &str {
        &self.url
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
