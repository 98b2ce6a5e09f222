//! The demo ledger's SQL on the pool: removing a client's ledger, its
//! catalogue, reserving the id ranges the generated rows use, and the
//! statistics at the end (the rows themselves go in by COPY, see
//! [`super::bulk`]). See [`crate::billing::demo`].

use chrono::NaiveDate;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::generate::{IdBases, RECORDS_PER_ACCOUNT};
use crate::db::DbError;

/// The shape of a demo ledger; see [`crate::billing::demo`].
#[derive(Debug, Clone)]
pub struct DemoLedgerSpec {
    /// Number of accounts, `A0000001` upward.
    pub accounts: i64,
    /// The date the demo is loaded for: the open bill units are those
    /// containing the day before it.
    pub business_date: NaiveDate,
    /// For each anniversary day 1 to 31 (index 0 is day 1): the open period
    /// containing the day before the business date.
    pub open_periods: Vec<(NaiveDate, NaiveDate)>,
    /// The anniversary days that bill on the business date: rating faults
    /// are kept off these days so the business date's run gets past rating.
    pub due_days: Vec<i16>,
}

/// Removes every ledger row of `client_id`.
pub async fn delete_client_ledger(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> Result<(), DbError> {
    for table in [
        "transactions",
        "balances",
        "usage_records",
        "bill_units",
        "subscription_services",
        "subscriptions",
        "rate_tiers",
        "rate_schedules",
        "services",
        "accounts",
    ] {
        diesel::sql_query(format!("DELETE FROM ledger.{table} WHERE client_id = $1"))
            .bind::<Text, _>(client_id.to_string())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Row counts of a loaded demo ledger (as the COPY statements reported
/// them).
#[derive(Debug, Clone, Default)]
pub struct LedgerCounts {
    /// Accounts.
    pub accounts: i64,
    /// Subscriptions.
    pub subscriptions: i64,
    /// Bill units.
    pub bill_units: i64,
    /// Usage records.
    pub usage_records: i64,
    /// Monetized transactions.
    pub transactions: i64,
}

/// Starts a demo ledger for `client_id` in one database transaction:
/// removes the client's ledger and creates its catalogue (services, rate
/// schedules and tiers), which the generated rows refer to.
pub async fn reset_demo_ledger(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> Result<(), DbError> {
    let client = client_id.to_string();
    conn.transaction(async |conn| -> Result<(), DbError> {
        delete_client_ledger(conn, &client).await?;
        run(conn, &client, DEMO_CATALOGUE).await
    })
    .await
}

#[derive(QueryableByName)]
struct Reserved {
    #[diesel(sql_type = BigInt)]
    first: i64,
}

#[derive(QueryableByName)]
struct Alone {
    #[diesel(sql_type = Bool)]
    alone: bool,
}

#[derive(QueryableByName)]
struct Superuser {
    #[diesel(sql_type = Bool)]
    superuser: bool,
}

/// Reserves the ids of a load of `accounts` accounts in the identity
/// sequences of bill units, usage records and transactions (see
/// [`IdBases`]): the generated rows carry their ids, so children can refer
/// to their parents without reading them back. The tables are locked
/// against writers meanwhile, so no insert takes a value of the ranges
/// between reading a sequence and moving it past the range.
pub async fn reserve_ids(conn: &mut AsyncPgConnection, accounts: i64) -> Result<IdBases, DbError> {
    conn.transaction(async |conn| -> Result<IdBases, DbError> {
        diesel::sql_query(
            "LOCK TABLE ledger.bill_units, ledger.usage_records, ledger.transactions \
             IN SHARE ROW EXCLUSIVE MODE",
        )
        .execute(conn)
        .await?;
        Ok(IdBases {
            bill_unit: reserve(conn, "bill_units", "bill_unit_id", accounts).await?,
            usage: reserve(
                conn,
                "usage_records",
                "usage_id",
                accounts * RECORDS_PER_ACCOUNT,
            )
            .await?,
            transaction: reserve(
                conn,
                "transactions",
                "transaction_id",
                accounts * RECORDS_PER_ACCOUNT,
            )
            .await?,
        })
    })
    .await
}

/// The first of `count` ids taken from the identity sequence of
/// `ledger.<table>.<column>`.
async fn reserve(
    conn: &mut AsyncPgConnection,
    table: &str,
    column: &str,
    count: i64,
) -> Result<i64, DbError> {
    let sequence = format!("pg_get_serial_sequence('ledger.{table}', '{column}')");
    let reserved: Reserved = diesel::sql_query(format!(
        "SELECT first FROM (SELECT nextval({sequence}) AS first) r, \
             LATERAL setval({sequence}, r.first + GREATEST($1, 1) - 1)"
    ))
    .bind::<BigInt, _>(count)
    .get_result(conn)
    .await?;
    Ok(reserved.first)
}

/// Whether `client_id` is the only client with accounts in the ledger:
/// then its load may drop and rebuild the ledger's indexes and keys.
pub async fn ledger_is_alone(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> Result<bool, DbError> {
    let alone: Alone = diesel::sql_query(
        "SELECT NOT EXISTS (SELECT 1 FROM ledger.accounts WHERE client_id <> $1) AS alone",
    )
    .bind::<Text, _>(client_id.to_string())
    .get_result(conn)
    .await?;
    Ok(alone.alone)
}

/// Whether this session may turn off per-row foreign key checks
/// (`session_replication_role` is for superusers, which the embedded
/// database, the tests and the benchmarks are): then a load may copy a
/// child table before or beside its parents.
pub async fn foreign_key_checks_can_be_off(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    let row: Superuser =
        diesel::sql_query("SELECT current_setting('is_superuser') = 'on' AS superuser")
            .get_result(conn)
            .await?;
    Ok(row.superuser)
}

/// Ends a demo ledger load: statistics for the jobs' queries right away,
/// whether or not autovacuum runs.
pub async fn finish_demo_ledger(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    diesel::sql_query(
        "ANALYZE ledger.accounts, ledger.subscriptions, ledger.subscription_services, \
         ledger.bill_units, ledger.usage_records, ledger.balances, ledger.transactions, \
         ledger.rate_tiers, ledger.rate_schedules, ledger.services",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs generator statements, each taking the client as `$1` (or nothing),
/// logging each one's time at debug level.
async fn run(
    conn: &mut AsyncPgConnection,
    client: &str,
    statements: &[&str],
) -> Result<(), DbError> {
    for (i, statement) in statements.iter().enumerate() {
        let started = std::time::Instant::now();
        let rows = if statement.contains("$1") {
            diesel::sql_query(*statement)
                .bind::<Text, _>(client.to_string())
                .execute(conn)
                .await?
        } else {
            diesel::sql_query(*statement).execute(conn).await?
        };
        tracing::debug!(
            statement = i,
            rows,
            ms = started.elapsed().as_millis() as u64,
            "demo ledger statement"
        );
    }
    Ok(())
}

/// The statements that generate a demo ledger's catalogue, each taking the
/// client as `$1`.
///
/// Rates: voice per minute 5 below 1,000 min, 4 below 5,000, then 3 minor
/// units; data per MB 2 below 2,000 MB, then 1. The LEGACY_2019 voice
/// schedule jumps from 1,000 to 1,500 (a tier gap).
const DEMO_CATALOGUE: &[&str] = &[
    "INSERT INTO ledger.services (client_id, service_id, name, unit_of_measure, commitment_eligible) \
     VALUES ($1, 'VOICE_MIN', 'Voice minutes', 'minute', true), \
            ($1, 'DATA_MB', 'Mobile data', 'MB', true)",
    "INSERT INTO ledger.rate_schedules (client_id, plan_code, service_id, currency, name) \
     SELECT $1, p, s, c, p || ' ' || s || ' ' || c \
     FROM unnest(ARRAY['STANDARD', 'LEGACY_2019']) p, unnest(ARRAY['VOICE_MIN', 'DATA_MB']) s, \
          unnest(ARRAY['USD', 'EUR', 'GBP']) c",
    "INSERT INTO ledger.rate_tiers (client_id, plan_code, service_id, currency, tier_no, \
         from_quantity, to_quantity, unit_price_minor) \
     SELECT $1, rs.plan_code, rs.service_id, rs.currency, t.tier_no, \
            CASE WHEN rs.plan_code = 'LEGACY_2019' AND t.service_id = 'VOICE_MIN' \
                      AND t.tier_no = 2 THEN 1500 ELSE t.from_q END, \
            t.to_q, t.price \
     FROM ledger.rate_schedules rs \
     JOIN (VALUES ('VOICE_MIN', 1, 0, 1000, 5), ('VOICE_MIN', 2, 1000, 5000, 4), \
                  ('VOICE_MIN', 3, 5000, NULL, 3), \
                  ('DATA_MB', 1, 0, 2000, 2), ('DATA_MB', 2, 2000, NULL, 1)) \
          AS t(service_id, tier_no, from_q, to_q, price) ON t.service_id = rs.service_id \
     WHERE rs.client_id = $1",
];
