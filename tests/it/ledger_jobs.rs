//! The four catalogue jobs on hand-made ledgers, called directly (plan, then
//! process), against a real PostgreSQL and the stand-in core Aria on a real
//! socket. Every amount asserted is computed by hand in the comments.

use std::collections::BTreeMap;

use allegro_scheduler::billing::core_aria::{serve_standin, CoreAriaClient};
use allegro_scheduler::db::Db;
use allegro_scheduler::proto::core_v1 as core;
use allegro_scheduler::scheduling::job::{
    ItemOutcome, JobContext, JobError, JobRegistry, JobType, WorkItem,
};
use chrono::NaiveDate;
use core::core_stand_in_control_client::CoreStandInControlClient;
use futures_util::TryStreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::support::*;

const ACME: &str = CLIENT;
const GLOBEX: &str = "globex";

/// A test's ledger database, its stand-in core Aria and the jobs.
struct Ledger {
    db: Db,
    pg: tokio_postgres::Client,
    jobs: JobRegistry,
    control: CoreStandInControlClient<Channel>,
    shutdown: CancellationToken,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

impl Ledger {
    async fn new() -> Self {
        let url = fresh_database().await;
        let db = Db::new(&url, 4).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_standin(db.clone(), listener, true, shutdown.clone()));
        let endpoint = format!("http://{addr}");
        let jobs = allegro_scheduler::billing::catalogue_registry(
            CoreAriaClient::lazy(&endpoint).unwrap(),
        );
        let control = CoreStandInControlClient::connect(endpoint).await.unwrap();
        let (pg, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        Self {
            db,
            pg,
            jobs,
            control,
            shutdown,
        }
    }

    fn job(&self, name: &str) -> std::sync::Arc<dyn JobType> {
        self.jobs.get(name).unwrap()
    }

    fn ctx(&self, client: &str, date: NaiveDate) -> JobContext {
        JobContext {
            client_id: client.into(),
            business_date: date,
            db: self.db.clone(),
        }
    }

