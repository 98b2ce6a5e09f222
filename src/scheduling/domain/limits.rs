//! The input limits of the whole API, in one place: how long each text may
//! be and which characters it may hold, how many entries each repeated field
//! may have, which business dates and instants are accepted, and the bounds
//! of numbers. Every request is checked against these before it reaches the
//! database, so a wrong request gets INVALID_ARGUMENT naming its field, never
//! a database error, and no message echoes more than a short prefix of the
//! bad value. README.md lists the same limits for callers.

use chrono::{DateTime, NaiveDate, Utc};

use super::error::Error;

/// Longest prefix of a bad value that an error message quotes, in characters.
pub const QUOTE_CHARS: usize = 40;

/// Whether a text may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line: no control character at all (names, identifiers, codes).
    Single,
    /// Free text: tab, line feed and carriage return allowed, no other
    /// control character.
    Multi,
}

/// The rule of one text field: its maximum length in characters and
/// whether it may span lines. NUL, which PostgreSQL cannot store in text,
/// is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimit {
    /// Most characters (Unicode scalar values) accepted.
    pub max_chars: usize,
    /// Which control characters are accepted.
    pub lines: Lines,
}

/// `client_id` on every request.
pub const CLIENT_ID: TextLimit = TextLimit {
    max_chars: 100,
    lines: Lines::Single,
};
/// Resource identifiers (`config_id`): a UUID is 36 characters; longer
/// input is refused before parsing.
pub const IDENTIFIER: TextLimit = TextLimit {
    max_chars: 64,
    lines: Lines::Single,
};
/// A configuration's `name`.
pub const CONFIG_NAME: TextLimit = TextLimit {
    max_chars: 200,
    lines: Lines::Single,
};
/// A configuration's `description`.
pub const DESCRIPTION: TextLimit = TextLimit {
    max_chars: 2000,
    lines: Lines::Multi,
};
/// An IANA `time_zone` name.
pub const TIME_ZONE: TextLimit = TextLimit {
    max_chars: 64,
    lines: Lines::Single,
};
/// A `recurrence_rule` (RFC 5545 RRULE).
pub const RECURRENCE_RULE: TextLimit = TextLimit {
    max_chars: 500,
    lines: Lines::Single,
};
/// Times of day (`scheduled_time`, exception window), `HH:MM:SS`.
pub const TIME_OF_DAY: TextLimit = TextLimit {
    max_chars: 16,
    lines: Lines::Single,
};
/// A `job_type` of the catalogue.
pub const JOB_TYPE: TextLimit = TextLimit {
    max_chars: 100,
    lines: Lines::Single,
};
/// The `reason` recorded with an execution action.
pub const REASON: TextLimit = TextLimit {
    max_chars: 1000,
    lines: Lines::Multi,
};
/// The `x-actor` request metadata naming who acts.
pub const ACTOR: TextLimit = TextLimit {
    max_chars: 200,
    lines: Lines::Single,
};
/// The `error_code` filter of ListErroredWorkItems.
pub const ERROR_CODE: TextLimit = TextLimit {
    max_chars: 200,
    lines: Lines::Single,
};
/// An `etag`.
pub const ETAG: TextLimit = TextLimit {
    max_chars: 32,
    lines: Lines::Single,
};
/// A `page_token` (the server issues tokens far shorter).
pub const PAGE_TOKEN: TextLimit = TextLimit {
    max_chars: 1024,
    lines: Lines::Single,
};
/// One path of an `update_mask`.
pub const MASK_PATH: TextLimit = TextLimit {
    max_chars: 100,
    lines: Lines::Single,
};
/// A business date, `YYYY-MM-DD`.
pub const DATE_TEXT: TextLimit = TextLimit {
    max_chars: 10,
    lines: Lines::Single,
};

/// Most jobs one configuration may list; also the highest job position.
pub const MAX_JOBS: usize = 50;
/// Most entries of `manual_job_positions`.
pub const MAX_MANUAL_POSITIONS: usize = MAX_JOBS;
/// Most paths of an `update_mask`.
pub const MAX_MASK_PATHS: usize = 20;
/// Most field violations one error reports (the rest are summarised).
pub const MAX_VIOLATIONS: usize = 10;

