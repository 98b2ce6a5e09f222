//! How a process makes its liveness known, and how the others notice its
//! death at once instead of waiting out its leases.
//!
//! Each process holds a session advisory lock, keyed by its worker id, on a
//! dedicated connection outside the pool. PostgreSQL releases the lock the
//! moment that session ends, so when the process dies (even by SIGKILL) its
//! lock is free. Every process runs a reaper that looks, once a second, at
//! the owners of CLAIMED batches and of plans in progress: the leases of an
//! owner whose lock is free end now, and the work is claimed again at once.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Engine;
use crate::db::DbError;
use crate::scheduling::store::work;

/// How often the reaper looks for the work of dead processes.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// The advisory lock key of a worker id: its first eight bytes, big-endian,
/// as the store's SQL derives it from the lease owner.
pub fn lock_key(worker_id: Uuid) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&worker_id.as_bytes()[..8]);
    i64::from_be_bytes(first)
}

/// This process's liveness lock, held until [`Liveness::release`] (or the
/// process's death). Reconnects and locks again if its session is lost.
pub struct Liveness {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Liveness {
    /// Takes the liveness lock of `worker_id` on a dedicated connection to
    /// `url`; returns once it is held, so work claimed afterwards is always
    /// covered by it.
    pub async fn hold(url: &str, worker_id: Uuid) -> Result<Self, DbError> {
        let key = lock_key(worker_id);
        let session = lock(url, key)
            .await
            .map_err(|e| DbError::Pool(format!("liveness lock: {e}")))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(url.to_string(), key, session, stop.clone()));
        Ok(Self { stop, task })
    }

    /// Gives the lock up (at the very end of a clean shutdown).
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A locked session: the client (dropping it ends the session) and the task
/// driving its connection (it ends when the session is lost).
type Session = (tokio_postgres::Client, JoinHandle<()>);

async fn lock(url: &str, key: i64) -> Result<Session, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute("SET application_name = 'allegro-scheduler liveness'")
        .await?;
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&key])
        .await?;
    Ok((client, driver))
}

/// Holds the session until `stop`; when the session is lost (database
/// restart), locks again on a new one, backing off up to 5 s.
async fn keep(url: String, key: i64, session: Session, stop: CancellationToken) {
    let (mut client, mut driver) = session;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = &mut driver => {
                tracing::warn!("liveness session lost; locking again");
                let mut backoff = Duration::from_millis(100);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    match lock(&url, key).await {
                        Ok((c, d)) => {
                            (client, driver) = (c, d);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "liveness lock failed");
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
        }
    }
    drop(client);
    let _ = driver.await;
}

impl Engine {
    /// The reaper of this process: until `shutdown`, ends at once the leases
    /// of batches and plans whose owner process is dead.
    pub fn spawn_reaper(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                match engine.reap().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(leases = n, "took over the work of a dead process");
                        engine.wake();
                    }
                    Err(e) => tracing::warn!(error = %e, "reaper failed"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(REAP_EVERY) => {}
                }
            }
        })
    }

    async fn reap(&self) -> Result<i64, DbError> {
        let mut conn = self.db().conn().await?;
        work::end_leases_of_dead_owners(&mut conn, self.worker_id()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_first_eight_bytes() {
        let id = Uuid::parse_str("ffffffff-ffff-fffe-0000-000000000000").unwrap();
        assert_eq!(lock_key(id), -2);
        let id = Uuid::parse_str("00000000-0000-0001-ffff-ffffffffffff").unwrap();
        assert_eq!(lock_key(id), 1);
    }
}
