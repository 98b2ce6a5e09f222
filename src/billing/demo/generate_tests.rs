//! Unit tests of the demo ledger's generator.

use chrono::NaiveDate;

use super::{Account, CopyBuffer, DATA, RECORDS_PER_ACCOUNT, VOICE};
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