/// First accepted business date.
pub const FIRST_BUSINESS_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};
/// Last accepted business date.
pub const LAST_BUSINESS_DATE: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(d) => d,
    None => NaiveDate::MAX,
};

/// First accepted instant: 0001-01-01T00:00:00Z, the start of the range
/// `google.protobuf.Timestamp` documents.
pub const FIRST_INSTANT_SECONDS: i64 = -62_135_596_800;
/// Last accepted instant: 9999-12-31T23:59:59.999999999Z, the end of the
/// range `google.protobuf.Timestamp` documents.
pub const LAST_INSTANT_SECONDS: i64 = 253_402_300_799;

/// Largest `page_size` honoured; larger values are lowered to it.
pub const MAX_PAGE_SIZE: i64 = 1000;
/// Most runs ListUpcomingRuns returns.
pub const MAX_UPCOMING_RUNS: i32 = 366;

/// `value` quoted for a message: at most [`QUOTE_CHARS`] characters,
/// escaped like a Rust string literal, with `…` when cut.
pub fn quote(value: &str) -> String {
    let mut chars = value.chars();
    let prefix: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{prefix:?}…")
    } else {
        format!("{prefix:?}")
    }
}

/// `text` cut to at most `max` characters, with `…` when cut; for
/// messages built from text that is not a request value (e.g. a parser's
/// error).
pub fn clip(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let prefix: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{prefix}…")
    } else {
        prefix
    }
}

impl TextLimit {
    /// Checks `value` of `field` against the limit: INVALID_ARGUMENT naming
    /// the field when it is too long or holds a refused character. The
    /// empty string passes (whether a field is required is the caller's).
    pub fn check(&self, field: &str, value: &str) -> Result<(), Error> {
        match self.problem(value) {
            None => Ok(()),
            Some(problem) => Err(Error::invalid(field, problem)),
        }
    }

    /// Why `value` breaks the limit, if it does.
    pub fn problem(&self, value: &str) -> Option<String> {
        // Counting stops one past the limit, so a huge value costs little.
        if value.chars().take(self.max_chars + 1).count() > self.max_chars {
            return Some(format!(
                "at most {} characters; got {}",
                self.max_chars,
                quote(value)
            ));
        }
        if value.contains('\0') {
            return Some(format!(
                "must not contain NUL characters; got {}",
                quote(value)
            ));
        }
        let refused = |c: char| match self.lines {
            Lines::Single => c.is_control(),
            Lines::Multi => c.is_control() && !matches!(c, '\t' | '\n' | '\r'),
        };
        if value.chars().any(refused) {
            let what = match self.lines {
                Lines::Single => "control characters",
                Lines::Multi => "control characters other than tab and line breaks",
            };
            return Some(format!("must not contain {what}; got {}", quote(value)));
        }
        None
    }
}

/// Refuses a repeated `field` with more than `max` entries.
pub fn check_count(field: &str, count: usize, max: usize) -> Result<(), Error> {
    if count > max {
        return Err(Error::invalid(
            field,
            format!("at most {max} entries; got {count}"),
        ));
    }
    Ok(())
}

/// Refuses a business date outside
/// [`FIRST_BUSINESS_DATE`]`..=`[`LAST_BUSINESS_DATE`].
pub fn check_business_date(field: &str, date: NaiveDate) -> Result<NaiveDate, Error> {
    if (FIRST_BUSINESS_DATE..=LAST_BUSINESS_DATE).contains(&date) {
        Ok(date)
    } else {
        Err(Error::invalid(
            field,
            format!("must be from {FIRST_BUSINESS_DATE} to {LAST_BUSINESS_DATE}"),
        ))
    }
}

