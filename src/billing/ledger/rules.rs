//! Billing rules of the reference ledger, pure so they can be checked by
//! hand: on which date an anniversary bills, the billing period (bill unit)
//! around a date, which volume tier prices a period, and how much a
//! minimum-commitment true-up is.
//!
//! Money is an integer number of minor units (`i64`); unit prices are minor
//! units per unit of measure, so amounts are exact products and nothing is
//! rounded.

use chrono::{Datelike, Days, Months, NaiveDate};

/// Why a billing rule could not be applied to a ledger's data. [`code`]
/// gives the work item error code shown in the drill-down.
///
/// [`code`]: BillingRuleError::code
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingRuleError {
    /// The tiers of a rate schedule leave quantities uncovered: none starts
    /// at 0, two are not contiguous, or the last has an upper bound.
    #[error("rate tiers leave a gap: no tier covers quantities from {from}{}", .to.map(|t| format!(" to {t}")).unwrap_or_else(|| " upward".into()))]
    TierGap {
        /// First uncovered quantity.
        from: i64,
        /// End (exclusive) of the uncovered range; `None`: unbounded.
        to: Option<i64>,
    },
    /// Two tiers of a rate schedule cover the same quantities.
    #[error("rate tiers {first} and {second} overlap")]
    TierOverlap {
        /// The lower tier's number.
        first: i32,
        /// The higher tier's number.
        second: i32,
    },
    /// An accumulator balance below zero cannot select a tier.
    #[error("accumulator balance {0} is negative")]
    NegativeBalance(i64),
    /// An amount does not fit in 64 bits of minor units.
    #[error("amount overflows: {quantity} x {unit_price_minor}")]
    AmountOverflow {
        /// Billable quantity.
        quantity: i64,
        /// Unit price in minor units.
        unit_price_minor: i64,
    },
}

impl BillingRuleError {
    /// The machine-readable work item error code.
    pub fn code(&self) -> &'static str {
        match self {
            BillingRuleError::TierGap { .. } => "TIER_GAP",
            BillingRuleError::TierOverlap { .. } => "TIER_OVERLAP",
            BillingRuleError::NegativeBalance(_) => "ACCUMULATOR_MISMATCH",
            BillingRuleError::AmountOverflow { .. } => "AMOUNT_OVERFLOW",
        }
    }
}

/// The day of the month an account bills on, 1 to 31. Days 29 to 31 bill on
/// the last day of shorter months and return to their day after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnniversaryDay(u32);

impl AnniversaryDay {
    /// The anniversary day `day`, if it is between 1 and 31.
    pub fn new(day: u32) -> Option<Self> {
        (1..=31).contains(&day).then_some(Self(day))
    }

    /// The day of the month, 1 to 31.
    pub fn day(self) -> u32 {
        self.0
    }

    /// The date the anniversary bills on in `year`-`month`: the anniversary
    /// day, or the month's last day when the month is shorter.
    // Invariant: callers pass a month of a date chrono represents, and the
    // day is clamped to the month's length.
    #[allow(clippy::expect_used)]
    pub fn billing_date_in(self, year: i32, month: u32) -> NaiveDate {
        let first = NaiveDate::from_ymd_opt(year, month, 1).expect("valid year and month");
        let last = u32::from(first.num_days_in_month());
        first.with_day(self.0.min(last)).expect("day within month")
    }

    /// Whether the anniversary bills on `date`.
    pub fn is_due_on(self, date: NaiveDate) -> bool {
        self.billing_date_in(date.year(), date.month()) == date
    }

    /// The first billing date strictly after `date`.
    pub fn next_billing_date_after(self, date: NaiveDate) -> NaiveDate {
        let this_month = self.billing_date_in(date.year(), date.month());
        if this_month > date {
            return this_month;
        }
        let next = first_of_month(date) + Months::new(1);
        self.billing_date_in(next.year(), next.month())
    }

    /// The billing period that contains `date`: from the last billing date
    /// on or before it to the next one after it.
    pub fn period_containing(self, date: NaiveDate) -> BillingPeriod {
        let this_month = self.billing_date_in(date.year(), date.month());
        let start = if this_month <= date {
            this_month
        } else {
            let previous = first_of_month(date) - Months::new(1);
            self.billing_date_in(previous.year(), previous.month())
        };
        BillingPeriod {
            start,
            end: self.next_billing_date_after(start),
        }
    }

