//! The demo ledger's SQL: a whole generated ledger for one client in a dozen
//! set-based statements. See [`crate::billing::demo`].

use chrono::NaiveDate;
use diesel::sql_types::{Array, BigInt, Bool, Date, SmallInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

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

/// Row counts of a loaded demo ledger.
#[derive(Debug, Clone, Default, QueryableByName)]
pub struct LedgerCounts {
    /// Accounts.
    #[diesel(sql_type = BigInt)]
    pub accounts: i64,
    /// Subscriptions.
    #[diesel(sql_type = BigInt)]
    pub subscriptions: i64,
    /// Bill units.
    #[diesel(sql_type = BigInt)]
    pub bill_units: i64,
    /// Usage records.
    #[diesel(sql_type = BigInt)]
    pub usage_records: i64,
    /// Monetized transactions.
    #[diesel(sql_type = BigInt)]
    pub transactions: i64,
}

/// Starts a demo ledger for `client_id` in one database transaction:
/// removes the client's ledger and creates its catalogue (services, rate
/// schedules and tiers), which every part of the accounts refers to.
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

/// Generates the accounts `first..=last` of a demo ledger (their
/// subscriptions, bill units, services, usage, balances and first-pass
/// transactions), set-based, in one database transaction, after
/// [`reset_demo_ledger`]. Parts with disjoint ranges may run at once on
/// separate connections. On two busy cores, 100,000 accounts take about
/// 28 s with foreign key checks and 12 s without (see
/// [`skip_foreign_key_checks_if_allowed`]). The account number `n` drives
/// every choice, so the same spec always yields the same ledger:
///
/// - anniversary day `n mod 31 + 1`, so every day 1 to 31 has accounts;
/// - currency USD, every 7th EUR, every 11th GBP; a few CAD, for which no
///   rate schedule exists (`RATE_SCHEDULE_NOT_FOUND`);
/// - plan STANDARD, a few LEGACY_2019 whose voice tiers have a gap
///   (`TIER_GAP`), a few accumulators off by 7 (`ACCUMULATOR_MISMATCH`):
///   these three only on anniversary days not due on the business date, so
///   that date's run gets past rating;
/// - a few SUSPENDED accounts (`ACCOUNT_INACTIVE`) and cancelled
///   subscriptions (`NO_ACTIVE_SUBSCRIPTION`) on every day;
/// - a voice service on every subscription, data on two in three;
///   allowances; usage totals spread over every tier; minimum commitments
///   on one subscription in three, some met and some not;
/// - first-pass USAGE transactions SYNCED, except those of the day before
///   the business date, PENDING.
pub async fn load_demo_accounts(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    spec: &DemoLedgerSpec,
    first: i64,
    last: i64,
) -> Result<(), DbError> {
    let client = client_id.to_string();
    conn.transaction(async |conn| -> Result<(), DbError> {
        skip_foreign_key_checks_if_allowed(conn).await?;
        diesel::sql_query(
            "CREATE TEMP TABLE demo_spec ON COMMIT DROP AS \
             SELECT $1::bigint AS first, $2::bigint AS last, $3::date AS business_date",
        )
        .bind::<BigInt, _>(first)
        .bind::<BigInt, _>(last)
        .bind::<Date, _>(spec.business_date)
        .execute(conn)
        .await?;
        diesel::sql_query(
            "CREATE TEMP TABLE demo_periods ON COMMIT DROP AS \
             SELECT p.day::smallint AS day, p.period_start, p.period_end, \
                    p.day::smallint = ANY($3) AS due \
             FROM unnest($1::date[], $2::date[]) WITH ORDINALITY \
                 AS p(period_start, period_end, day)",
        )
        .bind::<Array<Date>, _>(spec.open_periods.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind::<Array<Date>, _>(spec.open_periods.iter().map(|p| p.1).collect::<Vec<_>>())
        .bind::<Array<SmallInt>, _>(spec.due_days.clone())
        .execute(conn)
        .await?;
        run(conn, &client, DEMO_ACCOUNTS).await
    })
    .await
}

/// Ends a demo ledger load: statistics for the jobs' queries right away
/// (whether or not autovacuum runs), and the rows per table.
pub async fn finish_demo_ledger(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> Result<LedgerCounts, DbError> {
    diesel::sql_query(
        "ANALYZE ledger.accounts, ledger.subscriptions, ledger.subscription_services, \
         ledger.bill_units, ledger.usage_records, ledger.balances, ledger.transactions, \
         ledger.rate_tiers, ledger.rate_schedules, ledger.services",
    )
    .execute(conn)
    .await?;
    Ok(diesel::sql_query(
        "SELECT (SELECT count(*) FROM ledger.accounts WHERE client_id = $1) AS accounts, \
                (SELECT count(*) FROM ledger.subscriptions WHERE client_id = $1) \
                    AS subscriptions, \
                (SELECT count(*) FROM ledger.bill_units WHERE client_id = $1) AS bill_units, \
                (SELECT count(*) FROM ledger.usage_records WHERE client_id = $1) \
                    AS usage_records, \
                (SELECT count(*) FROM ledger.transactions WHERE client_id = $1) \
                    AS transactions",
    )
    .bind::<Text, _>(client_id.to_string())
    .get_result(conn)
    .await?)
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

#[derive(QueryableByName)]
struct Superuser {
    #[diesel(sql_type = Bool)]
    superuser: bool,
}

/// Turns off the per-row foreign key checks for the rest of the current
/// database transaction when the session may (`session_replication_role`
/// is for superusers, which the embedded database, the tests and the
/// benchmarks are): the generator's rows reference each other by
/// construction, and the checks are more than half of the load time (one
/// lookup per row and key). Elsewhere the checks stay and the load is
/// slower, not different. Triggers are off too, and the ledger has none.
async fn skip_foreign_key_checks_if_allowed(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    let allowed: Superuser =
        diesel::sql_query("SELECT current_setting('is_superuser') = 'on' AS superuser")
            .get_result(conn)
            .await?;
    if allowed.superuser {
        diesel::sql_query("SET LOCAL session_replication_role = replica")
            .execute(conn)
            .await?;
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

/// The statements that generate a part of a demo ledger's accounts, each
/// taking the client as `$1` (or nothing) and reading the spec from the
/// temporary tables `demo_spec` (the range of account numbers, business
/// date) and `demo_periods` (the open period of each anniversary day, and
/// whether the day is due on the business date). Intermediate results go to
/// analyzed temporary tables so every join is a hash join over rows with
/// statistics.
///
/// In `demo_accounts`, `fault_kind` picks the few broken accounts: in every
/// 29th block of 31 accounts (one account of each anniversary day) every
/// account gets a fault, the kind cycling through 1 SUSPENDED, 2 cancelled
/// subscription, 3 LEGACY_2019 plan, 4 CAD currency, 5 accumulator off.
const DEMO_ACCOUNTS: &[&str] = &[
    // Fault kinds 1-2 hit BILLING; 3-5 hit rating and are kept off the
    // days due on the business date.
    "CREATE TEMP TABLE demo_accounts ON COMMIT DROP AS \
     SELECT a.n, 'A' || lpad(a.n::text, 7, '0') AS account_id, \
            'S' || lpad(a.n::text, 7, '0') AS subscription_id, a.day, f.fault_kind, \
            CASE WHEN f.fault_kind = 4 THEN 'CAD' WHEN a.n % 11 = 0 THEN 'GBP' \
                 WHEN a.n % 7 = 0 THEN 'EUR' ELSE 'USD' END AS currency, \
            p.period_start, p.period_end, a.business_date \
     FROM ( \
         SELECT n, (n % 31 + 1)::smallint AS day, spec.business_date, \
                CASE WHEN (n / 31) % 29 = 7 THEN ((n / 31 / 29) % 5) + 1 ELSE 0 END::int \
                    AS fault_kind \
         FROM demo_spec spec, generate_series(spec.first, spec.last) AS n) a \
     JOIN demo_periods p ON p.day = a.day \
     CROSS JOIN LATERAL ( \
         SELECT CASE WHEN a.fault_kind >= 3 AND p.due THEN 0 ELSE a.fault_kind END \
             AS fault_kind) f",
    "ANALYZE demo_accounts",
    "INSERT INTO ledger.accounts (client_id, account_id, status, anniversary_day, currency, time_zone) \
     SELECT $1, account_id, CASE WHEN fault_kind = 1 THEN 'SUSPENDED' ELSE 'ACTIVE' END, day, \
            currency, \
            (ARRAY['America/New_York', 'America/Chicago', 'America/Los_Angeles', \
                   'Europe/London', 'Europe/Berlin', 'Asia/Tokyo'])[n % 6 + 1] \
     FROM demo_accounts",
    // One subscription each; a third carry a minimum commitment of 25.00,
    // 60.00 or 150.00.
    "INSERT INTO ledger.subscriptions (client_id, subscription_id, account_id, plan_code, status, \
         minimum_commitment_minor, start_date) \
     SELECT $1, subscription_id, account_id, \
            CASE WHEN fault_kind = 3 THEN 'LEGACY_2019' ELSE 'STANDARD' END, \
            CASE WHEN fault_kind = 2 THEN 'CANCELLED' ELSE 'ACTIVE' END, \
            CASE WHEN n % 3 = 0 THEN (ARRAY[2500, 6000, 15000])[n % 9 / 3 + 1] END, \
            period_start - 365 \
     FROM demo_accounts",
    // The open bill unit of every active subscription.
    "INSERT INTO ledger.bill_units (client_id, subscription_id, account_id, period_start, period_end) \
     SELECT $1, subscription_id, account_id, period_start, period_end \
     FROM demo_accounts WHERE fault_kind <> 2",
    // Each subscription's recurring services: voice (100 free minutes) on
    // every one, data (500 free MB) on two in three; with the period's
    // usage total, spread over every tier (a hash of n and the service),
    // none for one subscription in 17.
    "CREATE TEMP TABLE demo_units ON COMMIT DROP AS \
     SELECT a.n, a.account_id, a.subscription_id, a.currency, a.fault_kind, a.period_start, \
            a.business_date, bu.bill_unit_id, s.service_id, s.allowance, s.entry_price, \
            CASE WHEN a.n % 17 = 0 THEN 0 \
                 ELSE (hashint4(a.n::int + s.salt)::bigint & 8191) % s.spread END AS total \
     FROM demo_accounts a \
     JOIN (VALUES ('VOICE_MIN', 100, 5, 7000, 0), ('DATA_MB', 500, 2, 4000, 100003)) \
         AS s(service_id, allowance, entry_price, spread, salt) \
       ON s.service_id = 'VOICE_MIN' OR a.n % 3 <> 1 \
     LEFT JOIN ledger.bill_units bu \
       ON bu.client_id = $1 AND bu.subscription_id = a.subscription_id",
    "ANALYZE demo_units",
    "INSERT INTO ledger.subscription_services (client_id, subscription_id, service_id, allowance_units) \
     SELECT $1, subscription_id, service_id, allowance FROM demo_units",
    // Two usage records per service with usage: 60% early in the period,
    // the rest later (on the day before the business date for one account
    // in four). The allowance covers the first record first; the first
    // pass priced the rest at the entry tier.
    "INSERT INTO ledger.usage_records (client_id, account_id, subscription_id, bill_unit_id, \
         service_id, usage_date, quantity, allowance_used, first_pass_tier, first_pass_amount_minor) \
     SELECT $1, u.account_id, u.subscription_id, u.bill_unit_id, u.service_id, r.usage_date, \
            r.quantity, r.allowance_used, 1, (r.quantity - r.allowance_used) * u.entry_price \
     FROM demo_units u \
     CROSS JOIN LATERAL ( \
         SELECT u.total * 3 / 5 AS first, u.total - u.total * 3 / 5 AS second, \
                u.business_date - u.period_start AS days) q \
     CROSS JOIN LATERAL (VALUES \
         (u.period_start + (u.n % 7 % q.days)::int, q.first, LEAST(q.first, u.allowance)), \
         (CASE WHEN u.n % 4 = 0 THEN u.business_date - 1 \
               ELSE u.period_start + ((u.n % 5 + 10) % q.days)::int END, \
          q.second, LEAST(q.second, u.allowance - LEAST(q.first, u.allowance)))) \
         AS r(usage_date, quantity, allowance_used) \
     WHERE u.bill_unit_id IS NOT NULL AND u.total > 0",
    // Balances of the open periods: allowance left, and the accumulator
    // equal to the usage (off by 7 for fault kind 5).
    "INSERT INTO ledger.balances (client_id, bill_unit_id, service_id, balance_type, granted, balance) \
     SELECT $1, u.bill_unit_id, u.service_id, k.balance_type, \
            CASE k.balance_type WHEN 'ALLOWANCE' THEN u.allowance ELSE 0 END, \
            CASE k.balance_type \
                 WHEN 'ALLOWANCE' THEN u.allowance - LEAST(u.total, u.allowance) \
                 ELSE u.total + CASE WHEN u.fault_kind = 5 THEN 7 ELSE 0 END END \
     FROM demo_units u \
     CROSS JOIN (VALUES ('ALLOWANCE'), ('ACCUMULATOR')) AS k(balance_type) \
     WHERE u.bill_unit_id IS NOT NULL",
    // First-pass USAGE transactions: synced, except those of the day before
    // the business date, which SYNC_TRANSACTION still has to send.
    "INSERT INTO ledger.transactions (client_id, account_id, subscription_id, bill_unit_id, \
         service_id, transaction_type, quantity, amount_minor, currency, idempotency_key, \
         sync_status, sync_attempts, last_sync_time, core_reference, create_time) \
     SELECT $1, ur.account_id, ur.subscription_id, ur.bill_unit_id, ur.service_id, 'USAGE', \
            ur.quantity, ur.first_pass_amount_minor, a.currency, 'USAGE:U' || ur.usage_id, \
            CASE WHEN p.pending THEN 'PENDING' ELSE 'SYNCED' END, \
            CASE WHEN p.pending THEN 0 ELSE 1 END, \
            CASE WHEN p.pending THEN NULL ELSE (ur.usage_date + 1)::timestamptz END, \
            CASE WHEN p.pending THEN NULL ELSE 'DEMO-U' || ur.usage_id END, \
            ur.usage_date::timestamptz \
     FROM ledger.usage_records ur \
     JOIN demo_accounts a ON a.account_id = ur.account_id \
     CROSS JOIN LATERAL (SELECT ur.usage_date >= a.business_date - 1 AS pending) p \
     WHERE ur.client_id = $1 AND ur.first_pass_amount_minor > 0",
];
