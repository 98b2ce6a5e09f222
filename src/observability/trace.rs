//! The span of every gRPC call: named for the method
//! (`package.Service/Method`, the OpenTelemetry name of an RPC span), with
//! its path and the `client` the request acts for, recorded by the handler
//! once it has checked the request's `client_id`
//! ([`crate::scheduling::api::authorized_client`]). Every log line of the
//! call carries these fields, and the OTLP export ([`super::logging`]) sends
//! the span with them as attributes.

use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::Instrument;

use super::api::KnownMethods;

/// Opens the span of each call, entered while the inner services build
/// their futures (so a task they spawn can inherit it) and around the call.
#[derive(Clone)]
pub struct RpcSpanLayer {
    methods: KnownMethods,
}

impl RpcSpanLayer {
    /// Spans named for the methods of this server's descriptor sets (any
    /// other path is named `unknown`, so span names stay bounded).
    pub fn new() -> Self {
        Self {
            methods: KnownMethods::from_descriptor_sets(&[
                crate::proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            ]),
        }
    }
}

impl Default for RpcSpanLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RpcSpanLayer {
    type Service = RpcSpanService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcSpanService {
            inner,
            methods: self.methods.clone(),
        }
    }
}

/// The service of [`RpcSpanLayer`].
#[derive(Clone)]
pub struct RpcSpanService<S> {
    inner: S,
    methods: KnownMethods,
}

impl<S, B> Service<http::Request<B>> for RpcSpanService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let label = self.methods.label(path);
        let name = label.trim_start_matches('/');
        let span = tracing::info_span!(
            "grpc",
            otel.name = %name,
            otel.kind = "server",
            rpc.system = "grpc",
            path = %path,
            client = tracing::field::Empty,
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        future.instrument(span)
    }
}
