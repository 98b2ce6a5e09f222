//! Live status for watchers. One LISTEN connection per process (never a
//! pooled one) receives the `NOTIFY` every status-changing transaction sends
//! and fans it out in memory per client. Each watcher then reads the event
//! table (the source of truth) from its own position, at its own pace: a
//! slow watcher delays nobody, and a watcher resuming with the last sequence
//! it saw misses nothing and gets nothing twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::event::EventBody;
use crate::domain::Error;
use crate::engine::Engine;
use crate::store::events::{self, EventRow, CHANNEL};
use crate::store::executions::{self, LoadedExecution};

/// Events read from the table per query.
const PAGE: i64 = 500;
/// A watcher re-reads the table at least this often even without a
/// notification (covers a LISTEN reconnect).
const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// Days of finished executions a snapshot shows.
const SNAPSHOT_DAYS: i64 = 7;

/// Fans notifications out to the watchers of this process.
#[derive(Clone, Default)]
pub struct EventHub {
    clients: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl EventHub {
    /// Starts the hub's LISTEN task on a dedicated connection to `url`; it
    /// reconnects on failure and stops with `shutdown`.
    pub fn start(url: String, shutdown: CancellationToken) -> Self {
        let hub = Self::default();
        tokio::spawn(hub.clone().listen(url, shutdown));
        hub
    }

    /// A receiver that changes whenever `client` has new events.
    pub fn subscribe(&self, client: &str) -> watch::Receiver<u64> {
        let mut clients = self.clients.lock().expect("hub lock");
        clients.retain(|_, tx| tx.receiver_count() > 0);
        clients
            .entry(client.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify(&self, client: Option<&str>) {
        let clients = self.clients.lock().expect("hub lock");
        match client {
            Some(c) => {
                if let Some(tx) = clients.get(c) {
                    tx.send_modify(|g| *g += 1);
                }
            }
            None => clients.values().for_each(|tx| tx.send_modify(|g| *g += 1)),
        }
    }

    async fn listen(self, url: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((client, mut connection)) => {
                    // Drive the connection on its own task, forwarding
                    // notifications; it ends when the connection does.
                    let (ntx, mut nrx) = mpsc::unbounded_channel::<String>();
                    let driver = tokio::spawn(async move {
                        let mut messages =
                            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(message) = messages.next().await {
                            match message {
                                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                    if ntx.send(n.payload().to_string()).is_err() {
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
                    let sql = format!("LISTEN {CHANNEL}");
                    if client.batch_execute(&sql).await.is_ok() {
                        tracing::debug!("listening for status events");
                        // Anything committed while we were not listening.
                        self.notify(None);
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => {
                                    driver.abort();
                                    return;
                                }
                                payload = nrx.recv() => match payload {
                                    Some(client_id) => self.notify(Some(&client_id)),
                                    None => break,
                                },
                            }
                        }
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

/// What a watcher asked for.
#[derive(Debug, Clone)]
pub struct WatchScope {
    /// The client.
    pub client_id: String,
    /// Only this configuration.
    pub config_id: Option<Uuid>,
    /// Only this business date (with `config_id`).
    pub business_date: Option<NaiveDate>,
    /// Resume after this sequence; 0 starts with a snapshot.
    pub after_sequence: i64,
}

/// One message for a watcher.
#[derive(Debug, Clone)]
pub enum WatchMessage {
    /// The current state of the watched executions, as of `sequence`.
    Snapshot {
        /// The last sequence the snapshot includes.
        sequence: i64,
        /// The executions.
        executions: Vec<LoadedExecution>,
    },
    /// A change.
    Event {
        /// The event's sequence.
        sequence: i64,
        /// Commit time.
        time: DateTime<Utc>,
        /// Execution.
        execution_id: Uuid,
        /// Configuration.
        config_id: Uuid,
        /// Business date.
        business_date: NaiveDate,
        /// What changed.
        body: EventBody,
    },
    /// The requested position is older than the retained events; a snapshot
    /// follows.
    ResyncRequired {
        /// Oldest retained sequence.
        oldest: i64,
    },
}

impl WatchScope {
    fn includes(&self, row: &EventRow) -> bool {
        self.config_id.is_none_or(|c| c == row.config_id)
            && self.business_date.is_none_or(|d| d == row.business_date)
    }
}

async fn snapshot(engine: &Engine, scope: &WatchScope) -> Result<WatchMessage, Error> {
    let mut conn = engine.db().conn().await?;
    let since = engine.clock().now().date_naive() - chrono::Duration::days(SNAPSHOT_DAYS);
    let scope = scope.clone();
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run::<_, Error, _>(async move |conn| {
            let (_, last) = events::bounds(conn, &scope.client_id).await?;
            let executions = executions::snapshot(
                conn,
                &scope.client_id,
                scope.config_id,
                scope.business_date,
                since,
            )
            .await?;
            Ok(WatchMessage::Snapshot {
                sequence: last.unwrap_or(0),
                executions,
            })
        })
        .await
}

/// Drops counts updates superseded by a later update of the same job in the
/// same page (status changes are never dropped).
fn coalesce(rows: Vec<(EventRow, EventBody)>) -> Vec<(EventRow, EventBody)> {
    let key = |row: &EventRow, body: &EventBody| match body {
        EventBody::CountsChanged { position, .. } | EventBody::JobChanged { position, .. } => {
            Some((row.execution_id, *position))
        }
        _ => None,
    };
    let mut keep = vec![true; rows.len()];
    let mut seen = std::collections::HashSet::new();
    for (i, (row, body)) in rows.iter().enumerate().rev() {
        if let Some(k) = key(row, body) {
            if matches!(body, EventBody::CountsChanged { .. }) && seen.contains(&k) {
                keep[i] = false;
            }
            seen.insert(k);
        }
    }
    rows.into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// Runs one watcher until it disconnects (`tx` closed) or `shutdown`.
pub async fn run(
    engine: Engine,
    hub: EventHub,
    scope: WatchScope,
    tx: mpsc::Sender<WatchMessage>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut wake = hub.subscribe(&scope.client_id);
    let mut position = scope.after_sequence;
    if position <= 0 {
        let snap = snapshot(&engine, &scope).await?;
        if let WatchMessage::Snapshot { sequence, .. } = &snap {
            position = *sequence;
        }
        if tx.send(snap).await.is_err() {
            return Ok(());
        }
    } else {
        let mut conn = engine.db().conn().await?;
        let (oldest, _) = events::bounds(&mut conn, &scope.client_id).await?;
        let pruned = match oldest {
            Some(oldest) => oldest > position + 1,
            None => false,
        };
        if pruned {
            let oldest = oldest.unwrap_or(0);
            if tx
                .send(WatchMessage::ResyncRequired { oldest })
                .await
                .is_err()
            {
                return Ok(());
            }
            let snap = snapshot(&engine, &scope).await?;
            if let WatchMessage::Snapshot { sequence, .. } = &snap {
                position = *sequence;
            }
            if tx.send(snap).await.is_err() {
                return Ok(());
            }
        }
    }
    loop {
        // Drain everything after our position.
        loop {
            let rows = {
                let mut conn = engine.db().conn().await?;
                events::after(&mut conn, &scope.client_id, position, PAGE).await?
            };
            let full = rows.len() as i64 == PAGE;
            if let Some(last) = rows.last() {
                position = last.sequence;
            }
            let decoded: Vec<(EventRow, EventBody)> = rows
                .into_iter()
                .filter(|row| scope.includes(row))
                .filter_map(|row| {
                    let body = serde_json::from_value(row.body.clone()).ok()?;
                    Some((row, body))
                })
                .collect();
            for (row, body) in coalesce(decoded) {
                let message = WatchMessage::Event {
                    sequence: row.sequence,
                    time: row.time,
                    execution_id: row.execution_id,
                    config_id: row.config_id,
                    business_date: row.business_date,
                    body,
                };
                tokio::select! {
                    sent = tx.send(message) => if sent.is_err() { return Ok(()) },
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            if !full {
                break;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tx.closed() => return Ok(()),
            changed = wake.changed() => if changed.is_err() { return Ok(()) },
            _ = tokio::time::sleep(FALLBACK_POLL) => {}
        }
    }
}
