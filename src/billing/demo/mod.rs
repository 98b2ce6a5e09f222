//! A realistic reference ledger for demonstrations: thousands of accounts
//! with anniversaries on every day of the month (29-31 included), usage
//! across every rate tier, minimum commitments some of which are not met,
//! and a few broken accounts, so that one daily schedule run does real work
//! and shows real errors in the drill-down.

use chrono::{Days, NaiveDate};

use crate::billing::ledger::rules::{anniversary_days_due_on, AnniversaryDay};
use crate::db::{Db, DbError};

pub mod store;

use store::{DemoLedgerSpec, LedgerCounts};

/// What [`load_demo_ledger`] loaded.
#[derive(Debug, Clone)]
pub struct DemoLedger {
    /// Rows per table.
    pub counts: LedgerCounts,
    /// The anniversary days due on the business date: their accounts are
    /// the BILLING work items of that date's run.
    pub due_days: Vec<u32>,
}

/// Replaces the ledger of `client_id` with a generated one of `accounts`
/// accounts (`A0000001` upward), in one database transaction, set-based.
///
/// Every account's open bill unit is the billing period that contains the
/// day before `business_date`, so the accounts whose anniversary is due on
/// `business_date` have a period ending on it: the daily run of that date
/// re-rates them, syncs the last day's usage, bills them (true-ups where
/// commitments were not met) and syncs the true-ups. Broken accounts: on
/// every day a few SUSPENDED accounts (`ACCOUNT_INACTIVE`) and cancelled
/// subscriptions (`NO_ACTIVE_SUBSCRIPTION`), which BILLING reports; on days
/// other than the business date's, also plans without rates in the account's
/// currency (`RATE_SCHEDULE_NOT_FOUND`), a schedule with a tier gap
/// (`TIER_GAP`) and accumulators that disagree with usage
/// (`ACCUMULATOR_MISMATCH`), which rating reports on later dates. See
/// [`store::load_demo_ledger`] for the exact rules.
pub async fn load_demo_ledger(
    db: &Db,
    client_id: &str,
    accounts: usize,
    business_date: NaiveDate,
) -> Result<DemoLedger, DbError> {
    let usage_day = business_date - Days::new(1);
    let open_periods = (1..=31)
        .map(|day| {
            let period = AnniversaryDay::new(day)
                .expect("1 to 31")
                .period_containing(usage_day);
            (period.start, period.end)
        })
        .collect();
    let due_days: Vec<u32> = anniversary_days_due_on(business_date)
        .into_iter()
        .map(AnniversaryDay::day)
        .collect();
    let spec = DemoLedgerSpec {
        accounts: i64::try_from(accounts).unwrap_or(i64::MAX),
        business_date,
        open_periods,
        due_days: due_days.iter().map(|&d| d as i16).collect(),
    };
    let mut conn = db.conn().await?;
    let counts = store::load_demo_ledger(&mut conn, client_id, &spec).await?;
    tracing::info!(
        client_id,
        %business_date,
        accounts = counts.accounts,
        usage_records = counts.usage_records,
        transactions = counts.transactions,
        "demo ledger loaded"
    );
    Ok(DemoLedger { counts, due_days })
}
