//! The recurrence rule of a SCHEDULED configuration: parsed and validated
//! once, and refused when it would never fire.

use std::str::FromStr;

use chrono::{Months, NaiveDate, TimeZone as _};

use super::config::RULE_HORIZON_YEARS;
use super::limits;

/// A validated RFC 5545 recurrence rule for the dates of a SCHEDULED
/// configuration. Only whole dates count: the rule's FREQ is DAILY or coarser
/// and it has no BYHOUR, BYMINUTE or BYSECOND.
#[derive(Debug, Clone)]
pub struct RecurrenceRule {
    text: String,
    rule: rrule::RRule<rrule::Unvalidated>,
}

impl PartialEq for RecurrenceRule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl RecurrenceRule {
    /// Parses a rule such as `FREQ=MONTHLY;BYMONTHDAY=-3` (an `RRULE:` prefix is
    /// accepted and dropped).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let body = trimmed
            .strip_prefix("RRULE:")
            .unwrap_or(trimmed)
            .to_string();
        if body.contains('\n') || body.to_ascii_uppercase().contains("DTSTART") {
            return Err("give only the RRULE part (no DTSTART)".into());
        }
        let rule = rrule::RRule::<rrule::Unvalidated>::from_str(&body).map_err(|e| {
            format!(
                "not a valid RFC 5545 RRULE: {}",
                limits::clip(&e.to_string(), 120)
            )
        })?;
        if matches!(
            rule.get_freq(),
            rrule::Frequency::Hourly | rrule::Frequency::Minutely | rrule::Frequency::Secondly
        ) {
            return Err("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY: runs are per date".into());
        }
        if !rule.get_by_hour().is_empty()
            || !rule.get_by_minute().is_empty()
            || !rule.get_by_second().is_empty()
        {
            return Err("BYHOUR, BYMINUTE and BYSECOND are not allowed: use scheduled_time".into());
        }
        if rule.get_interval() == 0 {
            return Err("INTERVAL must be at least 1".into());
        }
        if rule.get_count() == Some(0) {
            return Err("COUNT must be at least 1".into());
        }
        let anchor = chrono::Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .ok_or("the rule anchor is not a valid instant")?
            .with_timezone(&rrule::Tz::UTC);
        rule.clone().validate(anchor).map_err(|e| {
            format!(
                "not a valid RFC 5545 RRULE: {}",
                limits::clip(&e.to_string(), 120)
            )
        })?;
        Ok(Self { text: body, rule })
    }

    /// Refuses a rule with no date from `today` to [`RULE_HORIZON_YEARS`]
    /// later (`COUNT` used up, `UNTIL` past, `BYMONTH=2;BYMONTHDAY=30`):
    /// stored, it would silently never run.
    pub fn check_fires(&self, start: NaiveDate, today: NaiveDate) -> Result<(), String> {
        let horizon = today
            .checked_add_months(Months::new(12 * RULE_HORIZON_YEARS))
            .unwrap_or(NaiveDate::MAX);
        match super::calendar::rule_dates(self, Some(start), today).next() {
            Some(date) if date <= horizon => Ok(()),
            _ => Err(format!(
                "the rule has no date from {today} to {horizon}, so it would never run; \
                 check COUNT, UNTIL, INTERVAL and the BYxxx parts"
            )),
        }
    }

    /// The rule as stored, without `RRULE:`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed rule, for calendar computations.
    pub fn rule(&self) -> &rrule::RRule<rrule::Unvalidated> {
        &self.rule
    }
}