    /// The job's work items for the date, numbered as the engine would.
    async fn plan(&self, job: &str, client: &str, date: NaiveDate) -> Vec<WorkItem> {
        let chunks: Vec<_> = self
            .job(job)
            .plan(&self.ctx(client, date))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        chunks
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, p)| WorkItem {
                seq: i as i32 + 1,
                account_id: p.account_id,
                payload: p.payload,
            })
            .collect()
    }

    async fn process(
        &self,
        job: &str,
        client: &str,
        date: NaiveDate,
        items: &[WorkItem],
    ) -> Result<Vec<ItemOutcome>, JobError> {
        let outcomes = self
            .job(job)
            .process(&self.ctx(client, date), items)
            .await?;
        assert_eq!(outcomes.len(), items.len(), "one outcome per item");
        Ok(outcomes)
    }

    /// Plans and processes every item in one batch: account → outcome.
    async fn run(&self, job: &str, client: &str, date: NaiveDate) -> BTreeMap<String, ItemOutcome> {
        let items = self.plan(job, client, date).await;
        let outcomes = self.process(job, client, date, &items).await.unwrap();
        items
            .into_iter()
            .map(|i| i.account_id)
            .zip(outcomes)
            .collect()
    }

    async fn exec(&self, sql: &str) {
        self.pg
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    async fn i64s(&self, sql: &str) -> Vec<i64> {
        self.pg
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        self.pg
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn set_faults(&self, client: &str, unavailable: bool, reject: &[(&str, &str)]) {
        self.control
            .clone()
            .set_faults(core::SetFaultsRequest {
                client_id: client.into(),
                unavailable,
                reject_accounts: reject
                    .iter()
                    .map(|(a, c)| (a.to_string(), c.to_string()))
                    .collect(),
            })
            .await
            .unwrap();
    }

    async fn received(&self, client: &str) -> core::ListReceivedResponse {
        self.control
            .clone()
            .list_received(core::ListReceivedRequest {
                client_id: client.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Services and rate schedules of `client`, all in USD:
    /// - VOICE_MIN (commitment-eligible), STANDARD: 0 ≤ b < 1000 at 5,
    ///   1000 ≤ b < 5000 at 4, 5000 and up at 3;
    /// - VOICE_MIN, LEGACY: 0 ≤ b < 1000 at 5, then 1500 and up at 4 (a
    ///   gap from 1000 to 1500);
    /// - ROAMING_MIN (not commitment-eligible), STANDARD: 10 flat.
    async fn catalogue(&self, client: &str) {
        self.exec(&format!(
            "INSERT INTO ledger.services VALUES \
               ('{client}', 'VOICE_MIN', 'Voice', 'minute', true), \
               ('{client}', 'ROAMING_MIN', 'Roaming', 'minute', false); \
             INSERT INTO ledger.rate_schedules VALUES \
               ('{client}', 'STANDARD', 'VOICE_MIN', 'USD', ''), \
               ('{client}', 'LEGACY', 'VOICE_MIN', 'USD', ''), \
               ('{client}', 'STANDARD', 'ROAMING_MIN', 'USD', ''); \
             INSERT INTO ledger.rate_tiers VALUES \
               ('{client}', 'STANDARD', 'VOICE_MIN', 'USD', 1, 0, 1000, 5), \
               ('{client}', 'STANDARD', 'VOICE_MIN', 'USD', 2, 1000, 5000, 4), \
               ('{client}', 'STANDARD', 'VOICE_MIN', 'USD', 3, 5000, NULL, 3), \
               ('{client}', 'LEGACY', 'VOICE_MIN', 'USD', 1, 0, 1000, 5), \
               ('{client}', 'LEGACY', 'VOICE_MIN', 'USD', 2, 1500, NULL, 4), \
               ('{client}', 'STANDARD', 'ROAMING_MIN', 'USD', 1, 0, NULL, 10);"
        ))
        .await;
    }

    /// An account with one subscription (`S-<account>`) carrying VOICE_MIN
    /// with 100 free minutes, and its bill unit [start, end); the bill
    /// unit's id.
    #[allow(clippy::too_many_arguments)]
    async fn account(
        &self,
        client: &str,
        account: &str,
        day: i16,
        currency: &str,
        plan: &str,
        commitment: Option<i64>,
        start: NaiveDate,
        end: NaiveDate,
    ) -> i64 {
        let commitment = commitment.map_or("NULL".to_string(), |c| c.to_string());
        self.exec(&format!(
            "INSERT INTO ledger.accounts (client_id, account_id, status, anniversary_day, currency) \
               VALUES ('{client}', '{account}', 'ACTIVE', {day}, '{currency}'); \
             INSERT INTO ledger.subscriptions VALUES \
               ('{client}', 'S-{account}', '{account}', '{plan}', 'ACTIVE', {commitment}, '{start}'); \
             INSERT INTO ledger.subscription_services VALUES \
               ('{client}', 'S-{account}', 'VOICE_MIN', 100); \
             INSERT INTO ledger.bill_units (client_id, subscription_id, account_id, period_start, period_end) \
               VALUES ('{client}', 'S-{account}', '{account}', '{start}', '{end}');"
        ))
        .await;
        self.bill_unit(client, account, start).await.unwrap()
    }

    /// The id of the bill unit of `S-<account>` starting on `start`.
    async fn bill_unit(&self, client: &str, account: &str, start: NaiveDate) -> Option<i64> {
        self.i64s(&format!(
            "SELECT bill_unit_id FROM ledger.bill_units WHERE client_id = '{client}' \
             AND subscription_id = 'S-{account}' AND period_start = '{start}'"
        ))
        .await
        .first()
        .copied()
    }

    /// A first-pass usage record of VOICE_MIN.
    #[allow(clippy::too_many_arguments)]
    async fn usage(
        &self,
        client: &str,
        account: &str,
        bill_unit: i64,
        date: NaiveDate,
        quantity: i64,
        allowance_used: i64,
        first_pass: i64,
    ) {
        self.exec(&format!(
            "INSERT INTO ledger.usage_records (client_id, account_id, subscription_id, bill_unit_id, \
               service_id, usage_date, quantity, allowance_used, first_pass_tier, first_pass_amount_minor) \
             VALUES ('{client}', '{account}', 'S-{account}', {bill_unit}, 'VOICE_MIN', '{date}', \
               {quantity}, {allowance_used}, 1, {first_pass})"
        ))
        .await;
    }

    /// The VOICE_MIN accumulator of a bill unit.
    async fn accumulator(&self, client: &str, bill_unit: i64, balance: i64) {
        self.exec(&format!(
            "INSERT INTO ledger.balances (client_id, bill_unit_id, service_id, balance_type, granted, balance) \
             VALUES ('{client}', {bill_unit}, 'VOICE_MIN', 'ACCUMULATOR', 0, {balance})"
        ))
        .await;
    }

    /// A monetized transaction.
    #[allow(clippy::too_many_arguments)]
    async fn transaction(
        &self,
        client: &str,
        account: &str,
        bill_unit: i64,
        service: &str,
        kind: &str,
        amount: i64,
        key: &str,
        status: &str,
    ) {
        self.exec(&format!(
            "INSERT INTO ledger.transactions (client_id, account_id, subscription_id, bill_unit_id, \
               service_id, transaction_type, amount_minor, currency, idempotency_key, sync_status) \
             VALUES ('{client}', '{account}', 'S-{account}', {bill_unit}, '{service}', '{kind}', \
               {amount}, 'USD', '{key}', '{status}')"
        ))
        .await;
    }

    /// account → amount of its transactions of `kind`.
    async fn amounts(&self, client: &str, kind: &str) -> BTreeMap<String, Vec<i64>> {
        let rows = self
            .pg
            .query(
                "SELECT account_id, amount_minor FROM ledger.transactions \
                 WHERE client_id = $1 AND transaction_type = $2 ORDER BY account_id, transaction_id",
                &[&client, &kind],
            )
            .await
            .unwrap();
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in rows {
            out.entry(r.get(0)).or_default().push(r.get(1));
        }
        out
    }
}

fn code(outcome: &ItemOutcome) -> &str {
    match outcome {
        ItemOutcome::Processed => "PROCESSED",
        ItemOutcome::Error { code, .. } => code,
    }
}

fn codes(outcomes: &BTreeMap<String, ItemOutcome>) -> BTreeMap<&str, &str> {
    outcomes
        .iter()
        .map(|(a, o)| (a.as_str(), code(o)))
        .collect()
}

// ---------------------------------------------------------------------------
// BILLTIME_USAGE_RATING
// ---------------------------------------------------------------------------

/// Accounts with anniversary 15 and the period [15 Feb, 15 Mar 2027). Every
/// record's first pass priced (quantity - allowance used) at tier 1 (5).
async fn tiered_usage(l: &Ledger) {
    let (start, end) = (d(2027, 2, 15), d(2027, 3, 15));
    l.catalogue(ACME).await;
    let acct = |a: &'static str| l.account(ACME, a, 15, "USD", "STANDARD", None, start, end);

    // No usage: balance 0 selects tier 1; nothing to adjust.
    let bu = acct("T0-ZERO").await;
    l.accumulator(ACME, bu, 0).await;

    // 600 (100 from the allowance) + 399 = 999: tier 1, billable 899.
    // Re-rated 899 × 5 = 4495 = first pass 2500 + 1995: no adjustment.
    let bu = acct("T1-999").await;
    l.usage(ACME, "T1-999", bu, d(2027, 2, 20), 600, 100, 2500)
        .await;
    l.usage(ACME, "T1-999", bu, d(2027, 3, 1), 399, 0, 1995)
        .await;
    l.accumulator(ACME, bu, 999).await;

    // 600 + 400 = 1000, exactly on the bound: tier 2 (4). Billable 900.
    // Re-rated 900 × 4 = 3600; first pass 2500 + 2000 = 4500; adj -900.
    let bu = acct("T2-1000").await;
    l.usage(ACME, "T2-1000", bu, d(2027, 2, 20), 600, 100, 2500)
        .await;
    l.usage(ACME, "T2-1000", bu, d(2027, 3, 1), 400, 0, 2000)
        .await;
    l.accumulator(ACME, bu, 1000).await;

    // 4999: tier 2. Billable 4899. 4899 × 4 = 19596; first pass 4899 × 5 =
    // 24495; adj -4899.
    let bu = acct("T3-4999").await;
    l.usage(ACME, "T3-4999", bu, d(2027, 2, 28), 4999, 100, 24495)
        .await;
    l.accumulator(ACME, bu, 4999).await;

    // 5000, exactly on the next bound: tier 3 (3). Billable 4900.
    // 4900 × 3 = 14700; first pass 24500; adj -9800.
    let bu = acct("T4-5000").await;
    l.usage(ACME, "T4-5000", bu, d(2027, 2, 28), 5000, 100, 24500)
        .await;
    l.accumulator(ACME, bu, 5000).await;

    // Usage all within the allowance: 80 of 100 free. Balance 80, tier 1,
    // billable 0, first pass 0: no adjustment.
    let bu = acct("T5-FREE").await;
    l.usage(ACME, "T5-FREE", bu, d(2027, 2, 28), 80, 80, 0)
        .await;
    l.accumulator(ACME, bu, 80).await;

    // Another anniversary: its period ends on the 20th, not planned.
    let bu = l
        .account(
            ACME,
            "T9-DAY20",
            20,
            "USD",
            "STANDARD",
            None,
            d(2027, 2, 20),
            d(2027, 3, 20),
        )
        .await;
    l.usage(ACME, "T9-DAY20", bu, d(2027, 3, 1), 3000, 100, 14500)
        .await;
    l.accumulator(ACME, bu, 3000).await;
}

#[tokio::test]
async fn usage_rating_selects_the_tier_by_accumulator_on_bounds_and_zero() {
    let l = Ledger::new().await;
    tiered_usage(&l).await;
    let date = d(2027, 3, 15);

    let items = l.plan("BILLTIME_USAGE_RATING", ACME, date).await;
    let accounts: Vec<&str> = items.iter().map(|i| i.account_id.as_str()).collect();
    assert_eq!(
        accounts,
        ["T0-ZERO", "T1-999", "T2-1000", "T3-4999", "T4-5000", "T5-FREE"]
    );
    assert_eq!(items[0].payload["period_start"], "2027-02-15");
    assert_eq!(items[0].payload["period_end"], "2027-03-15");

    let outcomes = l
        .process("BILLTIME_USAGE_RATING", ACME, date, &items)
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Processed));

    let expected: BTreeMap<String, Vec<i64>> = [
        ("T2-1000", vec![-900]),
        ("T3-4999", vec![-4899]),
        ("T4-5000", vec![-9800]),
    ]
    .into_iter()
    .map(|(a, v)| (a.to_string(), v))
    .collect();
    assert_eq!(l.amounts(ACME, "USAGE_ADJ").await, expected);

    // The second pass is on every record: tier and amount.
    let second_pass = l
        .strings(
            "SELECT account_id || ':' || second_pass_tier || ':' || second_pass_amount_minor \
             FROM ledger.usage_records WHERE client_id = 'acme' AND account_id LIKE 'T_-%' \
             AND account_id <> 'T9-DAY20' ORDER BY account_id, usage_id",
        )
        .await;
    assert_eq!(
        second_pass,
        [
            "T1-999:1:2500",
            "T1-999:1:1995",
            "T2-1000:2:2000",
            "T2-1000:2:1600",
            "T3-4999:2:19596",
            "T4-5000:3:14700",
            "T5-FREE:1:0",
        ]
    );
    // Adjustments are pending sync, keyed per bill unit and service.
    let keys = l
        .strings(
            "SELECT idempotency_key || ' ' || sync_status FROM ledger.transactions \
             WHERE transaction_type = 'USAGE_ADJ' ORDER BY account_id",
        )
        .await;
    let bu = l.bill_unit(ACME, "T2-1000", d(2027, 2, 15)).await.unwrap();
    assert_eq!(keys[0], format!("USAGE_ADJ:BU{bu}:VOICE_MIN PENDING"));
    // Rated, and the other anniversary untouched.
    assert_eq!(
        l.i64s(
            "SELECT count(*) FROM ledger.bill_units WHERE rate_time IS NOT NULL \
             AND period_end = '2027-03-15'"
        )
        .await,
        [6]
    );
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.usage_records WHERE second_pass_tier IS NULL")
            .await,
        [1]
    );

    // Retry of the same batch: nothing twice.
    let again = l
        .process("BILLTIME_USAGE_RATING", ACME, date, &items)
        .await
        .unwrap();
    assert!(again.iter().all(|o| *o == ItemOutcome::Processed));
    assert_eq!(l.amounts(ACME, "USAGE_ADJ").await, expected);
}

#[tokio::test]
async fn usage_rating_reports_broken_schedules_and_accumulators() {
    let l = Ledger::new().await;
    l.catalogue(ACME).await;
    let (start, end, date) = (d(2027, 2, 15), d(2027, 3, 15), d(2027, 3, 15));

    // No VOICE_MIN schedule in CAD.
    let bu = l
        .account(ACME, "R1-CAD", 15, "CAD", "STANDARD", None, start, end)
        .await;
    l.usage(ACME, "R1-CAD", bu, d(2027, 3, 1), 300, 100, 1000)
        .await;
    l.accumulator(ACME, bu, 300).await;
    // The LEGACY schedule has a gap, even though 300 falls in tier 1.
    let bu = l
        .account(ACME, "R2-GAP", 15, "USD", "LEGACY", None, start, end)
        .await;
    l.usage(ACME, "R2-GAP", bu, d(2027, 3, 1), 300, 100, 1000)
        .await;
    l.accumulator(ACME, bu, 300).await;
    // Accumulator 1007 but 1000 of usage.
    let bu = l
        .account(ACME, "R3-ACC", 15, "USD", "STANDARD", None, start, end)
        .await;
    l.usage(ACME, "R3-ACC", bu, d(2027, 3, 1), 1000, 100, 4500)
        .await;
    l.accumulator(ACME, bu, 1007).await;
    // Usage but no accumulator at all.
    let bu = l
        .account(ACME, "R4-NOACC", 15, "USD", "STANDARD", None, start, end)
        .await;
    l.usage(ACME, "R4-NOACC", bu, d(2027, 3, 1), 10, 10, 0)
        .await;

    let outcomes = l.run("BILLTIME_USAGE_RATING", ACME, date).await;
    assert_eq!(
        codes(&outcomes),
        BTreeMap::from([
            ("R1-CAD", "RATE_SCHEDULE_NOT_FOUND"),
            ("R2-GAP", "TIER_GAP"),
            ("R3-ACC", "ACCUMULATOR_MISMATCH"),
            ("R4-NOACC", "ACCUMULATOR_MISMATCH"),
        ])
    );
    let ItemOutcome::Error { reason, .. } = &outcomes["R2-GAP"] else {
        unreachable!()
    };
    assert!(reason.contains("from 1000 to 1500"), "{reason}");
    // Nothing written for errored items.
    assert!(l.amounts(ACME, "USAGE_ADJ").await.is_empty());
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.bill_units WHERE rate_time IS NOT NULL")
            .await,
        [0]
    );

    // Fix the accumulator; Retry re-runs the errored item and rates it:
    // 1000 → tier 2, billable 900 × 4 = 3600 - 4500 = -900.
    l.exec("UPDATE ledger.balances SET balance = 1000 WHERE balance = 1007")
        .await;
    let outcomes = l.run("BILLTIME_USAGE_RATING", ACME, date).await;
    assert_eq!(code(&outcomes["R3-ACC"]), "PROCESSED");
    assert_eq!(l.amounts(ACME, "USAGE_ADJ").await["R3-ACC"], [-900]);
}

