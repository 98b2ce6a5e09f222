//! The error of the layers above the store (engine, use cases, front ends):
//! a product rule refused ([`domain::Error`]) or the database failed
//! ([`DbError`]). [`crate::scheduling::api::status`] maps it to a
//! `tonic::Status` in one place.

use crate::db::DbError;
use crate::scheduling::domain;

/// Why a request or a step of the engine could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule of the product refused it.
    #[error(transparent)]
    Domain(#[from] domain::Error),
    /// The database failed, is unreachable, or holds data it should not.
    #[error(transparent)]
    Store(#[from] DbError),
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Error::Store(DbError::Query(e))
    }
}

impl Error {
    /// A single-field INVALID_ARGUMENT.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        domain::Error::invalid(field, description).into()
    }

    /// FAILED_PRECONDITION with a reason code.
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        domain::Error::precondition(reason, message).into()
    }

    /// NOT_FOUND for a resource of this client.
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        domain::Error::NotFound {
            resource,
            id: id.into(),
        }
        .into()
    }

    /// ABORTED: optimistic concurrency lost; read again and retry.
    pub fn aborted(reason: &'static str, message: impl Into<String>) -> Self {
        domain::Error::Aborted {
            reason,
            message: message.into(),
        }
        .into()
    }

    /// OUT_OF_RANGE: `field` names a position past the end.
    pub fn out_of_range(field: &'static str, message: impl Into<String>) -> Self {
        domain::Error::OutOfRange {
            field,
            message: message.into(),
        }
        .into()
    }

    /// A bug or an impossible state.
    pub fn internal(message: impl Into<String>) -> Self {
        domain::Error::Internal(message.into()).into()
    }

    /// Whether a product rule refused with ALREADY_EXISTS.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Domain(domain::Error::AlreadyExists { .. }))
    }
}
