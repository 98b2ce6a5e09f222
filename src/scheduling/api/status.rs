//! The one place where errors become gRPC statuses, with rich details
//! (`google.rpc.BadRequest` field violations, `google.rpc.ErrorInfo`).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::db::{DbError, Failure};
use crate::scheduling::domain::limits::MAX_VIOLATIONS;
use crate::scheduling::domain::{self, FieldViolation};
use crate::scheduling::Error;

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "allegro-scheduler.aria.com";

// Message and details together stay under 1 KB whatever the request. The
// details repeat the message (they are a whole `google.rpc.Status`), so it
// counts twice.
/// Most bytes of a status message; longer ones are cut.
const MAX_MESSAGE_BYTES: usize = 200;
/// Most bytes of one field violation's field path.
const MAX_FIELD_BYTES: usize = 60;
/// Most bytes of one field violation's description.
const MAX_DESCRIPTION_BYTES: usize = 120;
/// Most bytes all field violations of one status may take.
const VIOLATIONS_BUDGET: usize = 360;

/// `text` cut to at most `max` bytes at a character boundary, ending in
/// `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The violations to report, each description cut, at most
/// [`MAX_VIOLATIONS`] and [`VIOLATIONS_BUDGET`] bytes; the message names the
/// first and counts the rest.
fn bounded(violations: Vec<FieldViolation>) -> (String, ErrorDetails) {
    let total = violations.len();
    let mut details = ErrorDetails::new();
    let mut used = 0;
    let mut kept = 0;
    let mut first = String::new();
    for v in violations.into_iter().take(MAX_VIOLATIONS) {
        let field = clip(&v.field, MAX_FIELD_BYTES);
        let description = clip(&v.description, MAX_DESCRIPTION_BYTES);
        let size = field.len() + description.len();
        if kept > 0 && used + size > VIOLATIONS_BUDGET {
            break;
        }
        if kept == 0 {
            first = format!("{field}: {description}");
        }
        used += size;
        kept += 1;
        details.add_bad_request_violation(field, description);
    }
    let more = match total - kept {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    let message = format!(
        "invalid argument: {}{more}",
        clip(&first, MAX_MESSAGE_BYTES - 40)
    );
    (message, details)
}

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
        if let Error::InvalidArgument(violations) = error {
            let (message, details) = bounded(violations);
            return Status::with_error_details(Code::InvalidArgument, message, details);
        }
        let message = clip(&error.to_string(), MAX_MESSAGE_BYTES);
        match error {
            Error::InvalidArgument(_) => Status::invalid_argument(message),
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
            Error::OutOfRange { field, .. } => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(field, message.clone());
                Status::with_error_details(Code::OutOfRange, message, details)
            }
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<DbError> for Status {
    fn from(e: DbError) -> Self {
        match e.failure() {
            Failure::Conflict => {
                tracing::info!(error = %e, "transaction conflict");
                Status::with_error_details(
                    Code::Aborted,
                    "the database aborted the transaction because of a concurrent one; \
                     retry",
                    ErrorDetails::with_error_info("TRANSACTION_CONFLICT", ERROR_DOMAIN, []),
                )
            }
            Failure::Timeout => {
                tracing::warn!(error = %e, "statement timeout");
                Status::deadline_exceeded(
                    "the database took too long to answer (statement timeout)",
                )
            }
            Failure::Unavailable => {
                tracing::warn!(error = %e, "database unavailable");
                Status::unavailable("database unavailable; retry later")
            }
            Failure::Bug => {
                tracing::error!(error = %e, "store failure");
                Status::internal("internal database error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbError;
    use diesel::result::{DatabaseErrorKind, Error as QueryError};

    fn db_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::Store(DbError::Query(QueryError::DatabaseError(
            kind,
            Box::new(message.to_string()),
        )))
    }

    #[test]
    fn database_failures_get_codes_the_caller_can_act_on() {
        for (error, code) in [
            (
                db_error(
                    DatabaseErrorKind::SerializationFailure,
                    "could not serialize access due to concurrent update",
                ),
                Code::Aborted,
            ),
            (
                db_error(DatabaseErrorKind::Unknown, "deadlock detected"),
                Code::Aborted,
            ),
            (
                db_error(
                    DatabaseErrorKind::Unknown,
                    "canceling statement due to statement timeout",
                ),
                Code::DeadlineExceeded,
            ),
            (
                db_error(DatabaseErrorKind::ClosedConnection, "connection closed"),
                Code::Unavailable,
            ),
            (
                db_error(DatabaseErrorKind::UnableToSendCommand, "broken pipe"),
                Code::Unavailable,
            ),
            (
                db_error(
                    DatabaseErrorKind::Unknown,
                    "terminating connection due to administrator command",
                ),
                Code::Unavailable,
            ),
            (
                Error::Store(DbError::Pool("timed out waiting".into())),
                Code::Unavailable,
            ),
            (
                db_error(DatabaseErrorKind::Unknown, "syntax error at or near"),
                Code::Internal,
            ),
            (Error::internal("bug"), Code::Internal),
        ] {
            let described = error.to_string();
            assert_eq!(Status::from(error).code(), code, "{described}");
        }
    }

    #[test]
    fn many_or_long_violations_stay_under_one_kilobyte() {
        let many: Vec<FieldViolation> = (0..100_000)
            .map(|i| FieldViolation::new(format!("manual_job_positions[{i}]"), "x".repeat(5000)))
            .collect();
        let status = Status::from(domain::Error::InvalidArgument(many));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() + status.details().len() < 1024);
        assert!(status.message().contains("more"), "{}", status.message());
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert!(!violations.is_empty() && violations.len() <= MAX_VIOLATIONS);

        let long = Error::precondition("X", "ü".repeat(100_000));
        let status = Status::from(long);
        assert!(status.message().len() + status.details().len() < 1024);
        let wide = vec![FieldViolation::new("ü".repeat(1000), "日".repeat(1000)); 20];
        let status = Status::from(domain::Error::InvalidArgument(wide));
        assert!(status.message().len() + status.details().len() < 1024);
        assert_eq!(clip("äbc", 2), "…");
        assert_eq!(clip("abcdef", 5), "ab…");
    }
}