// ---------------------------------------------------------------------------
// BILLING
// ---------------------------------------------------------------------------

/// The balances granted to a bill unit: "type:granted:balance".
async fn balances(l: &Ledger, client: &str, bill_unit: i64) -> Vec<String> {
    l.strings(&format!(
        "SELECT balance_type || ':' || granted || ':' || balance FROM ledger.balances \
         WHERE client_id = '{client}' AND bill_unit_id = {bill_unit} ORDER BY balance_type"
    ))
    .await
}

async fn periods(l: &Ledger, client: &str, account: &str) -> Vec<String> {
    l.strings(&format!(
        "SELECT period_start || '..' || period_end || ' ' || status FROM ledger.bill_units \
         WHERE client_id = '{client}' AND account_id = '{account}' ORDER BY period_start"
    ))
    .await
}

#[tokio::test]
async fn billing_anniversary_31_in_february_of_leap_and_common_years_returns_to_31_march() {
    let l = Ledger::new().await;
    l.catalogue(ACME).await;
    l.catalogue(GLOBEX).await;

    // Leap year 2028 (client acme).
    l.account(
        ACME,
        "L-31",
        31,
        "USD",
        "STANDARD",
        None,
        d(2028, 1, 31),
        d(2028, 2, 29),
    )
    .await;
    l.account(
        ACME,
        "L-28",
        28,
        "USD",
        "STANDARD",
        None,
        d(2028, 1, 28),
        d(2028, 2, 28),
    )
    .await;
    // 28 Feb 2028 is not the last day: only the 28th is due.
    let due: Vec<String> = l
        .plan("BILLING", ACME, d(2028, 2, 28))
        .await
        .into_iter()
        .map(|i| i.account_id)
        .collect();
    assert_eq!(due, ["L-28"]);
    // 29 Feb 2028 bills 29, 30 and 31.
    let items = l.plan("BILLING", ACME, d(2028, 2, 29)).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].account_id, "L-31");
    assert_eq!(items[0].payload["anniversary_day"], 31);
    assert_eq!(items[0].payload["billing_date"], "2028-02-29");
    let outcomes = l
        .process("BILLING", ACME, d(2028, 2, 29), &items)
        .await
        .unwrap();
    assert_eq!(outcomes, [ItemOutcome::Processed]);
    assert_eq!(
        periods(&l, ACME, "L-31").await,
        [
            "2028-01-31..2028-02-29 CLOSED",
            "2028-02-29..2028-03-31 OPEN"
        ]
    );
    // New cycle: 100 free minutes granted, accumulator reset to 0.
    let next = l.bill_unit(ACME, "L-31", d(2028, 2, 29)).await.unwrap();
    assert_eq!(
        balances(&l, ACME, next).await,
        ["ACCUMULATOR:0:0", "ALLOWANCE:100:100"]
    );
    // Back to the 31st in March.
    assert!(l.plan("BILLING", ACME, d(2028, 3, 30)).await.is_empty());
    let outcomes = l.run("BILLING", ACME, d(2028, 3, 31)).await;
    assert_eq!(codes(&outcomes), BTreeMap::from([("L-31", "PROCESSED")]));
    assert_eq!(
        periods(&l, ACME, "L-31").await,
        [
            "2028-01-31..2028-02-29 CLOSED",
            "2028-02-29..2028-03-31 CLOSED",
            "2028-03-31..2028-04-30 OPEN"
        ]
    );

    // Common year 2027 (client globex, which acme's runs never touch).
    l.account(
        GLOBEX,
        "C-31",
        31,
        "USD",
        "STANDARD",
        None,
        d(2027, 1, 31),
        d(2027, 2, 28),
    )
    .await;
    assert!(l.plan("BILLING", GLOBEX, d(2027, 2, 27)).await.is_empty());
    let outcomes = l.run("BILLING", GLOBEX, d(2027, 2, 28)).await;
    assert_eq!(codes(&outcomes), BTreeMap::from([("C-31", "PROCESSED")]));
    assert!(l.plan("BILLING", GLOBEX, d(2027, 3, 30)).await.is_empty());
    let outcomes = l.run("BILLING", GLOBEX, d(2027, 3, 31)).await;
    assert_eq!(codes(&outcomes), BTreeMap::from([("C-31", "PROCESSED")]));
    assert_eq!(
        periods(&l, GLOBEX, "C-31").await,
        [
            "2027-01-31..2027-02-28 CLOSED",
            "2027-02-28..2027-03-31 CLOSED",
            "2027-03-31..2027-04-30 OPEN"
        ]
    );
    // Nothing crossed clients.
    assert!(periods(&l, ACME, "C-31").await.is_empty());
    assert_eq!(periods(&l, ACME, "L-31").await.len(), 3);
}

