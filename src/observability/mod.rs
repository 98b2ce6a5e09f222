//! Seeing the service from the outside: Prometheus metrics ([`metrics`],
//! served by [`exporter`] on a listener of its own), the tower layer that
//! measures every gRPC call ([`api`]), the span of every call ([`trace`]),
//! and the log and trace setup of the binary ([`logging`]: text or JSON
//! lines, and OpenTelemetry export over OTLP).

pub mod api;
pub mod exporter;
pub mod logging;
pub mod metrics;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::scheduling::engine::Engine;
use crate::scheduling::watch::EventHub;
use api::{KnownMethods, MetricsLayer};
use metrics::{ApiMetrics, Metrics};

/// Starts `/metrics` on `listen` for `engine`'s metrics, `hub`'s backlog and
/// those of the layer it returns (put it on the gRPC server). Serves until
/// `shutdown`; the bound address comes back with the layer.
pub async fn start(
    listen: SocketAddr,
    engine: &Engine,
    hub: &EventHub,
    shutdown: CancellationToken,
) -> std::io::Result<(MetricsLayer, SocketAddr)> {
    let api = ApiMetrics::default();
    let metrics = Arc::new(Metrics::new(engine.metrics(), &api));
    let addr = exporter::serve(listen, metrics, engine.db().clone(), hub.clone(), shutdown).await?;
    let methods = KnownMethods::from_descriptor_sets(&[
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ]);
    Ok((MetricsLayer::new(api, methods), addr))
}
