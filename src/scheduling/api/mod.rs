//! The gRPC front end. Each handler decodes and validates its request, calls
//! one use case ([`crate::scheduling::usecases`]), and encodes the answer;
//! errors become statuses in one place, [`status`].

pub mod catalogue;
pub mod configs;
pub mod convert;
pub mod executions;
pub mod page_token;
pub mod status;
pub mod watch_event;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::scheduling::Error;

/// Longest accepted client identifier.
pub const MAX_CLIENT_ID_LEN: usize = 100;

/// Metadata key naming who acts (recorded with every execution action).
pub const ACTOR_METADATA_KEY: &str = "x-actor";

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

/// Who is acting: the `x-actor` request metadata, else `anonymous`.
pub fn actor<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(ACTOR_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().chars().take(200).collect::<String>())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "anonymous".to_string())
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
