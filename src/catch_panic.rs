//! The safety net of the gRPC server: a handler that panics answers
//! INTERNAL and the panic is logged as an error, instead of the stream being
//! reset (which a caller sees as CANCELLED, with nothing in the log saying
//! why). Requests must never panic; this makes one that does visible.

use std::any::Any;

use tower_http::catch_panic::CatchPanicLayer;

/// The response handler of [`layer`]: logs the panic and answers INTERNAL.
pub type PanicResponse = fn(Box<dyn Any + Send + 'static>) -> http::Response<tonic::body::Body>;

/// The layer that turns a handler's panic into an INTERNAL status.
pub fn layer() -> CatchPanicLayer<PanicResponse> {
    CatchPanicLayer::custom(internal_status as PanicResponse)
}

/// The panic's message, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

fn internal_status(panic: Box<dyn Any + Send + 'static>) -> http::Response<tonic::body::Body> {
    tracing::error!(
        panic = panic_message(panic.as_ref()),
        "request handler panicked"
    );
    tonic::Status::internal("internal error: the request failed unexpectedly").into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, ServiceExt as _};

    #[tokio::test]
    async fn a_panicking_handler_answers_internal() {
        let service = layer().layer(tower::service_fn(
            |_request: http::Request<tonic::body::Body>| async move {
                if true {
                    panic!("boom");
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
            },
        ));
        let response = service
            .oneshot(http::Request::new(tonic::body::Body::empty()))
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("boom"));
    }
}
