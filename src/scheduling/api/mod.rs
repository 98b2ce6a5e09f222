//! The gRPC front end. Each handler decodes and validates its request, calls
//! one use case ([`crate::scheduling::usecases`]), and encodes the answer;
//! errors become statuses in one place, [`status`].

pub mod access;
pub mod auth;
pub mod bearer;
pub mod catalogue;
pub mod configs;
pub mod convert;
pub mod executions;
pub mod page_token;
pub mod status;
pub mod watch_event;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::scheduling::domain;
use crate::scheduling::domain::access::{Caller, Role};
use crate::scheduling::usecases::Actor;
use crate::scheduling::Error;

/// Longest accepted client identifier.
pub const MAX_CLIENT_ID_LEN: usize = 100;

/// Validates the `client_id` every request carries: 1 to 100 characters of
/// letters, digits, `-`, `_`, `.` and `:`.
pub fn client_id(value: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::invalid(
            "client_id",
            "required: every request names its client",
        ));
    }
    if value.len() > MAX_CLIENT_ID_LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(Error::invalid(
            "client_id",
            format!("must be 1 to {MAX_CLIENT_ID_LEN} letters, digits, '-', '_', '.' or ':'"),
        ));
    }
    Ok(value.to_string())
}

/// Parses a resource identifier (a UUID) named `field`.
pub fn uuid(field: &str, value: &str) -> Result<Uuid, Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    Uuid::parse_str(value)
        .map_err(|_| Error::invalid(field, format!("{value:?} is not an identifier (a UUID)")))
}

/// Parses a business date `YYYY-MM-DD` named `field`.
pub fn date(field: &str, value: &str) -> Result<NaiveDate, Error> {
    if value.is_empty() {
        return Err(Error::invalid(
            field,
            "required: a date in YYYY-MM-DD format",
        ));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{value:?} is not a date in YYYY-MM-DD format"),
            )
        })
}

/// The authenticated caller the authentication layer ([`auth`]) put in
/// the request's extensions. PERMISSION_DENIED when there is none, which
/// only a server assembled without the layer would do.
pub fn caller(extensions: &tonic::Extensions) -> Result<&Caller, Error> {
    extensions.get::<Caller>().ok_or_else(|| {
        domain::Error::PermissionDenied {
            reason: "NO_CALLER",
            message: "no authenticated caller".into(),
        }
        .into()
    })
}

/// The request's `client_id`, validated and checked against the calling
/// key's clients: PERMISSION_DENIED when the key may not act for it. Every
/// handler calls this before reading or writing anything.
pub fn authorized_client(extensions: &tonic::Extensions, value: &str) -> Result<String, Error> {
    let client = client_id(value)?;
    caller(extensions)?
        .may(&client, Role::Viewer)
        .map_err(|denied| domain::Error::PermissionDenied {
            reason: "CLIENT_NOT_ALLOWED",
            message: denied.to_string(),
        })?;
    Ok(client)
}

/// Who acts, for the action history: the calling key's name, and whom it
/// said it acts for beside it. Request metadata `x-actor` is not trusted.
pub fn actor(extensions: &tonic::Extensions, reason: &str) -> Result<Actor, Error> {
    if reason.chars().count() > 1000 {
        return Err(Error::invalid("reason", "at most 1000 characters"));
    }
    let caller = caller(extensions)?;
    Ok(Actor {
        actor: caller.name.clone(),
        on_behalf_of: caller.on_behalf_of.clone(),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_checked() {
        assert!(client_id("acme-01").is_ok());
        assert!(client_id("").is_err());
        assert!(client_id("a b").is_err());
        assert!(client_id(&"x".repeat(101)).is_err());
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(
            date("business_date", "2026-02-28").unwrap(),
            NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
        );
        for bad in ["2026-02-30", "2026-2-3", "26-02-03", "", "tomorrow"] {
            assert!(date("business_date", bad).is_err(), "{bad}");
        }
    }
}
