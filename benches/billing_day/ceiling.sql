-- The ceiling of the billing-day benchmark: each catalogue job's ledger
-- changes for one business date as plain set-based SQL, one statement per
-- job and batch of accounts (no per-item round trips, no scheduler).
-- Parameters: $1 client, $2 business date, $3/$4 the batch's account range
-- [from, to); BILLING also $5 the anniversary days due and $6 the end of
-- each one's next period (computed by the same calendar rules the job uses).
-- Each statement returns (work items, rows written). A line naming the job
-- opens each section.

-- job: BILLTIME_USAGE_RATING
WITH units AS (
    SELECT bu.bill_unit_id, bu.account_id, bu.subscription_id, bu.period_start, bu.period_end,
           a.currency, s.plan_code
    FROM ledger.bill_units bu
    JOIN ledger.accounts a ON a.client_id = bu.client_id AND a.account_id = bu.account_id
    JOIN ledger.subscriptions s
      ON s.client_id = bu.client_id AND s.subscription_id = bu.subscription_id
    WHERE bu.client_id = $1 AND bu.period_end = $2 AND bu.account_id >= $3 AND bu.account_id < $4
), usage AS (
    SELECT ur.bill_unit_id, ur.service_id, count(*) AS records, sum(ur.quantity) AS quantity,
           sum(ur.quantity - ur.allowance_used) AS billable,
           sum(ur.first_pass_amount_minor) AS first_pass
    FROM ledger.usage_records ur JOIN units u ON u.bill_unit_id = ur.bill_unit_id
    WHERE ur.client_id = $1
    GROUP BY ur.bill_unit_id, ur.service_id
), rated AS (
    SELECT u.*, ss.service_id, acc.balance, t.tier_no, t.unit_price_minor,
           COALESCE(g.billable, 0) AS billable, COALESCE(g.first_pass, 0) AS first_pass,
           (rs.plan_code IS NOT NULL AND t.tier_no IS NOT NULL
            AND COALESCE(acc.balance, CASE WHEN g.records IS NULL THEN 0 END)
                = COALESCE(g.quantity, 0)) AS ok
    FROM units u
    JOIN ledger.subscription_services ss
      ON ss.client_id = $1 AND ss.subscription_id = u.subscription_id
    LEFT JOIN ledger.rate_schedules rs
      ON rs.client_id = $1 AND rs.plan_code = u.plan_code AND rs.service_id = ss.service_id
     AND rs.currency = u.currency
    LEFT JOIN ledger.balances acc
      ON acc.client_id = $1 AND acc.bill_unit_id = u.bill_unit_id
     AND acc.service_id = ss.service_id AND acc.balance_type = 'ACCUMULATOR'
    LEFT JOIN usage g ON g.bill_unit_id = u.bill_unit_id AND g.service_id = ss.service_id
    LEFT JOIN LATERAL (
        SELECT t.tier_no, t.unit_price_minor FROM ledger.rate_tiers t
        WHERE t.client_id = $1 AND t.plan_code = u.plan_code AND t.service_id = ss.service_id
          AND t.currency = u.currency AND t.from_quantity <= COALESCE(acc.balance, 0)
          AND (t.to_quantity IS NULL OR COALESCE(acc.balance, 0) < t.to_quantity)
        ORDER BY t.tier_no LIMIT 1) t ON true
), good AS (
    SELECT * FROM rated r
    WHERE NOT EXISTS (SELECT 1 FROM rated x WHERE x.bill_unit_id = r.bill_unit_id AND NOT x.ok)
), adjusted AS (
    INSERT INTO ledger.transactions (client_id, account_id, subscription_id, bill_unit_id,
        service_id, transaction_type, amount_minor, currency, idempotency_key, detail)
    SELECT $1, account_id, subscription_id, bill_unit_id, service_id, 'USAGE_ADJ',
           billable * unit_price_minor - first_pass, currency,
           'USAGE_ADJ:BU' || bill_unit_id || ':' || service_id,
           jsonb_build_object('accumulator_balance', COALESCE(balance, 0), 'tier_no', tier_no,
               'unit_price_minor', unit_price_minor, 'billable_quantity', billable,
               'rerated_amount_minor', billable * unit_price_minor,
               'first_pass_amount_minor', first_pass, 'period_start', period_start,
               'period_end', period_end)
    FROM good WHERE billable * unit_price_minor <> first_pass
    ON CONFLICT ON CONSTRAINT transactions_idempotency_key DO NOTHING
    RETURNING 1
), second_pass AS (
    UPDATE ledger.usage_records ur
    SET second_pass_tier = g.tier_no,
        second_pass_amount_minor = (ur.quantity - ur.allowance_used) * g.unit_price_minor
    FROM good g
    WHERE ur.client_id = $1 AND ur.bill_unit_id = g.bill_unit_id AND ur.service_id = g.service_id
    RETURNING 1
), rate_time AS (
    UPDATE ledger.bill_units b SET rate_time = now()
    FROM (SELECT DISTINCT bill_unit_id FROM good) g
    WHERE b.client_id = $1 AND b.bill_unit_id = g.bill_unit_id AND b.rate_time IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM units) AS items,
       (SELECT count(*) FROM adjusted) + (SELECT count(*) FROM second_pass)
           + (SELECT count(*) FROM rate_time) AS rows;