/// Accounts with anniversary 15, commitment 50.00 (5000), billed on
/// 15 Mar 2027, their usage given as monetized transactions.
async fn commitments(l: &Ledger) {
    l.catalogue(ACME).await;
    let (start, end) = (d(2027, 2, 15), d(2027, 3, 15));
    let acct =
        |a: &'static str, c: Option<i64>| l.account(ACME, a, 15, "USD", "STANDARD", c, start, end);
    // 4000 + 1500 = 5500 ≥ 5000: met, no true-up.
    let bu = acct("M1-MET", Some(5000)).await;
    l.transaction(
        ACME,
        "M1-MET",
        bu,
        "VOICE_MIN",
        "USAGE",
        4000,
        "m1a",
        "SYNCED",
    )
    .await;
    l.transaction(
        ACME,
        "M1-MET",
        bu,
        "VOICE_MIN",
        "USAGE",
        1500,
        "m1b",
        "PENDING",
    )
    .await;
    // Exactly 5000: met, no true-up.
    let bu = acct("M2-EXACT", Some(5000)).await;
    l.transaction(
        ACME,
        "M2-EXACT",
        bu,
        "VOICE_MIN",
        "USAGE",
        5000,
        "m2",
        "SYNCED",
    )
    .await;
    // 3000 - 600 (second pass) = 2400: true-up 5000 - 2400 = 2600.
    let bu = acct("M3-SHORT", Some(5000)).await;
    l.transaction(
        ACME,
        "M3-SHORT",
        bu,
        "VOICE_MIN",
        "USAGE",
        3000,
        "m3a",
        "SYNCED",
    )
    .await;
    l.transaction(
        ACME,
        "M3-SHORT",
        bu,
        "VOICE_MIN",
        "USAGE_ADJ",
        -600,
        "m3b",
        "PENDING",
    )
    .await;
    // 4000 eligible voice + 3000 roaming, which does not count: 5000 - 4000
    // = 1000.
    let bu = acct("M4-ROAM", Some(5000)).await;
    l.exec(
        "INSERT INTO ledger.subscription_services VALUES ('acme', 'S-M4-ROAM', 'ROAMING_MIN', 0)",
    )
    .await;
    l.transaction(
        ACME,
        "M4-ROAM",
        bu,
        "VOICE_MIN",
        "USAGE",
        4000,
        "m4a",
        "SYNCED",
    )
    .await;
    l.transaction(
        ACME,
        "M4-ROAM",
        bu,
        "ROAMING_MIN",
        "USAGE",
        3000,
        "m4b",
        "SYNCED",
    )
    .await;
    // No usage at all: the whole commitment, 5000.
    acct("M5-NONE", Some(5000)).await;
    // No commitment: nothing, whatever the usage.
    let bu = acct("M6-NOCOMMIT", None).await;
    l.transaction(
        ACME,
        "M6-NOCOMMIT",
        bu,
        "VOICE_MIN",
        "USAGE",
        10,
        "m6",
        "SYNCED",
    )
    .await;
}

#[tokio::test]
async fn billing_trues_up_unmet_commitments_once() {
    let l = Ledger::new().await;
    commitments(&l).await;
    let date = d(2027, 3, 15);
    let items = l.plan("BILLING", ACME, date).await;
    assert_eq!(items.len(), 6);
    let outcomes = l.process("BILLING", ACME, date, &items).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Processed));

    let expected: BTreeMap<String, Vec<i64>> = [
        ("M3-SHORT", vec![2600]),
        ("M4-ROAM", vec![1000]),
        ("M5-NONE", vec![5000]),
    ]
    .into_iter()
    .map(|(a, v)| (a.to_string(), v))
    .collect();
    assert_eq!(l.amounts(ACME, "TRUE_UP").await, expected);
    let bu = l.bill_unit(ACME, "M3-SHORT", d(2027, 2, 15)).await.unwrap();
    let detail = l
        .strings(&format!(
            "SELECT idempotency_key || ' ' || sync_status || ' ' || detail::text \
             FROM ledger.transactions WHERE transaction_type = 'TRUE_UP' AND bill_unit_id = {bu}"
        ))
        .await;
    assert_eq!(
        detail,
        [format!(
            "TRUE_UP:BU{bu} PENDING {{\"period_end\": \"2027-03-15\", \"period_start\": \
             \"2027-02-15\", \"eligible_usage_minor\": 2400, \"minimum_commitment_minor\": 5000}}"
        )]
    );
    let counts = "SELECT (SELECT count(*) FROM ledger.bill_units) * 1000000 \
                  + (SELECT count(*) FROM ledger.balances) * 1000 \
                  + (SELECT count(*) FROM ledger.transactions)";
    // 6 + 6 bill units; 6 × 2 balances + 1 roaming pair; 8 usage
    // transactions + 3 true-ups.
    assert_eq!(l.i64s(counts).await, [12_014_011]);

    // A retry of the batch (lease expiry, or Retry) creates nothing twice.
    let again = l.process("BILLING", ACME, date, &items).await.unwrap();
    assert!(again.iter().all(|o| *o == ItemOutcome::Processed));
    assert_eq!(l.amounts(ACME, "TRUE_UP").await, expected);
    assert_eq!(l.i64s(counts).await, [12_014_011]);
}

/// The planned item of `account`.
fn item_of<'a>(items: &'a [WorkItem], account: &str) -> &'a WorkItem {
    items
        .iter()
        .find(|i| i.account_id == account)
        .unwrap_or_else(|| panic!("no item of {account}"))
}

