//! The tower layer that measures every gRPC call once, outside the
//! handlers: calls by method and status code, latency, calls in flight and
//! open status streams. The status code is read where gRPC puts it: the
//! response headers of a trailers-only answer, else the trailers at the end
//! of the body; a call whose body is dropped before its end (the caller went
//! away) counts as CANCELLED.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prost::Message;
use tonic::codegen::Bytes;
use tower::{Layer, Service};

use super::metrics::ApiMetrics;

/// The method label of a path that names no known method (bounds the
/// label's values whatever a caller sends).
const UNKNOWN_METHOD: &str = "unknown";

/// The full paths (`/package.Service/Method`) of the methods this server
/// serves, read from the descriptor sets it registers for reflection.
#[derive(Clone, Default)]
pub struct KnownMethods(Arc<HashSet<String>>);

impl KnownMethods {
    /// Every method of every service in the encoded descriptor `sets`.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Self {
        let mut methods = HashSet::new();
        for set in sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        methods.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        Self(Arc::new(methods))
    }

    /// The metric label (and span name) of a request path: the path of a
    /// known method, else `unknown`.
    pub fn label(&self, path: &str) -> String {
        if self.0.contains(path) || path.starts_with("/grpc.reflection.") && path.len() < 80 {
            path.to_string()
        } else {
            UNKNOWN_METHOD.to_string()
        }
    }
}

/// Measures every call into [`ApiMetrics`].
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: ApiMetrics,
    methods: KnownMethods,
}

impl MetricsLayer {
    /// A layer recording into `metrics`, labelling calls of `methods`.
    pub fn new(metrics: ApiMetrics, methods: KnownMethods) -> Self {
        Self { metrics, methods }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
            methods: self.methods.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: ApiMetrics,
    methods: KnownMethods,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = self.methods.label(request.uri().path());
        let mut call = Call::start(self.metrics.clone(), method);
        // The clone that was made ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            call.code = status_of(response.headers());
            let (parts, body) = response.into_parts();
            let body = MeteredBody { inner: body, call };
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(body),
            ))
        })
    }
}

/// One call being measured; records itself once, when it ends or is
/// dropped.
struct Call {
    metrics: ApiMetrics,
    method: String,
    stream: bool,
    start: Instant,
    code: Option<tonic::Code>,
    recorded: bool,
}

impl Call {
    fn start(metrics: ApiMetrics, method: String) -> Self {
        let stream = method.ends_with("/WatchExecutions");
        metrics.started(&method, stream);
        Self {
            metrics,
            method,
            stream,
            start: Instant::now(),
            code: None,
            recorded: false,
        }
    }

    fn finish(&mut self, code: tonic::Code) {
        if !self.recorded {
            self.recorded = true;
            self.metrics.finished(
                &self.method,
                self.stream,
                code_name(code),
                self.start.elapsed(),
            );
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        self.finish(code);
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .map(|value| tonic::Code::from_bytes(value.as_bytes()))
}

pin_project_lite::pin_project! {
    /// A response body that records its call when its trailers pass.
    struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Call,
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    this.call.code = Some(code);
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(tonic::Code::Unknown),
            Poll::Ready(None) => {
                let code = this.call.code.unwrap_or(tonic::Code::Unknown);
                this.call.finish(code);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The canonical name of a gRPC status code (`OK`, `INVALID_ARGUMENT`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