/// The instant of protobuf `seconds` and `nanos` named `field`, within
/// 0001-01-01T00:00:00Z..=9999-12-31T23:59:59.999999999Z and with `nanos`
/// in 0..=999,999,999.
pub fn instant(field: &str, seconds: i64, nanos: i32) -> Result<DateTime<Utc>, Error> {
    if !(FIRST_INSTANT_SECONDS..=LAST_INSTANT_SECONDS).contains(&seconds) {
        return Err(Error::invalid(
            field,
            "seconds must be from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z",
        ));
    }
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n <= 999_999_999)
        .ok_or_else(|| Error::invalid(field, "nanos must be 0 to 999999999"))?;
    DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| Error::invalid(field, "not a valid timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: Error) -> (String, String) {
        match error {
            Error::InvalidArgument(v) if v.len() == 1 => {
                (v[0].field.clone(), v[0].description.clone())
            }
            other => panic!("expected one violation, got {other:?}"),
        }
    }

    #[test]
    fn quotes_are_short_and_escaped() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("a\0b"), "\"a\\0b\"");
        let long = quote(&"x".repeat(10_000));
        assert!(long.chars().count() <= QUOTE_CHARS + 3, "{long}");
        assert!(long.ends_with('…'));
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn text_length_is_counted_in_characters() {
        let limit = TextLimit {
            max_chars: 3,
            lines: Lines::Single,
        };
        assert!(limit.check("f", "äöü").is_ok());
        assert!(limit.check("f", "").is_ok());
        let (field, why) = field_of(limit.check("f", "äöüß").unwrap_err());
        assert_eq!(field, "f");
        assert!(why.contains("at most 3"), "{why}");
        let (_, why) = field_of(CONFIG_NAME.check("f", &"y".repeat(1_000_000)).unwrap_err());
        assert!(why.len() < 200, "{why}");
    }

    #[test]
    fn nul_is_refused_everywhere() {
        for limit in [CLIENT_ID, DESCRIPTION, REASON, ERROR_CODE, PAGE_TOKEN] {
            let (_, why) = field_of(limit.check("f", "a\0b").unwrap_err());
            assert!(why.contains("NUL"), "{why}");
        }
    }

    #[test]
    fn control_characters_depend_on_lines() {
        assert!(DESCRIPTION.check("d", "line 1\nline 2\ttab\r\n").is_ok());
        assert!(DESCRIPTION.check("d", "bell \u{7}").is_err());
        assert!(DESCRIPTION.check("d", "esc \u{1b}[31m").is_err());
        assert!(CONFIG_NAME.check("n", "two\nlines").is_err());
        assert!(ERROR_CODE.check("e", "tab\there").is_err());
        assert!(CONFIG_NAME.check("n", "Ünïcödé ✓ 日本").is_ok());
    }

    #[test]
    fn counts_are_bounded() {
        assert!(check_count("p", MAX_MANUAL_POSITIONS, MAX_MANUAL_POSITIONS).is_ok());
        let (field, why) = field_of(check_count("p", 100_000, MAX_MANUAL_POSITIONS).unwrap_err());
        assert_eq!(field, "p");
        assert!(why.contains("at most 50"), "{why}");
    }

    #[test]
    fn business_dates_have_a_range() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert!(check_business_date("d", d(1900, 1, 1)).is_ok());
        assert!(check_business_date("d", d(9999, 12, 31)).is_ok());
        assert!(check_business_date("d", d(1899, 12, 31)).is_err());
        assert!(check_business_date("d", d(10000, 1, 1)).is_err());
        assert!(check_business_date("d", d(-999, 12, 31)).is_err());
    }

    #[test]
    fn instants_have_a_range() {
        assert!(instant("t", 0, 0).is_ok());
        assert!(instant("t", FIRST_INSTANT_SECONDS, 0).is_ok());
        assert!(instant("t", LAST_INSTANT_SECONDS, 999_999_999).is_ok());
        assert!(instant("t", LAST_INSTANT_SECONDS + 1, 0).is_err());
        assert!(instant("t", FIRST_INSTANT_SECONDS - 1, 0).is_err());
        assert!(instant("t", i64::MIN, 0).is_err());
        assert!(instant("t", i64::MAX, 0).is_err());
        assert!(instant("t", 0, -1).is_err());
        assert!(instant("t", 0, 1_000_000_000).is_err());
    }
}
