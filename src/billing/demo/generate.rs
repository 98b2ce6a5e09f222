//! The demo ledger's rows, generated in the process and encoded in
//! PostgreSQL's binary COPY format: the account number `n` drives every
//! choice, so the same spec always yields the same ledger, and each table's
//! rows of a range of accounts can be produced on their own (one COPY per
//! table and range). See [`crate::billing::demo`] for what the ledger holds.

use chrono::NaiveDate;

pub use super::copy_format::CopyBuffer;
use super::store::DemoLedgerSpec;

/// Usage records an account has at most (voice and data together): the
/// spacing of the usage and transaction ids reserved per account.
pub const RECORDS_PER_ACCOUNT: i64 = 12;

/// Time zones the accounts cycle through.
const TIME_ZONES: [&str; 6] = [
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Tokyo",
];

/// Minimum commitments the committed subscriptions cycle through, in minor
/// units: some are met by the usage, some are not.
const COMMITMENTS: [i64; 3] = [2500, 6000, 15_000];

/// A recurring service as the demo subscribes it.
struct DemoService {
    id: &'static str,
    /// Free units per period.
    allowance: i64,
    /// First-pass price (the entry tier's).
    entry_price: i64,
    /// Period usage totals fall in `0..spread`, across every tier.
    spread: u64,
    salt: u64,
    /// Usage records the period's total is split into.
    records: i64,
}

const VOICE: DemoService = DemoService {
    id: "VOICE_MIN",
    allowance: 100,
    entry_price: 5,
    spread: 7000,
    salt: 0,
    records: 7,
};

const DATA: DemoService = DemoService {
    id: "DATA_MB",
    allowance: 500,
    entry_price: 2,
    spread: 4000,
    salt: 100_003,
    records: 5,
};

/// The first id of each identity range reserved for a load (see
/// [`super::store::reserve_ids`]): account `n` (from 1) has bill unit
/// `bill_unit + n - 1`, and usage records and USAGE transactions from
/// `usage + (n - 1) * RECORDS_PER_ACCOUNT` and `transaction + ...` upward.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdBases {
    /// First bill unit id.
    pub bill_unit: i64,
    /// First usage record id.
    pub usage: i64,
    /// First transaction id.
    pub transaction: i64,
}

/// A ledger table the generator fills, in load order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `ledger.accounts`.
    Accounts,
    /// `ledger.subscriptions`.
    Subscriptions,
    /// `ledger.subscription_services`.
    SubscriptionServices,
    /// `ledger.bill_units`.
    BillUnits,
    /// `ledger.usage_records`.
    UsageRecords,
    /// `ledger.balances`.
    Balances,
    /// `ledger.transactions`.
    Transactions,
}

impl Table {
    /// Every table, parents before children (the order of a load that
    /// copies them one after the other), and the largest table with the
    /// most indexes (transactions, whose only parent is accounts) as early
    /// as that allows: a load builds a table's dropped indexes as soon as
    /// it is copied, while the other tables are copied.
    pub const ALL: [Table; 7] = [
        Table::Accounts,
        Table::Transactions,
        Table::Subscriptions,
        Table::SubscriptionServices,
        Table::BillUnits,
        Table::UsageRecords,
        Table::Balances,
    ];

    /// The table's name in schema `ledger`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Accounts => "accounts",
            Table::Subscriptions => "subscriptions",
            Table::SubscriptionServices => "subscription_services",
            Table::BillUnits => "bill_units",
            Table::UsageRecords => "usage_records",
            Table::Balances => "balances",
            Table::Transactions => "transactions",
        }
    }

    /// Whether a foreign key refers to the table (only the ledger's leaves,
    /// usage records, balances and transactions, have none): a leaf can be
    /// truncated on its own, and so copied with `FREEZE` (see
    /// [`super::bulk::copy_tables`]).
    pub fn is_referenced(self) -> bool {
        !matches!(
            self,
            Table::UsageRecords | Table::Balances | Table::Transactions
        )
    }

    /// The COPY statement whose columns [`encode`] writes, in order.
    pub fn copy_statement(self) -> &'static str {
        match self {
            Table::Accounts => {
                "COPY ledger.accounts (client_id, account_id, status, anniversary_day, currency, \
                 time_zone) FROM STDIN BINARY"
            }
            Table::Subscriptions => {
                "COPY ledger.subscriptions (client_id, subscription_id, account_id, plan_code, \
                 status, minimum_commitment_minor, start_date) FROM STDIN BINARY"
            }
            Table::SubscriptionServices => {
                "COPY ledger.subscription_services (client_id, subscription_id, service_id, \
                 allowance_units) FROM STDIN BINARY"
            }
            Table::BillUnits => {
                "COPY ledger.bill_units (client_id, bill_unit_id, subscription_id, account_id, \
                 period_start, period_end) FROM STDIN BINARY"
            }
            Table::UsageRecords => {
                "COPY ledger.usage_records (client_id, usage_id, account_id, subscription_id, \
                 bill_unit_id, service_id, usage_date, quantity, allowance_used, first_pass_tier, \
                 first_pass_amount_minor) FROM STDIN BINARY"
            }
            Table::Balances => {
                "COPY ledger.balances (client_id, bill_unit_id, service_id, balance_type, granted, \
                 balance) FROM STDIN BINARY"
            }
            Table::Transactions => {
                "COPY ledger.transactions (client_id, transaction_id, account_id, subscription_id, \
                 bill_unit_id, service_id, transaction_type, quantity, amount_minor, currency, \
                 idempotency_key, sync_status, sync_attempts, last_sync_time, core_reference, \
                 create_time) FROM STDIN BINARY"
            }
        }
    }
}

