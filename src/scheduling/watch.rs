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
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::Db;
use crate::scheduling::domain::event::EventBody;
use crate::scheduling::domain::Error;
use crate::scheduling::engine::Engine;
use crate::scheduling::store::events::{self, EventRow, CHANNEL};
use crate::scheduling::store::executions::{self, LoadedExecution};

/// Events read from the table per query.
const PAGE: i64 = 500;
/// A watcher re-reads the table at least this often even without a
/// notification (covers a LISTEN reconnect).
const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// Rows a client's tail keeps for watchers that fall behind; past that a
/// watcher reads the table itself.
const TAIL_BUFFER: usize = 1024;
/// Days of finished executions a snapshot shows.
const SNAPSHOT_DAYS: i64 = 7;

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
    shutdown: CancellationToken,
}

impl EventHub {
    /// Starts the hub's LISTEN task on a dedicated connection to `url`; it
    /// reconnects on failure and stops with `shutdown`.
    pub fn start(url: String, db: Db, shutdown: CancellationToken) -> Self {
        let hub = Self {
            db,
            clients: Arc::default(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(hub.clone().listen(url, shutdown));
        hub
    }

    /// The live rows of `client`'s event log (starting its tail task if
    /// needed).
    pub fn subscribe(&self, client: &str) -> broadcast::Receiver<Arc<EventRow>> {
        let mut clients = self.clients.lock().expect("hub lock");
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
            let mut clients = self.clients.lock().expect("hub lock");
            if rows.receiver_count() == 0 {
                clients.remove(&client);
                break;
            }
        }
    }

    fn notify(&self, client: Option<&str>) {
        let clients = self.clients.lock().expect("hub lock");
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
    let mut live = hub.subscribe(&scope.client_id);
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
    // Catch up from the table, then follow the live rows; fall back to the
    // table whenever the live rows skip (this watcher fell behind).
    if !drain(&engine, &scope, &mut position, &tx, &shutdown).await? {
        return Ok(());
    }
    loop {
        let row = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tx.closed() => return Ok(()),
            row = live.recv() => row,
        };
        match row {
            Ok(row) if row.sequence <= position => {}
            Ok(row) if row.sequence == position + 1 => {
                position = row.sequence;
                if scope.includes(&row) {
                    if let Ok(body) = serde_json::from_value::<EventBody>(row.body.clone()) {
                        if !send(&tx, &shutdown, message(&row, body)).await {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                if !drain(&engine, &scope, &mut position, &tx, &shutdown).await? {
                    return Ok(());
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                live = hub.subscribe(&scope.client_id);
                if !drain(&engine, &scope, &mut position, &tx, &shutdown).await? {
                    return Ok(());
                }
            }
        }
    }
}

fn message(row: &EventRow, body: EventBody) -> WatchMessage {
    WatchMessage::Event {
        sequence: row.sequence,
        time: row.time,
        execution_id: row.execution_id,
        config_id: row.config_id,
        business_date: row.business_date,
        body,
    }
}

/// Sends one message; false when the watcher is gone or shutting down.
async fn send(
    tx: &mpsc::Sender<WatchMessage>,
    shutdown: &CancellationToken,
    m: WatchMessage,
) -> bool {
    tokio::select! {
        sent = tx.send(m) => sent.is_ok(),
        _ = shutdown.cancelled() => false,
    }
}

/// Sends everything after `position` from the table (coalescing superseded
/// counts); false when the watcher is gone.
async fn drain(
    engine: &Engine,
    scope: &WatchScope,
    position: &mut i64,
    tx: &mpsc::Sender<WatchMessage>,
    shutdown: &CancellationToken,
) -> Result<bool, Error> {
    loop {
        let rows = {
            let mut conn = engine.db().conn().await?;
            events::after(&mut conn, &scope.client_id, *position, PAGE).await?
        };
        let full = rows.len() as i64 == PAGE;
        if let Some(last) = rows.last() {
            *position = last.sequence;
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
            if !send(tx, shutdown, message(&row, body)).await {
                return Ok(false);
            }
        }
        if !full {
            return Ok(true);
        }
    }
}