    /// The billing period that starts on `start` (a billing date of this
    /// anniversary).
    pub fn period_starting(self, start: NaiveDate) -> BillingPeriod {
        BillingPeriod {
            start,
            end: self.next_billing_date_after(start),
        }
    }
}

/// The anniversary days that bill on `date`, in increasing order: the
/// date's day, and on the last day of a month also every later day up to 31.
pub fn anniversary_days_due_on(date: NaiveDate) -> Vec<AnniversaryDay> {
    let last = u32::from(date.num_days_in_month());
    let upto = if date.day() == last { 31 } else { date.day() };
    (date.day()..=upto).map(AnniversaryDay).collect()
}

// Invariant: every month has a first day.
#[allow(clippy::expect_used)]
fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("day 1 exists")
}

/// A billing period: the half-open range of dates `[start, end)`. The
/// period ending on date D is billed on D, and D starts the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingPeriod {
    /// First date of the period (a billing date).
    pub start: NaiveDate,
    /// First date after the period (the next billing date).
    pub end: NaiveDate,
}

impl BillingPeriod {
    /// Whether `date` falls in the period.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.start <= date && date < self.end
    }

    /// Number of days in the period.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }

    /// The last date of the period.
    pub fn last_date(&self) -> NaiveDate {
        self.end - Days::new(1)
    }
}

/// A volume rating tier: it covers accumulator balances from `from_quantity`
/// (inclusive) up to `to_quantity` (exclusive; `None`: no upper bound). A
/// balance exactly on a bound therefore selects the higher tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateTier {
    /// Position of the tier in its schedule, from 1.
    pub tier_no: i32,
    /// Lowest balance the tier covers (inclusive).
    pub from_quantity: i64,
    /// First balance above the tier (exclusive); `None`: unbounded.
    pub to_quantity: Option<i64>,
    /// Price of one unit of billable usage, in minor units.
    pub unit_price_minor: i64,
}

impl RateTier {
    /// Whether the tier covers the balance `quantity`.
    pub fn covers(&self, quantity: i64) -> bool {
        self.from_quantity <= quantity && self.to_quantity.is_none_or(|to| quantity < to)
    }

    /// Amount of `billable_quantity` units at this tier's price.
    pub fn price(&self, billable_quantity: i64) -> Result<i64, BillingRuleError> {
        billable_quantity.checked_mul(self.unit_price_minor).ok_or(
            BillingRuleError::AmountOverflow {
                quantity: billable_quantity,
                unit_price_minor: self.unit_price_minor,
            },
        )
    }
}

/// Checks that `tiers` cover every quantity from 0 upward exactly once.
/// Tiers may come in any order.
pub fn validate_tiers(tiers: &[RateTier]) -> Result<(), BillingRuleError> {
    let mut sorted: Vec<&RateTier> = tiers.iter().collect();
    sorted.sort_by_key(|t| (t.from_quantity, t.tier_no));
    let mut covered_to: Option<i64> = Some(0);
    let mut previous: Option<&RateTier> = None;
    for tier in sorted {
        match covered_to {
            None => {
                return Err(BillingRuleError::TierOverlap {
                    first: previous.map_or(tier.tier_no, |p| p.tier_no),
                    second: tier.tier_no,
                })
            }
            Some(to) if tier.from_quantity > to => {
                return Err(BillingRuleError::TierGap {
                    from: to,
                    to: Some(tier.from_quantity),
                })
            }
            Some(to) if tier.from_quantity < to => {
                return Err(BillingRuleError::TierOverlap {
                    first: previous.map_or(tier.tier_no, |p| p.tier_no),
                    second: tier.tier_no,
                })
            }
            Some(_) => {}
        }
        covered_to = tier.to_quantity;
        previous = Some(tier);
    }
    match covered_to {
        None => Ok(()),
        Some(from) => Err(BillingRuleError::TierGap { from, to: None }),
    }
}

/// The tier of a valid schedule that prices a period whose accumulator
/// balance is `balance`. The whole schedule is validated first, so a broken
/// schedule fails for every balance, not only for balances in its gap.
pub fn select_tier(tiers: &[RateTier], balance: i64) -> Result<RateTier, BillingRuleError> {
    if balance < 0 {
        return Err(BillingRuleError::NegativeBalance(balance));
    }
    validate_tiers(tiers)?;
    tiers
        .iter()
        .find(|t| t.covers(balance))
        .copied()
        .ok_or_else(|| BillingRuleError::TierGap {
            from: balance,
            to: Some(balance.saturating_add(1)),
        })
}