/// A well-mixed hash of the account number (splitmix64), for choices that
/// should not follow the account number's residues.
fn mix(n: u64, salt: u64) -> u64 {
    let mut z = n.wrapping_add(salt).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the generator decided for one account.
struct Account<'a> {
    n: i64,
    id: String,
    subscription: String,
    day: i16,
    /// 0 none; 1 SUSPENDED; 2 subscription cancelled (no active one);
    /// 3 LEGACY_2019 plan (tier gap); 4 CAD (no rate schedule);
    /// 5 accumulators off by 7.
    fault: i64,
    currency: &'static str,
    period: (NaiveDate, NaiveDate),
    spec: &'a DemoLedgerSpec,
}

impl<'a> Account<'a> {
    /// Account `n`: anniversary day `n mod 31 + 1`; in one block of 31
    /// accounts (one of each day) in 20 every account has a fault, the kind
    /// cycling 1 to 5 from one such block to the next, so each kind is 1%
    /// of the accounts and every day has each; kinds 3-5 (rating faults)
    /// are kept off the days due on the business date.
    fn new(spec: &'a DemoLedgerSpec, n: i64) -> Self {
        let day = (n % 31 + 1) as i16;
        let block = n / 31;
        let raw = if block % 20 == 7 {
            (block / 20) % 5 + 1
        } else {
            0
        };
        let fault = if raw >= 3 && spec.due_days.contains(&day) {
            0
        } else {
            raw
        };
        let currency = if fault == 4 {
            "CAD"
        } else if n % 11 == 0 {
            "GBP"
        } else if n % 7 == 0 {
            "EUR"
        } else {
            "USD"
        };
        Self {
            n,
            id: format!("A{n:07}"),
            subscription: format!("S{n:07}"),
            day,
            fault,
            currency,
            period: spec.open_periods[(day - 1) as usize],
            spec,
        }
    }

    /// The account's services with their slot (0 data, 1 voice), in the
    /// order of their ids (`DATA_MB` before `VOICE_MIN`): each table's rows
    /// are generated in the order of its keys, so the index builds after a
    /// large load sort presorted input.
    fn services(&self) -> impl Iterator<Item = (usize, &'static DemoService)> {
        let data = self.n % 3 != 1;
        [(0, &DATA), (1, &VOICE)]
            .into_iter()
            .filter(move |(i, _)| *i == 1 || data)
    }

    fn has_bill_unit(&self) -> bool {
        self.fault != 2
    }

    fn bill_unit_id(&self, ids: &IdBases) -> i64 {
        ids.bill_unit + self.n - 1
    }

    /// The period's usage total of a service: none for one account in 17.
    fn total(&self, s: &DemoService) -> i64 {
        if self.n % 17 == 0 {
            0
        } else {
            (mix(self.n as u64, s.salt) % s.spread) as i64
        }
    }

    /// The usage records of a service: (index among the account's records,
    /// date, quantity, allowance used). The total is split into
    /// `s.records` parts spread over the period so far; the allowance
    /// covers the first records first. For one account in four the last
    /// record is of the day before the business date (pending sync).
    fn usage(&self, slot: usize, s: &DemoService) -> Vec<(i64, NaiveDate, i64, i64)> {
        let total = self.total(s);
        let (start, _) = self.period;
        let last_day = self.spec.business_date.pred_opt().unwrap_or(start);
        let days = (last_day - start).num_days().max(0) + 1;
        let first_index = if slot == 0 { 0 } else { DATA.records };
        let mut left = s.allowance;
        let mut out = Vec::new();
        for j in 0..s.records {
            let quantity = total * (j + 1) / s.records - total * j / s.records;
            if quantity == 0 {
                continue;
            }
            let offset = if j == s.records - 1 && self.n % 4 == 0 {
                days - 1
            } else {
                // Up to the day before the last, where the period allows.
                ((j * days) / s.records + self.n % 3).min((days - 2).max(0))
            };
            let used = quantity.min(left);
            left -= used;
            out.push((
                first_index + j,
                start + chrono::Days::new(offset as u64),
                quantity,
                used,
            ));
        }
        out
    }
}

