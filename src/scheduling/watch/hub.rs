//! The process-wide event hub: one LISTEN connection (never a pooled one)
//! receives the `NOTIFY` every status-changing transaction sends, and per
//! client one tail reads the new events once and broadcasts them in memory
//! to that client's watchers. The same connection hears configuration
//! changes and keeps the [`ConfigCache`] fresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config_cache::{self, ConfigCache};
use super::PAGE;
use crate::db::Db;
use crate::scheduling::store::events::{self, EventRow, CHANNEL};

/// A client's tail re-reads the table at least this often even without a
/// notification (covers a LISTEN reconnect).
const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// Rows a client's tail keeps for watchers that fall behind; past that a
/// watcher reads the table itself.
const TAIL_BUFFER: usize = 1024;

/// Rows of one client's event log, read once per process and broadcast to
/// all of that client's watchers.
struct ClientTail {
    rows: broadcast::Sender<Arc<EventRow>>,
    wake: watch::Sender<u64>,
}

/// Fans notifications out to the watchers of this process: per client, one
/// task reads the new events once and broadcasts them in memory.
#[derive(Clone)]
pub struct EventHub {
    db: Db,
    clients: Arc<Mutex<HashMap<String, ClientTail>>>,
    configs: ConfigCache,
    shutdown: CancellationToken,
}

impl EventHub {
    /// Starts the hub's LISTEN task on a dedicated connection to `url`,
    /// keeping `configs` fresh; it reconnects on failure and stops with
    /// `shutdown`.
    pub fn start(url: String, db: Db, configs: ConfigCache, shutdown: CancellationToken) -> Self {
        let hub = Self {
            db,
            clients: Arc::default(),
            configs,
            shutdown: shutdown.clone(),
        };
        tokio::spawn(hub.clone().listen(url, shutdown));
        hub
    }

    /// The configuration listings this hub keeps fresh.
    pub fn configs(&self) -> &ConfigCache {
        &self.configs
    }

    /// The live rows of `client`'s event log (starting its tail task if
    /// needed).
    pub fn subscribe(&self, client: &str) -> broadcast::Receiver<Arc<EventRow>> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tail) = clients.get(client) {
            return tail.rows.subscribe();
        }
        let (rows, receiver) = broadcast::channel(TAIL_BUFFER);
        let (wake, wake_rx) = watch::channel(0);
        clients.insert(
            client.to_string(),
            ClientTail {
                rows: rows.clone(),
                wake,
            },
        );
        tokio::spawn(self.clone().tail(client.to_string(), rows, wake_rx));
        receiver
    }

    /// Reads `client`'s new events once per notification and broadcasts
    /// them; ends when no watcher of the client is left.
    async fn tail(
        self,
        client: String,
        rows: broadcast::Sender<Arc<EventRow>>,
        mut wake: watch::Receiver<u64>,
    ) {
        let mut position = loop {
            match self.db.conn().await {
                Ok(mut conn) => match events::bounds(&mut conn, &client).await {
                    Ok((_, last)) => break last.unwrap_or(0),
                    Err(e) => tracing::warn!(error = %e, "event tail"),
                },
                Err(e) => tracing::warn!(error = %e, "event tail"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        loop {
            loop {
                let page = match self.db.conn().await {
                    Ok(mut conn) => events::after(&mut conn, &client, position, PAGE).await,
                    Err(e) => Err(e),
                };
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(error = %e, "event tail read failed");
                        break;
                    }
                };
                let full = page.len() as i64 == PAGE;
                for row in page {
                    position = row.sequence;
                    let _ = rows.send(Arc::new(row));
                }
                if !full {
                    break;
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                changed = wake.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(FALLBACK_POLL) => {}
            }
            let mut clients = self
                .clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if rows.receiver_count() == 0 {
                clients.remove(&client);
                break;
            }
        }
    }

    /// Events pending delivery: rows this hub has read from the event table
    /// and broadcast that at least one open status stream of this process
    /// has not yet taken (summed over clients; at most `TAIL_BUFFER` per
    /// client, since a stream further behind reads the table itself).
    pub fn pending_delivery(&self) -> u64 {
        let clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients.values().map(|tail| tail.rows.len() as u64).sum()
    }

    fn notify(&self, client: Option<&str>) {
        let clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match client {
            Some(c) => {
                if let Some(tail) = clients.get(c) {
                    tail.wake.send_modify(|g| *g += 1);
                }
            }
            None => clients
                .values()
                .for_each(|tail| tail.wake.send_modify(|g| *g += 1)),
        }
    }

    async fn listen(self, url: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((client, mut connection)) => {
                    // Drive the connection on its own task, forwarding
                    // notifications; it ends when the connection does.
                    let (ntx, mut nrx) = mpsc::unbounded_channel::<(String, String)>();
                    let driver = tokio::spawn(async move {
                        let mut messages =
                            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(message) = messages.next().await {
                            match message {
                                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                    let note = (n.channel().to_string(), n.payload().to_string());
                                    if ntx.send(note).is_err() {
                                        break;
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "LISTEN connection failed");
                                    break;
                                }
                            }
                        }
                    });
                    let sql = format!("LISTEN {CHANNEL}; LISTEN {}", config_cache::CHANNEL);
                    if client.batch_execute(&sql).await.is_ok() {
                        tracing::debug!("listening for status events and configuration changes");
                        // Anything committed while we were not listening.
                        self.configs.set_listening(true);
                        self.notify(None);
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => {
                                    self.configs.set_listening(false);
                                    driver.abort();
                                    return;
                                }
                                note = nrx.recv() => match note {
                                    Some((channel, client_id)) if channel == CHANNEL => {
                                        self.notify(Some(&client_id));
                                    }
                                    Some((_, client_id)) => self.configs.invalidate(&client_id),
                                    None => break,
                                },
                            }
                        }
                        self.configs.set_listening(false);
                    }
                    drop(client);
                    driver.abort();
                }
                Err(e) => tracing::warn!(error = %e, "cannot open the LISTEN connection"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
