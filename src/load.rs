//! Load control of the gRPC front end. Every call:
//! - takes one of a bounded number of places in flight, or is refused at
//!   once with RESOURCE_EXHAUSTED and a retry hint instead of queueing;
//! - has a deadline: the caller's `grpc-timeout`, capped by the server's
//!   default; past it the caller gets DEADLINE_EXCEEDED;
//! - runs on its own task, so a caller that goes away (a client timeout, a
//!   reset stream) never interrupts a database statement mid-protocol: the
//!   task finishes, the connection goes back to the pool, and the answer is
//!   dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::Status;
use tracing::Instrument;

/// Metadata key of the retry hint on a refused call: milliseconds after
/// which a retry has a fair chance (the name gRPC's retry policy reads).
pub const RETRY_HINT: &str = "grpc-retry-pushback-ms";

/// The hint a refused call carries, in milliseconds.
const RETRY_AFTER_MS: u64 = 100;

/// tonic enforces the caller's `grpc-timeout` itself, answering CANCELLED;
/// this layer's deadline falls this much earlier so the caller is told
/// DEADLINE_EXCEEDED. A few milliseconds were not enough on a loaded
/// machine (two timers due within 2 ms fire in either order), so the
/// margin covers scheduling delay too.
const DEADLINE_MARGIN: Duration = Duration::from_millis(25);

/// The bounds a server puts on its calls.
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    /// Calls in flight over all connections; more are refused.
    pub max_in_flight: usize,
    /// The deadline of a call that sends none, and the longest one granted.
    pub default_deadline: Duration,
}

/// The layer that applies [`LoadLimits`] to every call.
#[derive(Clone)]
pub struct LoadLayer {
    permits: Arc<Semaphore>,
    default_deadline: Duration,
}

impl LoadLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: LoadLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            default_deadline: limits.default_deadline,
        }
    }
}

impl<S> tower::Layer<S> for LoadLayer {
    type Service = Loaded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Loaded {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind [`LoadLayer`].
#[derive(Clone)]
pub struct Loaded<S> {
    inner: S,
    layer: LoadLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for Loaded<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            return Box::pin(std::future::ready(Ok(overloaded())));
        };
        let deadline = deadline(request.headers(), self.layer.default_deadline);
        // From now, not from the first poll: tonic's own timer has started.
        let until = tokio::time::Instant::now() + deadline;
        let call = inner.call(request);
        // The permit is held by the task: work that outlives its caller
        // still counts as in flight.
        // The task keeps the call's span (method, client) for its logs.
        let task = tokio::spawn(
            async move {
                let answer = call.await;
                drop(permit);
                answer
            }
            .in_current_span(),
        );
        Box::pin(async move {
            match tokio::time::timeout_at(until, task).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(failed)) => {
                    tracing::error!(error = %failed, "request task failed");
                    Ok(
                        Status::internal("internal error: the request failed unexpectedly")
                            .into_http(),
                    )
                }
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "deadline of {} ms exceeded",
                    deadline.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

/// The refusal of a call past the limit.
fn overloaded() -> Response<Body> {
    let mut status = Status::resource_exhausted(format!(
        "server busy: too many calls in flight; retry after {RETRY_AFTER_MS} ms"
    ));
    status
        .metadata_mut()
        .insert(RETRY_HINT, RETRY_AFTER_MS.into());
    status.into_http()
}

/// The deadline of a call: its `grpc-timeout` (less the margin), at most
/// `default`.
fn deadline(headers: &http::HeaderMap, default: Duration) -> Duration {
    headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(default, |sent| {
            sent.saturating_sub(DEADLINE_MARGIN).min(default)
        })
}

/// A `grpc-timeout` value: up to eight digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_are_capped() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("12x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        let mut headers = http::HeaderMap::new();
        let default = Duration::from_secs(30);
        assert_eq!(deadline(&headers, default), default);
        headers.insert("grpc-timeout", "1H".parse().unwrap());
        assert_eq!(deadline(&headers, default), default);
        headers.insert("grpc-timeout", "100m".parse().unwrap());
        assert_eq!(
            deadline(&headers, default),
            Duration::from_millis(100) - DEADLINE_MARGIN
        );
    }
}