#[tokio::test]
async fn every_jobs_payload_carries_what_its_call_needs() {
    let l = Ledger::new().await;
    commitments(&l).await;
    let date = d(2027, 3, 15);
    let bu = l.bill_unit(ACME, "M3-SHORT", d(2027, 2, 15)).await.unwrap();
    let m3b = l
        .i64s("SELECT transaction_id FROM ledger.transactions WHERE idempotency_key = 'm3b'")
        .await[0];

    // BILLTIME_USAGE_RATING: the bill unit, whose it is, and what prices it.
    let items = l.plan("BILLTIME_USAGE_RATING", ACME, date).await;
    assert_eq!(
        item_of(&items, "M4-ROAM").payload,
        serde_json::json!({
            "account_id": "M4-ROAM",
            "subscription_id": "S-M4-ROAM",
            "bill_unit_id": l.bill_unit(ACME, "M4-ROAM", d(2027, 2, 15)).await.unwrap(),
            "period_start": "2027-02-15",
            "period_end": "2027-03-15",
            "currency": "USD",
            "plan_code": "STANDARD",
            "services": ["ROAMING_MIN", "VOICE_MIN"],
        })
    );

    // SYNC_TRANSACTION: the account's pending usage transactions, by id.
    let items = l.plan("SYNC_TRANSACTION", ACME, date).await;
    assert_eq!(
        item_of(&items, "M3-SHORT").payload,
        serde_json::json!({
            "account_id": "M3-SHORT",
            "currency": "USD",
            "transaction_ids": [m3b],
            "through_transaction_id": m3b,
            "transactions": 1,
            "amount_minor": -600,
        })
    );

    // BILLING: the account, and each active subscription's ending bill unit
    // and commitment.
    let items = l.plan("BILLING", ACME, date).await;
    assert_eq!(
        item_of(&items, "M3-SHORT").payload,
        serde_json::json!({
            "account_id": "M3-SHORT",
            "anniversary_day": 15,
            "billing_date": "2027-03-15",
            "currency": "USD",
            "subscriptions": [{
                "subscription_id": "S-M3-SHORT",
                "bill_unit_id": bu,
                "period_start": "2027-02-15",
                "period_end": "2027-03-15",
                "minimum_commitment_minor": 5000,
            }],
        })
    );
    assert_eq!(
        item_of(&items, "M6-NOCOMMIT").payload["subscriptions"][0]["minimum_commitment_minor"],
        serde_json::Value::Null
    );
    // Processing reads the ledger, not the payload: items planned with the
    // earlier, shorter payload are billed the same.
    let legacy: Vec<WorkItem> = items
        .iter()
        .map(|i| WorkItem {
            payload: serde_json::json!({"anniversary_day": 15, "billing_date": "2027-03-15"}),
            ..i.clone()
        })
        .collect();
    let outcomes = l.process("BILLING", ACME, date, &legacy).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Processed));

    // SYNC_BILLING_TRANSACTIONS: the TRUE_UP and everything its order says.
    let true_up = l
        .i64s(&format!(
            "SELECT transaction_id FROM ledger.transactions WHERE idempotency_key = 'TRUE_UP:BU{bu}'"
        ))
        .await[0];
    let items = l.plan("SYNC_BILLING_TRANSACTIONS", ACME, date).await;
    assert_eq!(
        item_of(&items, "M3-SHORT").payload,
        serde_json::json!({
            "transaction_id": true_up,
            "idempotency_key": format!("TRUE_UP:BU{bu}"),
            "account_id": "M3-SHORT",
            "subscription_id": "S-M3-SHORT",
            "bill_unit_id": bu,
            "amount_minor": 2600,
            "currency": "USD",
            "period_start": "2027-02-15",
            "period_end": "2027-03-15",
            "minimum_commitment_minor": 5000,
            "eligible_usage_minor": 2400,
        })
    );
}

#[tokio::test]
async fn billing_reports_accounts_it_cannot_bill() {
    let l = Ledger::new().await;
    l.catalogue(ACME).await;
    let (start, end, date) = (d(2027, 2, 15), d(2027, 3, 15), d(2027, 3, 15));
    let acct = |a: &'static str| l.account(ACME, a, 15, "USD", "STANDARD", Some(5000), start, end);
    acct("E1-SUSPENDED").await;
    l.exec("UPDATE ledger.accounts SET status = 'SUSPENDED' WHERE account_id = 'E1-SUSPENDED'")
        .await;
    acct("E2-CANCELLED").await;
    l.exec(
        "UPDATE ledger.subscriptions SET status = 'CANCELLED' WHERE account_id = 'E2-CANCELLED'",
    )
    .await;
    let bu = acct("E3-UNRATED").await;
    l.usage(ACME, "E3-UNRATED", bu, d(2027, 3, 1), 10, 10, 0)
        .await;
    acct("E4-CLOSED").await;
    l.exec("UPDATE ledger.accounts SET status = 'CLOSED' WHERE account_id = 'E4-CLOSED'")
        .await;
    acct("E5-NO-UNIT").await;
    l.exec("DELETE FROM ledger.bill_units WHERE account_id = 'E5-NO-UNIT'")
        .await;

    let outcomes = l.run("BILLING", ACME, date).await;
    assert_eq!(
        codes(&outcomes),
        BTreeMap::from([
            ("E1-SUSPENDED", "ACCOUNT_INACTIVE"),
            ("E2-CANCELLED", "NO_ACTIVE_SUBSCRIPTION"),
            ("E3-UNRATED", "USAGE_NOT_RATED"),
            ("E5-NO-UNIT", "BILL_UNIT_NOT_FOUND"),
        ])
    );
    assert!(l.amounts(ACME, "TRUE_UP").await.is_empty());
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.bill_units WHERE status = 'CLOSED'")
            .await,
        [0]
    );
}

// ---------------------------------------------------------------------------
// SYNC_TRANSACTION
// ---------------------------------------------------------------------------

async fn pending_usage(l: &Ledger) {
    l.catalogue(ACME).await;
    let (start, end) = (d(2027, 2, 15), d(2027, 3, 15));
    for (account, txns) in [
        (
            "F1",
            vec![
                ("f1a", "USAGE", 1200, "PENDING"),
                ("f1b", "USAGE_ADJ", -300, "PENDING"),
            ],
        ),
        ("F2", vec![("f2a", "USAGE", 700, "ERROR")]),
        ("F3", vec![("f3a", "USAGE", 900, "SYNCED")]),
    ] {
        let bu = l
            .account(ACME, account, 15, "USD", "STANDARD", None, start, end)
            .await;
        for (key, kind, amount, status) in txns {
            l.transaction(ACME, account, bu, "VOICE_MIN", kind, amount, key, status)
                .await;
        }
    }
    // A TRUE_UP is not SYNC_TRANSACTION's.
    let bu = l.bill_unit(ACME, "F1", start).await.unwrap();
    l.transaction(ACME, "F1", bu, "VOICE_MIN", "TRUE_UP", 50, "f1t", "PENDING")
        .await;
}

async fn sync_state(l: &Ledger) -> Vec<String> {
    l.strings(
        "SELECT idempotency_key || ' ' || sync_status || ' ' || COALESCE(sync_error_code, '-') \
         || ' ' || sync_attempts FROM ledger.transactions \
         WHERE transaction_type <> 'TRUE_UP' ORDER BY idempotency_key",
    )
    .await
}

#[tokio::test]
async fn sync_transaction_retry_after_core_unavailable_sends_each_key_once() {
    let l = Ledger::new().await;
    pending_usage(&l).await;
    let date = d(2027, 3, 15);
    let items = l.plan("SYNC_TRANSACTION", ACME, date).await;
    let accounts: Vec<&str> = items.iter().map(|i| i.account_id.as_str()).collect();
    assert_eq!(accounts, ["F1", "F2"]);
    assert_eq!(items[0].payload["currency"], "USD");
    assert_eq!(items[0].payload["transactions"], 2);
    assert_eq!(items[0].payload["amount_minor"], 900);

    // Core down: the batch fails as a whole, the attempt is recorded.
    l.set_faults(ACME, true, &[]).await;
    let err = l
        .process("SYNC_TRANSACTION", ACME, date, &items)
        .await
        .unwrap_err();
    assert_eq!(err.code, "SYNC_ENDPOINT_UNAVAILABLE");
    assert_eq!(
        sync_state(&l).await,
        [
            "f1a ERROR SYNC_ENDPOINT_UNAVAILABLE 1",
            "f1b ERROR SYNC_ENDPOINT_UNAVAILABLE 1",
            "f2a ERROR SYNC_ENDPOINT_UNAVAILABLE 1",
            "f3a SYNCED - 0",
        ]
    );
    assert!(l.received(ACME).await.usage_transactions.is_empty());

    // Core back: the engine retries the same batch.
    l.set_faults(ACME, false, &[]).await;
    let outcomes = l
        .process("SYNC_TRANSACTION", ACME, date, &items)
        .await
        .unwrap();
    assert_eq!(outcomes, [ItemOutcome::Processed, ItemOutcome::Processed]);
    assert_eq!(
        sync_state(&l).await,
        [
            "f1a SYNCED - 2",
            "f1b SYNCED - 2",
            "f2a SYNCED - 2",
            "f3a SYNCED - 0"
        ]
    );
    let received = l.received(ACME).await.usage_transactions;
    let keys: Vec<(&str, i64, i32)> = received
        .iter()
        .map(|t| (t.idempotency_key.as_str(), t.amount_minor, t.receive_count))
        .collect();
    assert_eq!(keys, [("f1a", 1200, 1), ("f1b", -300, 1), ("f2a", 700, 1)]);
    let original = l
        .strings("SELECT core_reference FROM ledger.transactions WHERE idempotency_key = 'f1a'")
        .await;

    // The answer was lost (the worker crashed before recording it): the
    // batch runs again and core Aria replays its original results.
    l.exec("UPDATE ledger.transactions SET sync_status = 'PENDING' WHERE account_id = 'F1'")
        .await;
    let outcomes = l
        .process("SYNC_TRANSACTION", ACME, date, &items)
        .await
        .unwrap();
    assert_eq!(outcomes, [ItemOutcome::Processed, ItemOutcome::Processed]);
    let received = l.received(ACME).await.usage_transactions;
    assert_eq!(received.len(), 3, "exactly one per idempotency key");
    assert_eq!(received[0].receive_count, 2);
    assert_eq!(received[2].receive_count, 1, "F2's was not resent");
    assert_eq!(
        l.strings("SELECT core_reference FROM ledger.transactions WHERE idempotency_key = 'f1a'")
            .await,
        original
    );
    // Nothing left to plan.
    assert!(l.plan("SYNC_TRANSACTION", ACME, date).await.is_empty());
}

