//! How the console answers when something is refused: the use cases'
//! errors become HTTP statuses here, in one place, with the same messages
//! the gRPC API gives.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::db::DbError;
use crate::scheduling::domain;
use crate::scheduling::Error;

/// A refusal or a failure, as an HTTP status and a short text.
#[derive(Debug)]
pub struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// What to tell the operator.
    pub message: String,
}

impl Failure {
    /// 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 503: the database is unreachable.
    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the database is unavailable; retry later".into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        use domain::Error as D;
        let status = match &error {
            Error::Domain(D::InvalidArgument(_)) | Error::Domain(D::OutOfRange { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Error::Domain(D::NotFound { .. }) => StatusCode::NOT_FOUND,
            Error::Domain(D::AlreadyExists { .. })
            | Error::Domain(D::FailedPrecondition { .. })
            | Error::Domain(D::Aborted { .. }) => StatusCode::CONFLICT,
            Error::Domain(D::PermissionDenied { .. }) => StatusCode::FORBIDDEN,
            Error::Domain(D::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Store(DbError::Pool(_)) => return Failure::unavailable(),
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %error, "console request failed");
            return Self {
                status,
                message: "internal error".into(),
            };
        }
        Self {
            status,
            message: error.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailurePage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = page(&FailurePage {
            status: self.status.as_u16(),
            message: &self.message,
        });
        *response.status_mut() = self.status;
        response
    }
}

/// Renders a template as an HTML answer (500 if the template fails, which
/// is a bug).
pub fn page(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