-- job: SYNC_TRANSACTION
WITH pending AS (
    SELECT t.transaction_id, t.account_id, t.transaction_type, t.service_id, t.quantity,
           t.amount_minor, t.currency, t.idempotency_key
    FROM ledger.transactions t
    WHERE t.client_id = $1 AND t.sync_status <> 'SYNCED'
      AND t.transaction_type IN ('USAGE', 'USAGE_ADJ')
      AND t.account_id >= $3 AND t.account_id < $4 AND $2::date IS NOT NULL
), sent AS (
    INSERT INTO core_standin.usage_transactions AS u (client_id, idempotency_key, account_id,
        transaction_type, service_id, quantity, amount_minor, currency, ledger_transaction_id)
    SELECT $1, idempotency_key, account_id, transaction_type, COALESCE(service_id, ''),
           COALESCE(quantity, 0), amount_minor, currency, transaction_id::text
    FROM pending
    ON CONFLICT (client_id, idempotency_key) DO UPDATE
        SET receive_count = u.receive_count + 1, last_receive_time = now()
        WHERE u.account_id = EXCLUDED.account_id AND u.amount_minor = EXCLUDED.amount_minor
    RETURNING u.idempotency_key, u.core_transaction_no
), synced AS (
    UPDATE ledger.transactions t
    SET sync_status = 'SYNCED', sync_error_code = NULL, sync_error_reason = NULL,
        core_reference = 'CT' || s.core_transaction_no, sync_attempts = t.sync_attempts + 1,
        last_sync_time = now()
    FROM sent s
    WHERE t.client_id = $1 AND t.idempotency_key = s.idempotency_key AND t.sync_status <> 'SYNCED'
    RETURNING 1
)
SELECT (SELECT count(DISTINCT (account_id, currency)) FROM pending) AS items,
       (SELECT count(*) FROM sent) + (SELECT count(*) FROM synced) AS rows;