#[tokio::test]
async fn sync_transaction_passes_core_rejection_codes_through() {
    let l = Ledger::new().await;
    pending_usage(&l).await;
    let date = d(2027, 3, 15);
    l.set_faults(ACME, false, &[("F2", "ACCOUNT_NOT_FOUND")])
        .await;
    let outcomes = l.run("SYNC_TRANSACTION", ACME, date).await;
    assert_eq!(
        codes(&outcomes),
        BTreeMap::from([("F1", "PROCESSED"), ("F2", "ACCOUNT_NOT_FOUND")])
    );
    let ItemOutcome::Error { reason, .. } = &outcomes["F2"] else {
        unreachable!()
    };
    assert!(
        reason.contains("1 of 1") && reason.contains("f2a"),
        "{reason}"
    );
    assert_eq!(
        sync_state(&l).await,
        [
            "f1a SYNCED - 1",
            "f1b SYNCED - 1",
            "f2a ERROR ACCOUNT_NOT_FOUND 1",
            "f3a SYNCED - 0"
        ]
    );
    let received = l.received(ACME).await;
    assert_eq!(received.usage_transactions.len(), 2);
    assert_eq!(received.rejections.len(), 1);
    assert_eq!(received.rejections[0].error_code, "ACCOUNT_NOT_FOUND");

    // Resolved in core: the errored transaction is planned again and goes.
    l.set_faults(ACME, false, &[]).await;
    let outcomes = l.run("SYNC_TRANSACTION", ACME, date).await;
    assert_eq!(codes(&outcomes), BTreeMap::from([("F2", "PROCESSED")]));
    assert_eq!(l.received(ACME).await.usage_transactions.len(), 3);

    // Keys core Aria accepted stay accepted: a replay for an account it now
    // rejects still gets the original result.
    l.set_faults(ACME, false, &[("F1", "ACCOUNT_NOT_FOUND")])
        .await;
    l.exec("UPDATE ledger.transactions SET sync_status = 'PENDING' WHERE account_id = 'F1'")
        .await;
    let outcomes = l.run("SYNC_TRANSACTION", ACME, date).await;
    assert_eq!(codes(&outcomes), BTreeMap::from([("F1", "PROCESSED")]));
    let received = l.received(ACME).await;
    assert_eq!(received.usage_transactions.len(), 3);
    assert_eq!(received.rejections.len(), 1);
}

#[tokio::test]
async fn unreachable_core_is_sync_endpoint_unavailable() {
    let l = Ledger::new().await;
    pending_usage(&l).await;
    // Nothing listens on the port of a listener just dropped.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let jobs = allegro_scheduler::billing::catalogue_registry(
        CoreAriaClient::lazy(&format!("http://127.0.0.1:{port}")).unwrap(),
    );
    let date = d(2027, 3, 15);
    let items = l.plan("SYNC_TRANSACTION", ACME, date).await;
    let err = jobs
        .get("SYNC_TRANSACTION")
        .unwrap()
        .process(&l.ctx(ACME, date), &items)
        .await
        .unwrap_err();
    assert_eq!(err.code, "SYNC_ENDPOINT_UNAVAILABLE");
}

// ---------------------------------------------------------------------------
// SYNC_BILLING_TRANSACTIONS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn true_up_sync_after_failure_creates_nothing_twice() {
    let l = Ledger::new().await;
    commitments(&l).await;
    let date = d(2027, 3, 15);
    let billing = l.plan("BILLING", ACME, date).await;
    l.process("BILLING", ACME, date, &billing).await.unwrap();

    let items = l.plan("SYNC_BILLING_TRANSACTIONS", ACME, date).await;
    let planned: Vec<(&str, &serde_json::Value)> = items
        .iter()
        .map(|i| (i.account_id.as_str(), &i.payload["amount_minor"]))
        .collect();
    assert_eq!(
        planned,
        [
            ("M3-SHORT", &2600.into()),
            ("M4-ROAM", &1000.into()),
            ("M5-NONE", &5000.into())
        ]
    );

    // Core down: the batch fails; BILLING is unaffected and a retry of it
    // creates no second TRUE_UP.
    l.set_faults(ACME, true, &[]).await;
    let err = l
        .process("SYNC_BILLING_TRANSACTIONS", ACME, date, &items)
        .await
        .unwrap_err();
    assert_eq!(err.code, "SYNC_ENDPOINT_UNAVAILABLE");
    assert_eq!(
        l.i64s(
            "SELECT count(*) FROM ledger.transactions WHERE transaction_type = 'TRUE_UP' \
             AND sync_status = 'ERROR' AND sync_error_code = 'SYNC_ENDPOINT_UNAVAILABLE'"
        )
        .await,
        [3]
    );
    l.process("BILLING", ACME, date, &billing).await.unwrap();
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.transactions WHERE transaction_type = 'TRUE_UP'")
            .await,
        [3]
    );

    // Core back, one account rejected by core: its code passes through.
    l.set_faults(ACME, false, &[("M4-ROAM", "ACCOUNT_ON_HOLD")])
        .await;
    let outcomes = l
        .process("SYNC_BILLING_TRANSACTIONS", ACME, date, &items)
        .await
        .unwrap();
    assert_eq!(
        outcomes.iter().map(code).collect::<Vec<_>>(),
        ["PROCESSED", "ACCOUNT_ON_HOLD", "PROCESSED"]
    );

    // Resolved: Retry re-runs the errored item only.
    l.set_faults(ACME, false, &[]).await;
    let retry = l.plan("SYNC_BILLING_TRANSACTIONS", ACME, date).await;
    assert_eq!(retry.len(), 1);
    assert_eq!(
        l.process("SYNC_BILLING_TRANSACTIONS", ACME, date, &retry)
            .await
            .unwrap(),
        [ItemOutcome::Processed]
    );

    // A replay of the first batch with an answer lost: original orders.
    l.exec(
        "UPDATE ledger.transactions SET sync_status = 'PENDING' \
         WHERE transaction_type = 'TRUE_UP' AND account_id = 'M3-SHORT'",
    )
    .await;
    let before = l
        .strings("SELECT core_reference FROM ledger.transactions WHERE account_id = 'M3-SHORT' AND transaction_type = 'TRUE_UP'")
        .await;
    let outcomes = l
        .process("SYNC_BILLING_TRANSACTIONS", ACME, date, &items)
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Processed));
    assert_eq!(
        l.strings("SELECT core_reference FROM ledger.transactions WHERE account_id = 'M3-SHORT' AND transaction_type = 'TRUE_UP'")
            .await,
        before
    );

    // A replay for an account core Aria now rejects: still the original.
    l.set_faults(ACME, false, &[("M3-SHORT", "ACCOUNT_ON_HOLD")])
        .await;
    l.exec(
        "UPDATE ledger.transactions SET sync_status = 'PENDING' \
         WHERE transaction_type = 'TRUE_UP' AND account_id = 'M3-SHORT'",
    )
    .await;
    let outcomes = l
        .process("SYNC_BILLING_TRANSACTIONS", ACME, date, &items)
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Processed));

    let orders = l.received(ACME).await.true_up_orders;
    // Compare in account order.
    let mut got: Vec<(&str, i64, &str, &str, i32)> = orders
        .iter()
        .map(|o| {
            (
                o.account_id.as_str(),
                o.amount_minor,
                o.period_start.as_str(),
                o.period_end.as_str(),
                o.receive_count,
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("M3-SHORT", 2600, "2027-02-15", "2027-03-15", 3),
            ("M4-ROAM", 1000, "2027-02-15", "2027-03-15", 1),
            ("M5-NONE", 5000, "2027-02-15", "2027-03-15", 1),
        ],
        "exactly one order per idempotency key"
    );
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.transactions WHERE transaction_type = 'TRUE_UP'")
            .await,
        [3]
    );
    assert!(l
        .plan("SYNC_BILLING_TRANSACTIONS", ACME, date)
        .await
        .is_empty());
}

