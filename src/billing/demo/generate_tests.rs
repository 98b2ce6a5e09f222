//! Unit tests of the demo ledger's generator.

use chrono::NaiveDate;

use super::{encode, Account, CopyBuffer, IdBases, Table, DATA, RECORDS_PER_ACCOUNT, VOICE};
use crate::billing::demo::store::DemoLedgerSpec;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
}

/// 2027-02-28, with every anniversary's open period as the demo loader
/// computes it (day d: from the last d-th on or before 2027-02-27).
fn spec() -> DemoLedgerSpec {
    let periods = (1..=31)
        .map(|day: u32| {
            let start = if day <= 27 {
                d(2027, 2, day)
            } else {
                d(2027, 1, day)
            };
            (start, d(2027, 3, 1))
        })
        .collect();
    DemoLedgerSpec {
        accounts: 31_000,
        business_date: d(2027, 2, 28),
        open_periods: periods,
        due_days: vec![28, 29, 30, 31],
    }
}

#[test]
fn dates_count_days_from_postgres_epoch() {
    let mut buffer = CopyBuffer::default();
    buffer.date(d(2000, 1, 1)).date(d(2027, 2, 28));
    let (bytes, _) = buffer.take();
    assert_eq!(&bytes[..8], &[0, 0, 0, 4, 0, 0, 0, 0]);
    let days = (d(2027, 2, 28) - d(2000, 1, 1)).num_days() as i32;
    assert_eq!(
        &bytes[8..],
        [&4i32.to_be_bytes()[..], &days.to_be_bytes()].concat()
    );
}

#[test]
fn usage_splits_each_total_exactly_within_the_period_allowance_first() {
    let spec = spec();
    let mut records = 0usize;
    for n in 1..=2000 {
        let a = Account::new(&spec, n);
        let mut indexes = std::collections::BTreeSet::new();
        for (slot, s) in a.services() {
            let usage = a.usage(slot, s);
            let total = a.total(s);
            assert_eq!(usage.iter().map(|u| u.2).sum::<i64>(), total, "account {n}");
            assert_eq!(
                usage.iter().map(|u| u.3).sum::<i64>(),
                total.min(s.allowance),
                "account {n}"
            );
            for (index, date, quantity, used) in usage {
                assert!(indexes.insert(index), "account {n}");
                assert!((0..RECORDS_PER_ACCOUNT).contains(&index));
                assert!(
                    a.period.0 <= date && date < spec.business_date,
                    "{n}: {date}"
                );
                assert!(quantity > 0 && (0..=quantity).contains(&used));
                records += 1;
            }
        }
    }
    const { assert!(VOICE.records + DATA.records <= RECORDS_PER_ACCOUNT) };
    // About ten usage records per account.
    assert!((18_000..=21_000).contains(&records), "{records}");
}

#[test]
fn each_broken_kind_is_one_percent_and_rating_faults_stay_off_due_days() {
    let spec = spec();
    let mut kinds = [0usize; 6];
    for n in 1..=31_000 {
        let a = Account::new(&spec, n);
        kinds[a.fault as usize] += 1;
        if a.fault >= 3 {
            assert!(!spec.due_days.contains(&a.day), "{n}");
        }
    }
    assert_eq!(kinds[1], 310);
    assert_eq!(kinds[2], 310);
    assert_eq!(kinds[3..], [270, 270, 270], "kinds 3-5: 27 of 31 days");
}

/// The fields of each row `encode` writes for `table` and accounts
/// `1..=accounts` (binary COPY: a field count, then each field's length
/// and bytes; no NULLs in the key columns read here).
fn rows(table: Table, accounts: i64) -> Vec<Vec<Vec<u8>>> {
    let ids = IdBases {
        bill_unit: 1,
        usage: 1,
        transaction: 1,
    };
    let mut buffer = CopyBuffer::default();
    encode(table, &spec(), &ids, "acme", 1, accounts, &mut buffer);
    let (bytes, _) = buffer.take();
    fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> &'a [u8] {
        *at += n;
        &bytes[*at - n..*at]
    }
    let mut rows = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let fields = take(&bytes, &mut at, 2);
        let fields = i16::from_be_bytes([fields[0], fields[1]]);
        let row = (0..fields)
            .map(|_| {
                let len = take(&bytes, &mut at, 4);
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                take(&bytes, &mut at, usize::try_from(len).unwrap_or(0)).to_vec()
            })
            .collect();
        rows.push(row);
    }
    rows
}

/// Each table's generated rows ascend by its keys, in the bytewise order
/// of the ledger's text (ASCII ids under the C.UTF-8 or C collations), so
/// the index builds after a large load sort presorted input. Before, each
/// account's voice rows came before its data rows and allowances before
/// accumulators, against `usage_records_bill_unit_idx` (bill unit,
/// service) and `balances_pkey` (bill unit, service, balance type).
#[test]
fn rows_are_generated_in_the_order_of_their_keys() {
    fn ascending(table: Table, key: impl Fn(&[Vec<u8>]) -> Vec<Vec<u8>>, strictly: bool) {
        let rows = rows(table, 3000);
        assert!(rows.len() >= 3000, "{table:?}");
        for pair in rows.windows(2) {
            let (a, b) = (key(&pair[0]), key(&pair[1]));
            assert!(
                if strictly { a < b } else { a <= b },
                "{table:?}: {a:?} then {b:?}"
            );
        }
    }
    // Columns as `Table::copy_statement` lists them; bigints are
    // big-endian and positive, so their bytes order as their values.
    ascending(Table::UsageRecords, |r| vec![r[1].clone()], true);
    ascending(
        Table::UsageRecords,
        |r| vec![r[4].clone(), r[5].clone()],
        false,
    );
    ascending(Table::Balances, |r| r[1..4].to_vec(), true);
    ascending(Table::SubscriptionServices, |r| r[1..3].to_vec(), true);
    ascending(Table::Transactions, |r| vec![r[1].clone()], true);
    ascending(Table::Transactions, |r| vec![r[4].clone()], false);
}
