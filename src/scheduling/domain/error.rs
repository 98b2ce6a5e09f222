//! Why a rule of the product refuses a request or a transition. Pure: no
//! I/O error lives here; [`crate::scheduling::Error`] adds the store's.

/// One bad field of a request: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request message, e.g. `config.jobs[1].job_type`.
    pub field: String,
    /// Why the value was refused.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field` for `description`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Why a request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed; each violation names a field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist for this client.
    #[error("{resource} {id} not found")]
    NotFound {
        /// Kind of resource, e.g. `job schedule config`.
        resource: &'static str,
        /// How it was named in the request.
        id: String,
    },
    /// Creating would break a uniqueness rule.
    #[error("{message}")]
    AlreadyExists {
        /// Machine-readable reason, e.g. `DUPLICATE_NAME`.
        reason: &'static str,
        /// The field whose value clashes.
        field: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The resource is not in a state that allows the action.
    #[error("{message}")]
    FailedPrecondition {
        /// Machine-readable reason, e.g. `EXECUTION_RUNNING`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// Optimistic concurrency: the resource changed since it was read.
    #[error("{message}")]
    Aborted {
        /// Machine-readable reason, e.g. `ETAG_MISMATCH`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The calling key may not act for the named client, or its role is too
    /// low for the call.
    #[error("{message}")]
    PermissionDenied {
        /// Machine-readable reason, e.g. `CLIENT_NOT_ALLOWED`.
        reason: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// A position past the end of what exists (a stream resumed after a
    /// sequence never written).
    #[error("{field}: {message}")]
    OutOfRange {
        /// The field holding the position.
        field: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// A single-field INVALID_ARGUMENT.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// FAILED_PRECONDITION with a reason code.
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }
}

/// Collects field violations while validating a whole request, so the caller
/// learns every problem at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records that `field` is bad because of `description`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the violations of an INVALID_ARGUMENT (other errors become one
    /// violation of no particular field).
    pub fn extend(&mut self, error: Error) {
        match error {
            Error::InvalidArgument(violations) => self.0.extend(violations),
            other => self.add("request", other.to_string()),
        }
    }

    /// `Ok(value)` when nothing was recorded, else INVALID_ARGUMENT.
    pub fn into_result<T>(self, value: T) -> Result<T, Error> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