// ---------------------------------------------------------------------------
// Demo ledger
// ---------------------------------------------------------------------------

#[tokio::test]
async fn demo_ledger_gives_a_daily_run_real_work_and_real_errors() {
    let l = Ledger::new().await;
    // The last day of February 2027 bills anniversaries 28 to 31.
    let date = d(2027, 2, 28);
    let demo = allegro_scheduler::billing::demo::load_demo_ledger(&l.db, ACME, 4000, date)
        .await
        .unwrap();
    assert_eq!(demo.counts.accounts, 4000);
    assert_eq!(demo.due_days, [28, 29, 30, 31]);
    // Every reference holds, though the loader may skip the checks.
    let orphans = l
        .i64s(
            "SELECT (SELECT count(*) FROM ledger.subscriptions s WHERE NOT EXISTS \
                       (SELECT 1 FROM ledger.accounts a \
                        WHERE a.client_id = s.client_id AND a.account_id = s.account_id)) \
                  + (SELECT count(*) FROM ledger.subscription_services ss WHERE NOT EXISTS \
                       (SELECT 1 FROM ledger.subscriptions s WHERE s.client_id = ss.client_id \
                        AND s.subscription_id = ss.subscription_id) OR NOT EXISTS \
                       (SELECT 1 FROM ledger.services v WHERE v.client_id = ss.client_id \
                        AND v.service_id = ss.service_id)) \
                  + (SELECT count(*) FROM ledger.bill_units bu WHERE NOT EXISTS \
                       (SELECT 1 FROM ledger.subscriptions s WHERE s.client_id = bu.client_id \
                        AND s.subscription_id = bu.subscription_id \
                        AND s.account_id = bu.account_id)) \
                  + (SELECT count(*) FROM ledger.usage_records ur WHERE NOT EXISTS \
                       (SELECT 1 FROM ledger.bill_units bu WHERE bu.client_id = ur.client_id \
                        AND bu.bill_unit_id = ur.bill_unit_id \
                        AND bu.subscription_id = ur.subscription_id) OR NOT EXISTS \
                       (SELECT 1 FROM ledger.subscription_services ss \
                        WHERE ss.client_id = ur.client_id \
                        AND ss.subscription_id = ur.subscription_id \
                        AND ss.service_id = ur.service_id)) \
                  + (SELECT count(*) FROM ledger.balances b WHERE NOT EXISTS \
                       (SELECT 1 FROM ledger.bill_units bu WHERE bu.client_id = b.client_id \
                        AND bu.bill_unit_id = b.bill_unit_id)) \
                  + (SELECT count(*) FROM ledger.transactions t WHERE NOT EXISTS \
                       (SELECT 1 FROM ledger.accounts a \
                        WHERE a.client_id = t.client_id AND a.account_id = t.account_id)) \
                  + (SELECT count(*) FROM ledger.rate_tiers rt WHERE NOT EXISTS \
                       (SELECT 1 FROM ledger.rate_schedules rs WHERE rs.client_id = rt.client_id \
                        AND rs.plan_code = rt.plan_code AND rs.service_id = rt.service_id \
                        AND rs.currency = rt.currency))",
        )
        .await;
    assert_eq!(orphans, [0], "rows whose reference is missing");
    // Every day 1 to 31 has accounts.
    assert_eq!(
        l.i64s("SELECT count(DISTINCT anniversary_day) FROM ledger.accounts")
            .await,
        [31]
    );

    // Rating: all due bill units rated, some adjusted.
    let rating = l.run("BILLTIME_USAGE_RATING", ACME, date).await;
    assert!(rating.len() > 400, "{}", rating.len());
    assert!(rating.values().all(|o| *o == ItemOutcome::Processed));
    assert!(!l.amounts(ACME, "USAGE_ADJ").await.is_empty());

    // Sync: the last day's usage and the adjustments.
    let sync = l.run("SYNC_TRANSACTION", ACME, date).await;
    assert!(sync.len() > 1000, "{}", sync.len());
    assert!(sync.values().all(|o| *o == ItemOutcome::Processed));

    // Billing: real work and the broken accounts in the drill-down.
    let billing = l.run("BILLING", ACME, date).await;
    let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
    for o in billing.values() {
        *by_code.entry(code(o)).or_default() += 1;
    }
    assert_eq!(
        by_code.keys().copied().collect::<Vec<_>>(),
        ["ACCOUNT_INACTIVE", "NO_ACTIVE_SUBSCRIPTION", "PROCESSED"],
        "{by_code:?}"
    );
    assert!(by_code["PROCESSED"] > 400);
    let true_ups = l.amounts(ACME, "TRUE_UP").await.len();
    assert!(true_ups > 10, "{true_ups}");
    let sync = l.run("SYNC_BILLING_TRANSACTIONS", ACME, date).await;
    assert_eq!(sync.len(), true_ups);
    assert!(sync.values().all(|o| *o == ItemOutcome::Processed));

    // The next day's rating meets the broken schedules and accumulators.
    let next = l.run("BILLTIME_USAGE_RATING", ACME, d(2027, 3, 1)).await;
    let errors: std::collections::BTreeSet<&str> = next
        .values()
        .map(code)
        .filter(|c| *c != "PROCESSED")
        .collect();
    assert_eq!(
        errors.into_iter().collect::<Vec<_>>(),
        [
            "ACCUMULATOR_MISMATCH",
            "RATE_SCHEDULE_NOT_FOUND",
            "TIER_GAP"
        ]
    );
}

