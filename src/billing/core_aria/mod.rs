//! Core Aria, the billing application that invoices what Allegro rates: the
//! client the sync jobs send transactions through, and a stand-in core
//! service for development and tests that records what it receives and
//! fails on request.

pub mod client;
pub mod standin;
mod standin_control;
mod standin_orders;
pub mod standin_store;

pub use client::CoreAriaClient;
pub use standin::{serve_standin, CoreStandIn};

use crate::scheduling::job::JobError;

/// Where the service looks for core Aria when not told otherwise: the port
/// on which the embedded default runs the stand-in next to the service.
pub const DEFAULT_CORE_ARIA_ENDPOINT: &str = "http://127.0.0.1:50052";

/// Work item and batch error code when core Aria cannot be reached.
pub const SYNC_ENDPOINT_UNAVAILABLE: &str = "SYNC_ENDPOINT_UNAVAILABLE";

/// Why talking to core Aria, or serving as its stand-in, failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    /// Core Aria could not be reached, timed out, or said it is unavailable:
    /// worth retrying later.
    #[error("core Aria is unavailable: {0}")]
    Unavailable(String),
    /// Core Aria answered the call as a whole with another error status.
    #[error("core Aria refused the call ({code:?}): {message}")]
    Call {
        /// The gRPC status code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// Core Aria's answer does not follow the interface (e.g. a result
    /// missing for a transaction).
    #[error("core Aria answered out of protocol: {0}")]
    Protocol(String),
    /// The configured endpoint is not a valid URI.
    #[error("invalid core Aria endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The stand-in server could not be set up or stopped with an error.
    #[error("core Aria stand-in: {0}")]
    Serve(String),
}

impl CoreError {
    /// The work item error code this failure is reported under.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Unavailable(_) => SYNC_ENDPOINT_UNAVAILABLE,
            CoreError::Call { .. } => "CORE_CALL_FAILED",
            CoreError::Protocol(_) => "CORE_PROTOCOL_ERROR",
            CoreError::InvalidEndpoint { .. } => "SYNC_ENDPOINT_INVALID",
            CoreError::Serve(_) => "CORE_STANDIN_FAILED",
        }
    }

    /// The failure of a call, from its status: statuses that mean "not now"
    /// (unavailable, deadline exceeded, cancelled, and transport failures
    /// which tonic reports as UNKNOWN or UNAVAILABLE) are [`Unavailable`].
    ///
    /// [`Unavailable`]: CoreError::Unavailable
    pub fn from_status(status: tonic::Status) -> Self {
        use tonic::Code;
        let transport = std::error::Error::source(&status)
            .map(|s| s.is::<tonic::transport::Error>())
            .unwrap_or(false);
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                CoreError::Unavailable(status.message().to_string())
            }
            Code::Unknown if transport => CoreError::Unavailable(status.message().to_string()),
            code => CoreError::Call {
                code,
                message: status.message().to_string(),
            },
        }
    }
}

impl From<CoreError> for JobError {
    fn from(e: CoreError) -> Self {
        JobError::new(e.code(), e.to_string())
    }
}