/// Appends the rows of `table` for accounts `first..=last` of the spec to
/// `out`. Account `n`'s rows:
///
/// - the account: SUSPENDED for fault 1; currency USD, every 7th EUR,
///   every 11th GBP, CAD for fault 4; a time zone cycling over six;
/// - one subscription: plan STANDARD (LEGACY_2019 for fault 3), CANCELLED
///   for fault 2, a minimum commitment of 25.00, 60.00 or 150.00 on one in
///   four;
/// - a voice service (100 free minutes) on every subscription, data (500
///   free MB) on two in three;
/// - the open bill unit (none for a cancelled subscription);
/// - the period's usage: a total per service spread over every tier, split
///   into 7 voice and 5 data records (about ten per account);
/// - allowance and accumulator balances (the accumulator equal to the
///   usage, off by 7 for fault 5);
/// - a first-pass USAGE transaction per record with a charge: SYNCED,
///   except those of the day before the business date, PENDING.
pub fn encode(
    table: Table,
    spec: &DemoLedgerSpec,
    ids: &IdBases,
    client: &str,
    first: i64,
    last: i64,
    out: &mut CopyBuffer,
) {
    for n in first..=last {
        let a = Account::new(spec, n);
        match table {
            Table::Accounts => {
                let status = if a.fault == 1 { "SUSPENDED" } else { "ACTIVE" };
                out.row(6)
                    .text(client)
                    .text(&a.id)
                    .text(status)
                    .i16(a.day)
                    .text(a.currency)
                    .text(TIME_ZONES[(n % 6) as usize]);
            }
            Table::Subscriptions => {
                let plan = if a.fault == 3 {
                    "LEGACY_2019"
                } else {
                    "STANDARD"
                };
                let status = if a.fault == 2 { "CANCELLED" } else { "ACTIVE" };
                let pick = mix(n as u64, 7);
                let commitment = (pick % 4 == 0).then(|| COMMITMENTS[(pick / 4 % 3) as usize]);
                out.row(7)
                    .text(client)
                    .text(&a.subscription)
                    .text(&a.id)
                    .text(plan)
                    .text(status)
                    .opt_i64(commitment)
                    .date(a.period.0 - chrono::Days::new(365));
            }
            Table::SubscriptionServices => {
                for (_, s) in a.services() {
                    out.row(4)
                        .text(client)
                        .text(&a.subscription)
                        .text(s.id)
                        .i64(s.allowance);
                }
            }
            Table::BillUnits if a.has_bill_unit() => {
                out.row(6)
                    .text(client)
                    .i64(a.bill_unit_id(ids))
                    .text(&a.subscription)
                    .text(&a.id)
                    .date(a.period.0)
                    .date(a.period.1);
            }
            Table::UsageRecords if a.has_bill_unit() => {
                for (slot, s) in a.services() {
                    for (index, date, quantity, used) in a.usage(slot, s) {
                        out.row(11)
                            .text(client)
                            .i64(ids.usage + (n - 1) * RECORDS_PER_ACCOUNT + index)
                            .text(&a.id)
                            .text(&a.subscription)
                            .i64(a.bill_unit_id(ids))
                            .text(s.id)
                            .date(date)
                            .i64(quantity)
                            .i64(used)
                            .i32(1)
                            .i64((quantity - used) * s.entry_price);
                    }
                }
            }
            Table::Balances if a.has_bill_unit() => {
                for (_, s) in a.services() {
                    let total = a.total(s);
                    let off = if a.fault == 5 { 7 } else { 0 };
                    // In key order: ACCUMULATOR before ALLOWANCE.
                    out.row(6)
                        .text(client)
                        .i64(a.bill_unit_id(ids))
                        .text(s.id)
                        .text("ACCUMULATOR")
                        .i64(0)
                        .i64(total + off);
                    out.row(6)
                        .text(client)
                        .i64(a.bill_unit_id(ids))
                        .text(s.id)
                        .text("ALLOWANCE")
                        .i64(s.allowance)
                        .i64(s.allowance - total.min(s.allowance));
                }
            }
            Table::Transactions if a.has_bill_unit() => {
                let pending_from = spec.business_date.pred_opt().unwrap_or(spec.business_date);
                for (slot, s) in a.services() {
                    for (index, date, quantity, used) in a.usage(slot, s) {
                        let amount = (quantity - used) * s.entry_price;
                        if amount == 0 {
                            continue;
                        }
                        let usage_id = ids.usage + (n - 1) * RECORDS_PER_ACCOUNT + index;
                        let pending = date >= pending_from;
                        out.row(16)
                            .text(client)
                            .i64(ids.transaction + (n - 1) * RECORDS_PER_ACCOUNT + index)
                            .text(&a.id)
                            .text(&a.subscription)
                            .i64(a.bill_unit_id(ids))
                            .text(s.id)
                            .text("USAGE")
                            .i64(quantity)
                            .i64(amount)
                            .text(a.currency)
                            .text(&format!("USAGE:U{usage_id}"));
                        if pending {
                            out.text("PENDING").i32(0).null().null();
                        } else {
                            out.text("SYNCED")
                                .i32(1)
                                .midnight(date + chrono::Days::new(1))
                                .text(&format!("DEMO-U{usage_id}"));
                        }
                        out.midnight(date);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