/// A load large enough to drop the ledger's indexes and keys that no
/// foreign key needs builds every one of them again (each table's while the
/// next tables are copied), valid and as defined by the migrations.
#[tokio::test]
async fn a_large_demo_load_builds_every_dropped_index_again() {
    let l = Ledger::new().await;
    let before = l.strings(LEDGER_INDEXES).await;
    let keys = l.strings(LEDGER_CONSTRAINTS).await;
    let rebuildable = l.i64s(REBUILDABLE_INDEXES).await[0];
    let date = d(2027, 2, 28);
    let demo = allegro_scheduler::billing::demo::load_demo_ledger(&l.db, ACME, 50_000, date)
        .await
        .unwrap();
    assert_eq!(demo.counts.accounts, 50_000);
    // Secondary indexes and the keys of transactions, usage records,
    // balances and the period keys of bill units.
    assert_eq!(rebuildable, 13);
    assert_eq!(demo.indexes_rebuilt as i64, rebuildable);
    assert_eq!(l.strings(LEDGER_INDEXES).await, before);
    assert_eq!(l.strings(LEDGER_CONSTRAINTS).await, keys);
    assert_eq!(l.i64s(RECORDED_DROPS).await[0], 0);
    let invalid = l
        .i64s(
            "SELECT count(*) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'ledger' AND NOT (i.indisvalid AND i.indisready)",
        )
        .await[0];
    assert_eq!(invalid, 0);
    // The rows are all there: every account's subscription, every usage
    // record's transaction where it was charged.
    let per_table = l
        .i64s(
            "SELECT count(*) FROM ledger.accounts WHERE client_id = 'acme' \
             UNION ALL SELECT count(DISTINCT account_id) FROM ledger.subscriptions \
             WHERE client_id = 'acme'",
        )
        .await;
    assert_eq!(per_table, [50_000, 50_000]);
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.usage_records WHERE client_id = 'acme'")
            .await[0],
        demo.counts.usage_records
    );
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.transactions WHERE client_id = 'acme'")
            .await[0],
        demo.counts.transactions
    );
    // The leaf tables went in by COPY FREEZE: every page all-visible (as
    // the load's ANALYZE counted them), with no vacuum run.
    assert_eq!(l.i64s(LEAVES_NOT_ALL_VISIBLE).await[0], 0);
}

/// The ledger's leaf tables (no foreign key refers to them) with a page
/// not all-visible, or no page at all, as ANALYZE last counted them.
const LEAVES_NOT_ALL_VISIBLE: &str = "SELECT count(*) FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'ledger' AND c.relname IN ('transactions', 'usage_records', 'balances') \
       AND NOT (c.relpages > 0 AND c.relallvisible = c.relpages)";

/// A large load beside another client's ledger truncates nothing and drops
/// no index: the other client's rows stay, every one of them.
#[tokio::test]
async fn a_large_demo_load_beside_another_client_keeps_its_rows() {
    let l = Ledger::new().await;
    let date = d(2027, 2, 28);
    allegro_scheduler::billing::demo::load_demo_ledger(&l.db, "other", 200, date)
        .await
        .unwrap();
    const OTHERS: &str = "SELECT n FROM ( \
         SELECT 1 AS k, count(*) AS n FROM ledger.transactions WHERE client_id = 'other' \
         UNION ALL SELECT 2, count(*) FROM ledger.usage_records WHERE client_id = 'other' \
         UNION ALL SELECT 3, count(*) FROM ledger.balances WHERE client_id = 'other') c \
         ORDER BY k";
    let others = l.i64s(OTHERS).await;
    assert!(others.iter().all(|&rows| rows > 0), "{others:?}");

    let demo = allegro_scheduler::billing::demo::load_demo_ledger(&l.db, ACME, 50_000, date)
        .await
        .unwrap();
    assert_eq!(demo.counts.accounts, 50_000);
    assert_eq!(demo.indexes_rebuilt, 0);
    assert_eq!(l.i64s(OTHERS).await, others);
    assert_eq!(
        l.i64s("SELECT count(*) FROM ledger.transactions WHERE client_id = 'acme'")
            .await[0],
        demo.counts.transactions
    );
}

/// Every index of the ledger, with its definition.
const LEDGER_INDEXES: &str = "SELECT indexname || ': ' || indexdef FROM pg_indexes \
     WHERE schemaname = 'ledger' ORDER BY 1";

/// Every constraint of the ledger, with its definition.
const LEDGER_CONSTRAINTS: &str = "SELECT conrelid::regclass::text || ' ' || conname || ': ' \
     || pg_get_constraintdef(k.oid) FROM pg_constraint k \
     JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'ledger' ORDER BY 1";

/// The ledger indexes a large load drops and builds again: those on the
/// loaded tables that no foreign key refers to.
const REBUILDABLE_INDEXES: &str = "SELECT count(*) FROM pg_index i \
     JOIN pg_class c ON c.oid = i.indexrelid \
     JOIN pg_class t ON t.oid = i.indrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'ledger' AND t.relname NOT IN ('services', 'rate_schedules', 'rate_tiers', \
           'dropped_indexes') \
       AND NOT EXISTS (SELECT 1 FROM pg_constraint f \
                       WHERE f.contype = 'f' AND f.conindid = i.indexrelid)";

/// Drops recorded and not yet built again.
const RECORDED_DROPS: &str = "SELECT count(*) FROM ledger.dropped_indexes";

/// A load that died after dropping the ledger's indexes and keys (here: the
/// drop alone) leaves them recorded; the next load, even one too small to
/// drop anything itself, builds every one of them again, and the keys
/// refuse duplicates again.
#[tokio::test]
async fn a_load_builds_what_a_load_that_died_left_dropped() {
    let l = Ledger::new().await;
    let before = l.strings(LEDGER_INDEXES).await;
    let keys = l.strings(LEDGER_CONSTRAINTS).await;
    let dropped = allegro_scheduler::billing::demo::bulk::drop_rebuildable_indexes(l.db.url())
        .await
        .unwrap();
    assert_eq!(dropped.len(), 13);
    assert_eq!(l.i64s(RECORDED_DROPS).await[0], 13);
    assert_ne!(l.strings(LEDGER_INDEXES).await, before);
    assert_ne!(l.strings(LEDGER_CONSTRAINTS).await, keys);

    let demo = allegro_scheduler::billing::demo::load_demo_ledger(&l.db, ACME, 200, d(2027, 2, 28))
        .await
        .unwrap();
    assert_eq!(demo.indexes_rebuilt, 13);
    assert_eq!(l.strings(LEDGER_INDEXES).await, before);
    assert_eq!(l.strings(LEDGER_CONSTRAINTS).await, keys);
    assert_eq!(l.i64s(RECORDED_DROPS).await[0], 0);
    let duplicate =
        l.pg.batch_execute(
            "INSERT INTO ledger.transactions (client_id, account_id, transaction_type, \
                 amount_minor, currency, idempotency_key) \
             SELECT client_id, account_id, transaction_type, amount_minor, currency, \
                    idempotency_key FROM ledger.transactions WHERE client_id = 'acme' LIMIT 1",
        )
        .await;
    let message = format!("{:?}", duplicate.unwrap_err());
    assert!(
        message.contains("transactions_idempotency_key"),
        "{message}"
    );
}

/// How long loading the demo ledger takes: `ALLEGRO_DEMO_TIMING_ACCOUNTS`
/// accounts (default 100,000). Run it with
/// `bash scripts/test.sh --test it -- --ignored demo_ledger_load_timing --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn demo_ledger_load_timing() {
    init_tracing();
    let accounts: usize = std::env::var("ALLEGRO_DEMO_TIMING_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let l = Ledger::new().await;
    let started = std::time::Instant::now();
    let demo =
        allegro_scheduler::billing::demo::load_demo_ledger(&l.db, ACME, accounts, d(2027, 2, 28))
            .await
            .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "demo ledger: {accounts} accounts in {seconds:.1} s ({:.0} accounts/s); {:?}",
        accounts as f64 / seconds,
        demo.counts
    );
    assert_eq!(demo.counts.accounts as usize, accounts);
    for job in ["BILLTIME_USAGE_RATING", "SYNC_TRANSACTION", "BILLING"] {
        let started = std::time::Instant::now();
        let items = l.plan(job, ACME, d(2027, 2, 28)).await;
        println!(
            "{job}: {} items planned in {:.2} s",
            items.len(),
            started.elapsed().as_secs_f64()
        );
    }
}
