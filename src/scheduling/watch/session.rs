//! One watcher's session: an opening view (or a resync), then every event
//! after its position, read from the table (the source of truth) at its own
//! pace, following the hub's live rows while it keeps up.

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{EventHub, PAGE};
use crate::scheduling::domain::event::EventBody;
use crate::scheduling::domain::execution::Execution;
use crate::scheduling::engine::Engine;
use crate::scheduling::store::events::{self, EventRow};
use crate::scheduling::store::executions;
use crate::scheduling::Error;

/// Days of finished executions an opening view shows.
const SNAPSHOT_DAYS: i64 = 7;

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
        executions: Vec<Execution>,
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
    /// The service is shutting down: the last message of the session. The
    /// watcher resumes on another process with the last sequence it got.
    ShuttingDown,
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
            let executions = executions::unfinished_or_recent(
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

/// How long a watcher that does not read is waited for to take the
/// shutdown message.
const SHUTDOWN_NOTICE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one watcher until it disconnects (`tx` closed) or `shutdown`; a
/// watcher still connected at shutdown gets [`WatchMessage::ShuttingDown`]
/// last, so it can tell a shutdown from an end.
pub async fn run(
    engine: Engine,
    hub: EventHub,
    scope: WatchScope,
    tx: mpsc::Sender<WatchMessage>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let result = follow(engine, hub, scope, &tx, &shutdown).await;
    if shutdown.is_cancelled() && !tx.is_closed() {
        let notice = tx.send(WatchMessage::ShuttingDown);
        let _ = tokio::time::timeout(SHUTDOWN_NOTICE_WAIT, notice).await;
    }
    result
}

async fn follow(
    engine: Engine,
    hub: EventHub,
    scope: WatchScope,
    tx: &mpsc::Sender<WatchMessage>,
    shutdown: &CancellationToken,
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
    if !drain(&engine, &scope, &mut position, tx, shutdown).await? {
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
                        if !send(tx, shutdown, message(&row, body)).await {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                if !drain(&engine, &scope, &mut position, tx, shutdown).await? {
                    return Ok(());
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                live = hub.subscribe(&scope.client_id);
                if !drain(&engine, &scope, &mut position, tx, shutdown).await? {
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
