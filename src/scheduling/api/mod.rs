//! The gRPC front end. Each handler decodes and validates its request, calls
//! one use case ([`crate::scheduling::usecases`]), and encodes the answer;
//! errors become statuses in one place, [`status`].

pub mod access;
pub mod auth;
pub mod bearer;
pub mod catalogue;
pub mod codec;
pub mod configs;
pub mod convert;
pub mod execution_request;
pub mod executions;
pub mod page_token;
pub mod status;
pub mod watch_event;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::scheduling::domain;
use crate::scheduling::domain::access::{Caller, Role};
use crate::scheduling::domain::limits::{self, quote};
use crate::scheduling::domain::JobPosition;
use crate::scheduling::usecases::Actor;
use crate::scheduling::Error;

/// Longest accepted client identifier.
pub const MAX_CLIENT_ID_LEN: usize = limits::CLIENT_ID.max_chars;

/// Validates the `client_id` every request carries: 1 to 100 characters of
/// letters, digits, `-`, `_`, `.` and `:`.
pub fn client_id(value: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::invalid(
            "client_id",
            "required: every request names its client",
        ));
    }
    limits::CLIENT_ID.check("client_id", value)?;
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(Error::invalid(
            "client_id",
            format!(
                "must be 1 to {MAX_CLIENT_ID_LEN} letters, digits, '-', '_', '.' or ':'; got {}",
                quote(value)
            ),
        ));
    }
    Ok(value.to_string())
}

/// Parses a resource identifier (a UUID) named `field`.
pub fn uuid(field: &str, value: &str) -> Result<Uuid, Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    limits::IDENTIFIER.check(field, value)?;
    Uuid::parse_str(value).map_err(|_| {
        Error::invalid(
            field,
            format!("{} is not an identifier (a UUID)", quote(value)),
        )
    })
}

/// Parses a business date `YYYY-MM-DD` named `field`, within the business
/// date range of [`limits`].
pub fn date(field: &str, value: &str) -> Result<NaiveDate, Error> {
    if value.is_empty() {
        return Err(Error::invalid(
            field,
            "required: a date in YYYY-MM-DD format",
        ));
    }
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    let parsed = shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{} is not a date in YYYY-MM-DD format", quote(value)),
            )
        })?;
    Ok(limits::check_business_date(field, parsed)?)
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
    // The call's span (and every log line and exported span of it) names
    // the client.
    tracing::Span::current().record("client", client.as_str());
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
    limits::REASON.check("reason", reason)?;
    let caller = caller(extensions)?;
    Ok(Actor {
        actor: caller.name.clone(),
        on_behalf_of: caller.on_behalf_of.clone(),
        reason: reason.to_string(),
    })
}

/// Checks a text field against its limit (length, NUL, control
/// characters) and returns it.
pub fn text<'a>(field: &str, limit: limits::TextLimit, value: &'a str) -> Result<&'a str, Error> {
    limit.check(field, value)?;
    Ok(value)
}

/// Checks the count of `manual_job_positions` and that each names a
/// possible position; whether the configuration has it is the engine's.
pub fn manual_positions(values: &[u32]) -> Result<Vec<JobPosition>, Error> {
    limits::check_count(
        "manual_job_positions",
        values.len(),
        limits::MAX_MANUAL_POSITIONS,
    )?;
    values
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(JobPosition::parse(
                &format!("manual_job_positions[{i}]"),
                *p,
            )?)
        })
        .collect()
}

/// A job position named `position`: required, 1 to the most jobs a
/// configuration can hold.
pub fn position(value: u32) -> Result<JobPosition, Error> {
    Ok(JobPosition::parse("position", value)?)
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
        for bad in [
            "2026-02-30",
            "2026-2-3",
            "26-02-03",
            "",
            "tomorrow",
            "+9999-12-3",
            "-999-12-31",
            "1899-12-31",
            "2026-02-2\0",
            "２０２６-01-01",
        ] {
            assert!(date("business_date", bad).is_err(), "{bad}");
        }
        assert!(date("business_date", "9999-12-31").is_ok());
        assert!(date("business_date", "1900-01-01").is_ok());
    }

    #[test]
    fn bad_values_are_quoted_briefly() {
        let long = "z".repeat(10_000);
        for error in [
            uuid("config_id", &long).unwrap_err(),
            date("business_date", &long).unwrap_err(),
            client_id(&long).unwrap_err(),
            text("reason", limits::REASON, &long).unwrap_err(),
        ] {
            assert!(error.to_string().len() < 200, "{error}");
        }
        assert!(uuid("config_id", "a\0b").is_err());
    }

    #[test]
    fn the_reason_is_bounded() {
        let mut extensions = tonic::Extensions::new();
        extensions.insert(Caller {
            key_id: "k".into(),
            name: "ops@aria".into(),
            role: Role::Operator,
            scope: crate::scheduling::domain::access::ClientScope::All,
            on_behalf_of: None,
        });
        assert_eq!(actor(&extensions, "why").unwrap().actor, "ops@aria");
        assert!(actor(&extensions, &"a".repeat(5_000)).is_err());
        assert!(actor(&extensions, "nul\0").is_err());
    }

    #[test]
    fn manual_positions_are_bounded() {
        assert!(manual_positions(&[1, 2, 50]).is_ok());
        assert!(manual_positions(&[0]).is_err());
        assert!(manual_positions(&[51]).is_err());
        let many = vec![1u32; 100_000];
        let error = manual_positions(&many).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
    }
}
