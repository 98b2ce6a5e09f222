//! The binary's log and trace output, on stderr: human-readable text by
//! default, or one JSON object per line (`--log-format json`) for log
//! shippers. Spans
//! (one per RPC, one per plan and per batch) put their fields, such as the
//! client and the execution id, on every line logged inside them.
//!
//! When the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) variable is set, the same spans are
//! also exported over OTLP/gRPC, their fields as attributes, in batches;
//! the other standard variables (`OTEL_SERVICE_NAME`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES`, ...) apply as
//! the OpenTelemetry SDK reads them. Unset, nothing is exported and no
//! exporter exists. [`Telemetry::shutdown`] sends what is still buffered.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The service name spans are exported under unless `OTEL_SERVICE_NAME`
/// says otherwise.
const SERVICE_NAME: &str = "allegro-scheduler";

/// The variables that turn OTLP export on (the generic one, or the one for
/// traces only).
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the fields of the enclosing spans.
    Json,
}

/// The process's trace export, kept until shutdown so the spans still
/// buffered are sent.
#[must_use = "call shutdown() at the end to send the spans still buffered"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered and stops the exporter (waits for the
    /// export, bounded by the SDK's timeout). Nothing to do without export.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK's shutdown blocks while its export thread sends.
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing OpenTelemetry spans failed"),
            Err(e) => tracing::warn!(error = %e, "flushing OpenTelemetry spans failed"),
        }
    }
}

/// Whether an OTLP endpoint variable is set (and not empty).
fn endpoint_configured() -> bool {
    ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// The OTLP/gRPC tracer provider, when an endpoint is configured. Must run
/// inside the Tokio runtime (the exporter's channel lives there).
fn otlp_provider() -> Result<Option<SdkTracerProvider>, String> {
    if !endpoint_configured() {
        return Ok(None);
    }
    // The exporter reads the endpoint (and headers, timeout) from the
    // standard variables itself.
    let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    let exporter = builder.build().map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build(),
    ))
}

/// Installs the process's log subscriber: `RUST_LOG` filters (default
/// `info`), written as `format` says, and spans exported over OTLP when
/// the endpoint variable is set. Call inside the Tokio runtime.
pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (provider, otlp_error) = match otlp_provider() {
        Ok(provider) => (provider, None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(SERVICE_NAME)));
    // Logs go to stderr: stdout is the commands' output (the key
    // `create-admin-key` prints, for `KEY=$(...)`).
    let (text, json) = match format {
        LogFormat::Text => (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .with_current_span(true)
                    .with_span_list(true),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .init();
    if let Some(e) = otlp_error {
        tracing::warn!(error = %e, "OpenTelemetry export is off: the OTLP exporter could not be built");
    } else if provider.is_some() {
        tracing::info!("exporting spans over OTLP");
    }
    Telemetry { provider }
}
