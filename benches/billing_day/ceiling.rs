//! The ceiling: each job's ledger changes for the business date as plain
//! set-based SQL (`ceiling.sql`), one statement per job and batch of
//! accounts, on a copy of the benchmark's ledger.

use std::time::{Duration, Instant};

use allegro_scheduler::billing::ledger::rules::anniversary_days_due_on;
use chrono::NaiveDate;

/// The statements of `ceiling.sql`, by job name, in schedule order.
pub fn statements() -> Vec<(String, String)> {
    include_str!("ceiling.sql")
        .split("-- job: ")
        .skip(1)
        .map(|section| {
            let (name, sql) = section.split_once('\n').expect("a job section");
            (
                name.trim().to_string(),
                sql.trim().trim_end_matches(';').to_string(),
            )
        })
        .collect()
}

/// One job's ceiling figures.
#[derive(Debug, Clone)]
pub struct CeilingRun {
    /// The job.
    pub job: String,
    /// Work items (as the job counts them).
    pub items: i64,
    /// Ledger and stand-in rows written.
    pub rows: i64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs every job's ceiling statement over batches of `batch` accounts,
/// the batches shared out over `dbs` (one connection each, as the service's
/// workers have), one job after the other.
pub async fn run(
    dbs: &[tokio_postgres::Client],
    client: &str,
    date: NaiveDate,
    accounts: usize,
    batch: usize,
) -> Vec<CeilingRun> {
    let due = anniversary_days_due_on(date);
    let days: Vec<i16> = due.iter().map(|d| d.day() as i16).collect();
    let next_ends: Vec<NaiveDate> = due.iter().map(|d| d.period_starting(date).end).collect();
    let ranges: Vec<(String, String)> = (1..=accounts)
        .step_by(batch.max(1))
        .map(|first| {
            let last = (first + batch).min(accounts + 1);
            (format!("A{first:07}"), format!("A{last:07}"))
        })
        .collect();
    let mut runs = Vec::new();
    for (job, sql) in statements() {
        let started = Instant::now();
        let lanes = dbs.iter().enumerate().map(|(lane, db)| {
            let (job, sql, ranges) = (&job, &sql, &ranges);
            let (days, next_ends) = (&days, &next_ends);
            async move {
                let statement = db.prepare(sql).await.expect("ceiling statement prepares");
                let (mut items, mut rows) = (0i64, 0i64);
                for (from, to) in ranges.iter().skip(lane).step_by(dbs.len()) {
                    let row = if job == "BILLING" {
                        db.query_one(&statement, &[&client, &date, from, to, days, next_ends])
                            .await
                    } else {
                        db.query_one(&statement, &[&client, &date, from, to]).await
                    }
                    .unwrap_or_else(|e| panic!("ceiling of {job}: {e}"));
                    items += row.get::<_, i64>(0);
                    rows += row.get::<_, i64>(1);
                }
                (items, rows)
            }
        });
        let totals = futures_util::future::join_all(lanes).await;
        runs.push(CeilingRun {
            job,
            items: totals.iter().map(|t| t.0).sum(),
            rows: totals.iter().map(|t| t.1).sum(),
            elapsed: started.elapsed(),
        });
    }
    runs
}

/// Aggregates of everything the four jobs write, to compare the service's
/// ledger with the ceiling's: the same changes give the same text.
pub async fn ledger_summary(db: &tokio_postgres::Client) -> Vec<String> {
    let queries = [
        "SELECT transaction_type || ' ' || sync_status || ' ' || count(*) || ' ' || sum(amount_minor) \
         FROM ledger.transactions GROUP BY transaction_type, sync_status ORDER BY 1",
        "SELECT status || ' ' || count(*) || ' rated ' || count(rate_time) \
         FROM ledger.bill_units GROUP BY status ORDER BY 1",
        "SELECT 'second pass ' || count(second_pass_tier) || ' ' \
                || COALESCE(sum(second_pass_amount_minor), 0) FROM ledger.usage_records",
        "SELECT balance_type || ' ' || count(*) || ' ' || sum(balance) \
         FROM ledger.balances GROUP BY balance_type ORDER BY 1",
        "SELECT 'core usage ' || count(*) || ' ' || COALESCE(sum(amount_minor), 0) \
         FROM core_standin.usage_transactions",
        "SELECT 'core orders ' || count(*) || ' ' || COALESCE(sum(amount_minor), 0) \
         FROM core_standin.true_up_orders",
    ];
    let mut out = Vec::new();
    for q in queries {
        for row in db.query(q, &[]).await.expect("summary query") {
            out.push(row.get::<_, String>(0));
        }
    }
    out
}
