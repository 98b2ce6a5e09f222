//! The one place where errors become gRPC statuses, with rich details
//! (`google.rpc.BadRequest` field violations, `google.rpc.ErrorInfo`).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::db::DbError;
use crate::scheduling::domain;
use crate::scheduling::Error;

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "allegro-scheduler.aria.com";

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Domain(e) => e.into(),
            Error::Store(e) => e.into(),
        }
    }
}

impl From<domain::Error> for Status {
    fn from(error: domain::Error) -> Self {
        use domain::Error;
        let message = error.to_string();
        match error {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound { .. } => Status::with_error_details(
                Code::NotFound,
                message,
                ErrorDetails::with_error_info("NOT_FOUND", ERROR_DOMAIN, []),
            ),
            Error::AlreadyExists { reason, field, .. } => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    [("field".to_string(), field.to_string())],
                ),
            ),
            Error::FailedPrecondition { reason, .. } => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
            ),
            Error::Aborted { reason, .. } => Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
            ),
            Error::PermissionDenied { reason, .. } => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
            ),
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<DbError> for Status {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Pool(e) => {
                tracing::warn!(error = %e, "database unavailable");
                Status::unavailable("database unavailable; retry later")
            }
            e => {
                tracing::error!(error = %e, "store failure");
                Status::internal("internal database error")
            }
        }
    }
}
