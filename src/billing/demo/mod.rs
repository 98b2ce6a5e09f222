//! A realistic reference ledger for demonstrations: thousands of accounts
//! with anniversaries on every day of the month (29-31 included), usage
//! across every rate tier, minimum commitments some of which are not met,
//! and a few broken accounts, so that one daily schedule run does real work
//! and shows real errors in the drill-down.

use chrono::{Days, NaiveDate};

use crate::billing::ledger::rules::{anniversary_days_due_on, AnniversaryDay};
use crate::db::{Db, DbError};

pub mod bulk;
mod copy_format;
pub mod generate;
mod rebuild;
pub mod store;

use store::{DemoLedgerSpec, LedgerCounts};

/// Why loading a demo ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A statement on the pool failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The bulk load (COPY, indexes) on its own connections failed.
    #[error("demo ledger bulk load: {0}")]
    Bulk(#[from] tokio_postgres::Error),
    /// The task building a table's indexes again stopped without an answer.
    #[error("demo ledger index build: {0}")]
    IndexBuild(String),
}

/// Accounts from which a load into a ledger holding no other client drops
/// the indexes and keys no foreign key refers to and builds them again
/// after.
const REBUILD_INDEXES_MIN: i64 = 50_000;

/// What [`load_demo_ledger`] loaded.
#[derive(Debug, Clone)]
pub struct DemoLedger {
    /// Rows per table.
    pub counts: LedgerCounts,
    /// The anniversary days due on the business date: their accounts are
    /// the BILLING work items of that date's run.
    pub due_days: Vec<u32>,
    /// Indexes and keys dropped for the load and built again (0 for a
    /// small load or a ledger shared with other clients, unless an earlier
    /// load died before building its own again).
    pub indexes_rebuilt: usize,
}

/// Accounts below which the demo ledger loads in one part.
const ONE_PART_MAX: i64 = 20_000;

/// The account ranges loaded at once, on separate connections: one part
/// for a small ledger, else two per core the machine has (at most four), so
/// the database's cores stay busy on a large one while each stream also
/// waits on its generator and the network.
fn load_parts(accounts: i64) -> Vec<(i64, i64)> {
    let parts = if accounts <= ONE_PART_MAX {
        1
    } else {
        std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).min(4)) as i64
    };
    let size = (accounts + parts - 1) / parts.max(1);
    (0..parts)
        .map(|i| (i * size + 1, ((i + 1) * size).min(accounts)))
        .filter(|(first, last)| first <= last)
        .collect()
}

/// Replaces the ledger of `client_id` with a generated one of `accounts`
/// accounts (`A0000001` upward): the client's ledger is removed and its
/// catalogue created in one database transaction, the ids of the new rows
/// reserved, then the rows generated in this process and copied in (binary
/// COPY) in a few parts at once, each part one transaction per table on a
/// connection of its own; on a ledger that holds no other client, a large
/// load drops the indexes and keys no foreign key refers to first (see
/// [`bulk::drop_rebuildable_indexes`]) and builds each table's again as soon
/// as every part has copied that table, while the other tables are copied;
/// any load also builds again what a load that died part-way left dropped.
/// Then the ledger tables are analyzed. A load that fails part-way leaves
/// part of the accounts; loading again replaces them.
///
/// Every account's open bill unit is the billing period that contains the
/// day before `business_date`, so the accounts whose anniversary is due on
/// `business_date` have a period ending on it: the daily run of that date
/// re-rates them, syncs the last day's usage, bills them (true-ups where
/// commitments were not met) and syncs the true-ups. About ten usage
/// records per account; a minimum commitment on one subscription in four.
/// Broken accounts, 1% of each kind: on every day SUSPENDED accounts
/// (`ACCOUNT_INACTIVE`) and accounts whose only subscription is cancelled
/// (`NO_ACTIVE_SUBSCRIPTION`), which BILLING reports; on days other than
/// the business date's, also plans without rates in the account's currency
/// (`RATE_SCHEDULE_NOT_FOUND`), a schedule with a tier gap (`TIER_GAP`) and
/// accumulators that disagree with usage (`ACCUMULATOR_MISMATCH`), which
/// rating reports on later dates. See [`generate::encode`] for the exact
/// rules.
pub async fn load_demo_ledger(
    db: &Db,
    client_id: &str,
    accounts: usize,
    business_date: NaiveDate,
) -> Result<DemoLedger, DemoError> {
    let usage_day = business_date - Days::new(1);
    let open_periods = (1..=31)
        .map(|day| {
            // Invariant: 1 to 31 are anniversary days.
            #[allow(clippy::expect_used)]
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
    let (ids, rebuild) = {
        let mut conn = db.conn().await?;
        store::reset_demo_ledger(&mut conn, client_id).await?;
        let ids = store::reserve_ids(&mut conn, spec.accounts).await?;
        let rebuild = spec.accounts >= REBUILD_INDEXES_MIN
            && store::ledger_is_alone(&mut conn, client_id).await?;
        (ids, rebuild)
    };
    let url = db.url();
    let dropped = if rebuild {
        bulk::drop_rebuildable_indexes(url).await?
    } else {
        bulk::dropped_indexes(url).await?
    };
    let parts = load_parts(spec.accounts);
    let rebuilds = rebuild::IndexRebuilds::new(url, &dropped, parts.len());
    let copied_table = |table| rebuilds.copied(table);
    let copied = futures_util::future::try_join_all(parts.iter().map(|&(first, last)| {
        bulk::copy_accounts(url, client_id, &spec, &ids, first, last, &copied_table)
    }))
    .await;
    // The indexes come back whether or not the rows went in.
    let rebuilt = rebuilds.finish().await;
    let copied = copied?;
    rebuilt?;
    store::finish_demo_ledger(&mut *db.conn().await?).await?;
    let counts = copied
        .into_iter()
        .fold(LedgerCounts::default(), |total, part| LedgerCounts {
            accounts: total.accounts + part.accounts,
            subscriptions: total.subscriptions + part.subscriptions,
            bill_units: total.bill_units + part.bill_units,
            usage_records: total.usage_records + part.usage_records,
            transactions: total.transactions + part.transactions,
        });
    tracing::info!(
        client_id,
        %business_date,
        accounts = counts.accounts,
        usage_records = counts.usage_records,
        transactions = counts.transactions,
        indexes_rebuilt = dropped.len(),
        "demo ledger loaded"
    );
    Ok(DemoLedger {
        counts,
        due_days,
        indexes_rebuilt: dropped.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::load_parts;

    #[test]
    fn parts_cover_every_account_once() {
        for accounts in [0, 1, 31, 20_000, 20_001, 100_000, 1_000_003] {
            let parts = load_parts(accounts);
            let mut next = 1;
            for (first, last) in &parts {
                assert_eq!(*first, next, "{accounts}: {parts:?}");
                assert!(first <= last, "{accounts}: {parts:?}");
                next = last + 1;
            }
            assert_eq!(next, accounts + 1, "{accounts}: {parts:?}");
        }
        assert_eq!(load_parts(20_000).len(), 1);
    }
}