/// The true-up owed for a period: the minimum commitment minus the usage
/// eligible for it, never negative and never more than the commitment (net
/// negative usage, e.g. after credits, counts as none).
pub fn true_up_amount(minimum_commitment_minor: i64, eligible_usage_minor: i64) -> i64 {
    minimum_commitment_minor
        .saturating_sub(eligible_usage_minor.max(0))
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn day(n: u32) -> AnniversaryDay {
        AnniversaryDay::new(n).unwrap()
    }

    /// 0 ≤ b < 1000 at 5, 1000 ≤ b < 5000 at 4, 5000 and up at 3.
    fn standard() -> Vec<RateTier> {
        vec![
            RateTier {
                tier_no: 1,
                from_quantity: 0,
                to_quantity: Some(1000),
                unit_price_minor: 5,
            },
            RateTier {
                tier_no: 2,
                from_quantity: 1000,
                to_quantity: Some(5000),
                unit_price_minor: 4,
            },
            RateTier {
                tier_no: 3,
                from_quantity: 5000,
                to_quantity: None,
                unit_price_minor: 3,
            },
        ]
    }

    #[test]
    fn anniversary_day_must_be_a_day_of_month() {
        assert!(AnniversaryDay::new(0).is_none());
        assert!(AnniversaryDay::new(32).is_none());
        assert_eq!(AnniversaryDay::new(31).unwrap().day(), 31);
    }

    #[test]
    fn anniversary_31_bills_on_the_last_day_of_february_and_returns_in_march() {
        // Leap year.
        assert_eq!(day(31).billing_date_in(2028, 2), d(2028, 2, 29));
        // Common year.
        assert_eq!(day(31).billing_date_in(2027, 2), d(2027, 2, 28));
        assert_eq!(day(31).billing_date_in(2027, 3), d(2027, 3, 31));
        assert_eq!(day(31).billing_date_in(2027, 4), d(2027, 4, 30));
        assert_eq!(day(30).billing_date_in(2027, 2), d(2027, 2, 28));
        assert_eq!(day(29).billing_date_in(2028, 2), d(2028, 2, 29));
        assert_eq!(day(29).billing_date_in(2027, 2), d(2027, 2, 28));
        assert_eq!(day(15).billing_date_in(2027, 2), d(2027, 2, 15));
    }

    #[test]
    fn next_billing_date_walks_31_jan_feb_mar() {
        let a = day(31);
        assert_eq!(a.next_billing_date_after(d(2027, 1, 31)), d(2027, 2, 28));
        assert_eq!(a.next_billing_date_after(d(2027, 2, 28)), d(2027, 3, 31));
        assert_eq!(a.next_billing_date_after(d(2028, 1, 31)), d(2028, 2, 29));
        assert_eq!(a.next_billing_date_after(d(2028, 2, 29)), d(2028, 3, 31));
        // From a date that is not a billing date.
        assert_eq!(a.next_billing_date_after(d(2027, 2, 10)), d(2027, 2, 28));
        // Year end.
        assert_eq!(
            day(5).next_billing_date_after(d(2027, 12, 5)),
            d(2028, 1, 5)
        );
    }

    #[test]
    fn periods_are_half_open_and_chain() {
        let jan = day(31).period_starting(d(2027, 1, 31));
        assert_eq!(jan.end, d(2027, 2, 28));
        assert!(jan.contains(d(2027, 1, 31)));
        assert!(jan.contains(d(2027, 2, 27)));
        assert!(!jan.contains(d(2027, 2, 28)));
        assert_eq!(jan.days(), 28);
        assert_eq!(jan.last_date(), d(2027, 2, 27));
        let feb = day(31).period_starting(jan.end);
        assert_eq!((feb.start, feb.end), (d(2027, 2, 28), d(2027, 3, 31)));
        assert_eq!(feb.days(), 31);
    }

    #[test]
    fn period_containing_a_date() {
        let p = day(31).period_containing(d(2028, 2, 28));
        assert_eq!((p.start, p.end), (d(2028, 1, 31), d(2028, 2, 29)));
        let p = day(31).period_containing(d(2028, 2, 29));
        assert_eq!((p.start, p.end), (d(2028, 2, 29), d(2028, 3, 31)));
        let p = day(15).period_containing(d(2027, 1, 10));
        assert_eq!((p.start, p.end), (d(2026, 12, 15), d(2027, 1, 15)));
        let p = day(1).period_containing(d(2027, 3, 1));
        assert_eq!((p.start, p.end), (d(2027, 3, 1), d(2027, 4, 1)));
    }

    #[test]
    fn days_due_on_a_month_end_include_the_longer_anniversaries() {
        let days = |date| {
            anniversary_days_due_on(date)
                .into_iter()
                .map(AnniversaryDay::day)
                .collect::<Vec<_>>()
        };
        assert_eq!(days(d(2027, 2, 28)), vec![28, 29, 30, 31]);
        assert_eq!(days(d(2028, 2, 28)), vec![28]);
        assert_eq!(days(d(2028, 2, 29)), vec![29, 30, 31]);
        assert_eq!(days(d(2027, 4, 30)), vec![30, 31]);
        assert_eq!(days(d(2027, 3, 30)), vec![30]);
        assert_eq!(days(d(2027, 3, 31)), vec![31]);
        assert_eq!(days(d(2027, 3, 1)), vec![1]);
        // Consistent with is_due_on for every day of a few years.
        let mut date = d(2027, 1, 1);
        while date < d(2029, 1, 1) {
            for n in 1..=31 {
                assert_eq!(
                    day(n).is_due_on(date),
                    days(date).contains(&n),
                    "{n} on {date}"
                );
            }
            date = date.succ_opt().unwrap();
        }
    }

    #[test]
    fn tier_selection_on_bounds_and_zero() {
        let tiers = standard();
        assert_eq!(select_tier(&tiers, 0).unwrap().tier_no, 1);
        assert_eq!(select_tier(&tiers, 999).unwrap().tier_no, 1);
        // Exactly on a bound: the bound belongs to the higher tier.
        assert_eq!(select_tier(&tiers, 1000).unwrap().tier_no, 2);
        assert_eq!(select_tier(&tiers, 4999).unwrap().tier_no, 2);
        assert_eq!(select_tier(&tiers, 5000).unwrap().tier_no, 3);
        assert_eq!(select_tier(&tiers, i64::MAX).unwrap().tier_no, 3);
        assert_eq!(
            select_tier(&tiers, -1),
            Err(BillingRuleError::NegativeBalance(-1))
        );
    }

    #[test]
    fn tiers_in_any_order() {
        let mut tiers = standard();
        tiers.reverse();
        assert_eq!(select_tier(&tiers, 1000).unwrap().unit_price_minor, 4);
    }

    #[test]
    fn broken_schedules_fail_for_every_balance() {
        let mut gap = standard();
        gap[1].from_quantity = 1500;
        let err = select_tier(&gap, 10).unwrap_err();
        assert_eq!(
            err,
            BillingRuleError::TierGap {
                from: 1000,
                to: Some(1500)
            }
        );
        assert_eq!(err.code(), "TIER_GAP");

        let mut not_from_zero = standard();
        not_from_zero.remove(0);
        assert_eq!(
            select_tier(&not_from_zero, 2000),
            Err(BillingRuleError::TierGap {
                from: 0,
                to: Some(1000)
            })
        );

        let mut capped = standard();
        capped[2].to_quantity = Some(10_000);
        assert_eq!(
            select_tier(&capped, 0),
            Err(BillingRuleError::TierGap {
                from: 10_000,
                to: None
            })
        );

        assert_eq!(
            select_tier(&[], 0),
            Err(BillingRuleError::TierGap { from: 0, to: None })
        );

        let mut overlap = standard();
        overlap[1].from_quantity = 900;
        let err = select_tier(&overlap, 0).unwrap_err();
        assert_eq!(
            err,
            BillingRuleError::TierOverlap {
                first: 1,
                second: 2
            }
        );
        assert_eq!(err.code(), "TIER_OVERLAP");
    }

    #[test]
    fn pricing_is_exact_and_checked() {
        let tier = standard()[1];
        assert_eq!(tier.price(0), Ok(0));
        assert_eq!(tier.price(1234), Ok(4936));
        assert_eq!(tier.price(i64::MAX).unwrap_err().code(), "AMOUNT_OVERFLOW");
    }

    #[test]
    fn true_up_is_the_shortfall_never_negative() {
        assert_eq!(true_up_amount(10_000, 7_250), 2_750);
        assert_eq!(true_up_amount(10_000, 10_000), 0);
        assert_eq!(true_up_amount(10_000, 12_000), 0);
        assert_eq!(true_up_amount(10_000, 0), 10_000);
        // Net negative usage counts as none: never more than the commitment.
        assert_eq!(true_up_amount(10_000, -500), 10_000);
    }
}
