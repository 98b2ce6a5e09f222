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

use generate::Table;
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

/// Accounts up to which the demo ledger is copied by one stream.
const ONE_STREAM_MAX: i64 = 20_000;

/// The order in which the tables are copied, and how many streams copy
/// them at once, each taking the next table when it is done with one (each
/// table by one stream, see [`bulk::copy_tables`]): a small ledger, or one
/// whose foreign keys are checked row by row, by one stream, parents
/// first; else by three, the two largest tables (transactions and usage
/// records, about 9 million rows each for 1,000,000 accounts, and most of
/// the index builds) first, one stream each, while the third copies the
/// five others. Measured on two cores for 1,000,000 accounts: four streams
/// each copying every table for a quarter of the accounts loaded in 155.9,
/// 149.9 and 148.3 s, one stream copying every table in 141.5 s, three
/// streams a table each in 135.2 and 146.1 s (121.1 and 137.4 s in two
/// full benchmark runs); two streams taking the largest tables first in
/// 149.3 s (the builds of the first tables then slowed the copy of
/// transactions, whose five index builds came last).
fn copy_plan(accounts: i64, fk_checks_off: bool) -> (Vec<Table>, usize) {
    if accounts <= ONE_STREAM_MAX || !fk_checks_off {
        return (Table::ALL.to_vec(), 1);
    }
    (
        vec![
            Table::Transactions,
            Table::UsageRecords,
            Table::Accounts,
            Table::Subscriptions,
            Table::SubscriptionServices,
            Table::BillUnits,
            Table::Balances,
        ],
        3,
    )
}

/// Replaces the ledger of `client_id` with a generated one of `accounts`
/// accounts (`A0000001` upward): the client's ledger is removed and its
/// catalogue created in one database transaction, the ids of the new rows
/// reserved, then the rows generated in this process and copied in (binary
/// COPY), one transaction per table, a few tables at once on connections of
/// their own (see `copy_plan`); on a ledger that holds no other client, a
/// large load drops the indexes and keys no foreign key refers to first
/// (see [`bulk::drop_rebuildable_indexes`]), copies the leaf tables with
/// `FREEZE` (see [`bulk::CopyMode`]) and builds each table's indexes again
/// as soon as that table is copied, while the other tables are copied; each
/// table's rows are generated in the order of its keys, so those builds
/// sort presorted input. Any load also builds again what a load that died
/// part-way left dropped. Then the ledger tables are analyzed. A load that
/// fails part-way leaves some of the rows; loading again replaces them.
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
    let (ids, rebuild, fk_checks_off) = {
        let mut conn = db.conn().await?;
        store::reset_demo_ledger(&mut conn, client_id).await?;
        let ids = store::reserve_ids(&mut conn, spec.accounts).await?;
        let rebuild = spec.accounts >= REBUILD_INDEXES_MIN
            && store::ledger_is_alone(&mut conn, client_id).await?;
        let fk_checks_off = store::foreign_key_checks_can_be_off(&mut conn).await?;
        (ids, rebuild, fk_checks_off)
    };
    let url = db.url();
    let dropped = if rebuild {
        bulk::drop_rebuildable_indexes(url).await?
    } else {
        bulk::dropped_indexes(url).await?
    };
    let mode = bulk::CopyMode {
        fk_checks_off,
        freeze_leaves: rebuild,
    };
    let (order, streams) = copy_plan(spec.accounts, fk_checks_off);
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(order));
    let next_table = || {
        queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    };
    let rebuilds = rebuild::IndexRebuilds::new(url, &dropped);
    let copied_table = |table| rebuilds.copied(table);
    let copied = futures_util::future::try_join_all((0..streams).map(|_| {
        bulk::copy_tables(
            url,
            client_id,
            &spec,
            &ids,
            &next_table,
            mode,
            &copied_table,
        )
    }))
    .await;
    // The indexes come back whether or not the rows went in.
    let rebuilt = rebuilds.finish().await;
    let copied = copied?;
    rebuilt?;
    store::finish_demo_ledger(&mut *db.conn().await?).await?;
    let counts = copied
        .into_iter()
        .fold(LedgerCounts::default(), |total, stream| LedgerCounts {
            accounts: total.accounts + stream.accounts,
            subscriptions: total.subscriptions + stream.subscriptions,
            bill_units: total.bill_units + stream.bill_units,
            usage_records: total.usage_records + stream.usage_records,
            transactions: total.transactions + stream.transactions,
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
    use std::collections::HashSet;

    use super::{copy_plan, ONE_STREAM_MAX};
    use crate::billing::demo::generate::Table;

    #[test]
    fn every_table_is_copied_once() {
        for (accounts, fk_checks_off, streams) in [
            (1, true, 1),
            (ONE_STREAM_MAX, true, 1),
            (ONE_STREAM_MAX + 1, true, 3),
            (1_000_000, true, 3),
            (1_000_000, false, 1),
        ] {
            let (order, n) = copy_plan(accounts, fk_checks_off);
            assert_eq!(n, streams, "{accounts} {fk_checks_off}");
            let once: HashSet<Table> = order.iter().copied().collect();
            assert_eq!(order.len(), Table::ALL.len(), "{accounts} {fk_checks_off}");
            assert_eq!(once, Table::ALL.into_iter().collect());
        }
        // Checked row by row, parents come first, one after the other.
        assert_eq!(copy_plan(1_000_000, false), (Table::ALL.to_vec(), 1));
    }
}
