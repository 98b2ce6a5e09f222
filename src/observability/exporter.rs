//! The `/metrics` endpoint on an HTTP listener of its own
//! (`--metrics-listen`), apart from the gRPC port so a scraper needs no API
//! key and a busy API never delays a scrape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::db::Db;
use crate::scheduling::store::gauges;
use crate::scheduling::watch::EventHub;

/// The content type of the OpenMetrics text exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A scrape waits at most this long for the database gauges; past it the
/// previous values are served.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    db: Db,
    hub: EventHub,
}

/// Binds `addr` and serves `/metrics` until `shutdown`; the bound address
/// (the real port when `addr` has port 0). `hub` is asked for the events
/// pending delivery at each scrape.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    db: Db,
    hub: EventHub,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { metrics, db, hub });
    tokio::spawn(async move {
        tracing::info!(addr = %bound, "serving metrics");
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics listener failed");
        }
    });
    Ok(bound)
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    scrape
        .metrics
        .gauges
        .events_pending
        .set(scrape.hub.pending_delivery() as i64);
    refresh(&scrape.metrics, &scrape.db).await;
    ([(CONTENT_TYPE, OPENMETRICS)], scrape.metrics.encode())
}

/// Reads the gauges computed from the pool and the database.
async fn refresh(metrics: &Metrics, db: &Db) {
    let gauges = &metrics.gauges;
    let status = db.pool_status();
    for (state, value) in [
        ("size", status.size),
        ("available", status.available),
        ("max_size", status.max_size),
        ("waiting", status.waiting),
    ] {
        gauges
            .pool
            .get_or_create(&vec![("state", state.to_string())])
            .set(value as i64);
    }
    let read = async {
        let mut conn = db.conn().await?;
        let executions = gauges::executions_by_phase(&mut conn).await?;
        let backlog = gauges::batch_backlog(&mut conn).await?;
        Ok::<_, crate::db::DbError>((executions, backlog))
    };
    match tokio::time::timeout(REFRESH_TIMEOUT, read).await {
        Ok(Ok((executions, backlog))) => {
            gauges.executions.clear();
            for row in executions {
                gauges
                    .executions
                    .get_or_create(&vec![("status", row.status), ("phase", row.phase)])
                    .set(row.count);
            }
            gauges.ready_batches.set(backlog.ready);
            gauges.expired_leases.set(backlog.expired);
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: reading database gauges failed");
            gauges.refresh_failures.inc();
        }
        Err(_) => {
            tracing::warn!("metrics: reading database gauges timed out");
            gauges.refresh_failures.inc();
        }
    }
}