-- job: BILLING
WITH due AS (
    SELECT a.account_id, a.status, a.currency, n.next_end
    FROM ledger.accounts a
    JOIN unnest($5::smallint[], $6::date[]) AS n(day, next_end) ON n.day = a.anniversary_day
    WHERE a.client_id = $1 AND a.status <> 'CLOSED' AND a.account_id >= $3 AND a.account_id < $4
), inputs AS (
    SELECT d.account_id, d.status, d.currency, d.next_end, s.subscription_id,
           s.minimum_commitment_minor, bu.bill_unit_id, bu.period_start,
           COALESCE(bu.status = 'CLOSED', false) AS closed, bu.rate_time IS NOT NULL AS rated,
           (bu.bill_unit_id IS NOT NULL AND EXISTS (
               SELECT 1 FROM ledger.usage_records ur
               WHERE ur.client_id = $1 AND ur.bill_unit_id = bu.bill_unit_id)) AS has_usage,
           COALESCE((
               SELECT sum(t.amount_minor) FROM ledger.transactions t
               JOIN ledger.services sv ON sv.client_id = t.client_id AND sv.service_id = t.service_id
               WHERE t.client_id = $1 AND t.bill_unit_id = bu.bill_unit_id
                 AND t.transaction_type IN ('USAGE', 'USAGE_ADJ') AND sv.commitment_eligible), 0)
               AS eligible,
           (s.subscription_id IS NOT NULL AND EXISTS (
               SELECT 1 FROM ledger.bill_units cur
               WHERE cur.client_id = $1 AND cur.subscription_id = s.subscription_id
                 AND cur.period_start <= $2 AND $2 < cur.period_end)) AS has_current
    FROM due d
    LEFT JOIN ledger.subscriptions s
      ON s.client_id = $1 AND s.account_id = d.account_id AND s.status = 'ACTIVE'
    LEFT JOIN ledger.bill_units bu
      ON bu.client_id = $1 AND bu.subscription_id = s.subscription_id AND bu.period_end = $2
), failed AS (
    SELECT DISTINCT account_id FROM inputs
    WHERE status <> 'ACTIVE' OR subscription_id IS NULL
       OR (bill_unit_id IS NULL AND NOT has_current)
       OR (bill_unit_id IS NOT NULL AND has_usage AND NOT rated AND NOT closed)
), billed AS (
    SELECT i.* FROM inputs i
    WHERE i.bill_unit_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM failed f WHERE f.account_id = i.account_id)
), closed_units AS (
    UPDATE ledger.bill_units b SET status = 'CLOSED', close_time = now()
    FROM billed x WHERE b.client_id = $1 AND b.bill_unit_id = x.bill_unit_id AND b.status = 'OPEN'
    RETURNING 1
), opened AS (
    INSERT INTO ledger.bill_units (client_id, subscription_id, account_id, period_start, period_end)
    SELECT $1, subscription_id, account_id, $2, next_end FROM billed
    ON CONFLICT ON CONSTRAINT bill_units_subscription_period_key DO NOTHING
    RETURNING bill_unit_id, subscription_id
), granted AS (
    INSERT INTO ledger.balances (client_id, bill_unit_id, service_id, balance_type, granted, balance)
    SELECT $1, o.bill_unit_id, ss.service_id, k.balance_type,
           CASE k.balance_type WHEN 'ALLOWANCE' THEN ss.allowance_units ELSE 0 END,
           CASE k.balance_type WHEN 'ALLOWANCE' THEN ss.allowance_units ELSE 0 END
    FROM opened o
    JOIN ledger.subscription_services ss
      ON ss.client_id = $1 AND ss.subscription_id = o.subscription_id
    CROSS JOIN (VALUES ('ALLOWANCE'), ('ACCUMULATOR')) AS k(balance_type)
    ON CONFLICT DO NOTHING
    RETURNING 1
), trued_up AS (
    INSERT INTO ledger.transactions (client_id, account_id, subscription_id, bill_unit_id,
        transaction_type, amount_minor, currency, idempotency_key, detail)
    SELECT $1, account_id, subscription_id, bill_unit_id, 'TRUE_UP',
           minimum_commitment_minor - GREATEST(eligible, 0), currency, 'TRUE_UP:BU' || bill_unit_id,
           jsonb_build_object('minimum_commitment_minor', minimum_commitment_minor,
               'eligible_usage_minor', eligible, 'period_start', period_start, 'period_end', $2)
    FROM billed WHERE minimum_commitment_minor - GREATEST(eligible, 0) > 0
    ON CONFLICT ON CONSTRAINT transactions_idempotency_key DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM due) AS items,
       (SELECT count(*) FROM closed_units) + (SELECT count(*) FROM opened)
           + (SELECT count(*) FROM granted) + (SELECT count(*) FROM trued_up) AS rows;

-- job: SYNC_BILLING_TRANSACTIONS
WITH pending AS (
    SELECT t.transaction_id, t.account_id, t.amount_minor, t.currency, t.idempotency_key,
           bu.period_start, bu.period_end, t.detail
    FROM ledger.transactions t
    LEFT JOIN ledger.bill_units bu ON bu.client_id = t.client_id AND bu.bill_unit_id = t.bill_unit_id
    WHERE t.client_id = $1 AND t.sync_status <> 'SYNCED' AND t.transaction_type = 'TRUE_UP'
      AND t.account_id >= $3 AND t.account_id < $4 AND $2::date IS NOT NULL
), sent AS (
    INSERT INTO core_standin.true_up_orders AS o (client_id, idempotency_key, account_id,
        amount_minor, currency, period_start, period_end, minimum_commitment_minor,
        eligible_usage_minor, ledger_transaction_id)
    SELECT $1, idempotency_key, account_id, amount_minor, currency,
           COALESCE(period_start::text, ''), COALESCE(period_end::text, ''),
           COALESCE((detail->>'minimum_commitment_minor')::bigint, 0),
           COALESCE((detail->>'eligible_usage_minor')::bigint, 0), transaction_id::text
    FROM pending
    ON CONFLICT (client_id, idempotency_key) DO UPDATE
        SET receive_count = o.receive_count + 1, last_receive_time = now()
        WHERE o.account_id = EXCLUDED.account_id AND o.amount_minor = EXCLUDED.amount_minor
    RETURNING o.idempotency_key, o.order_no
), synced AS (
    UPDATE ledger.transactions t
    SET sync_status = 'SYNCED', sync_error_code = NULL, sync_error_reason = NULL,
        core_reference = 'ORD' || s.order_no, sync_attempts = t.sync_attempts + 1,
        last_sync_time = now()
    FROM sent s
    WHERE t.client_id = $1 AND t.idempotency_key = s.idempotency_key AND t.sync_status <> 'SYNCED'
    RETURNING 1
)
SELECT (SELECT count(*) FROM pending) AS items,
       (SELECT count(*) FROM sent) + (SELECT count(*) FROM synced) AS rows;
