-- The reference billing ledger the catalogue jobs work on, and the records of
-- the stand-in core Aria service.
--
-- Every ledger table carries client_id, and every key and foreign key starts
-- with it: nothing crosses clients.
--
-- Money is an integer number of minor units of the row's currency (bigint:
-- cents for USD, yen for JPY). Unit prices are minor units per unit of
-- measure of the service, so a rated amount is quantity x price, exact, with
-- no rounding. A price below one minor unit is expressed with a larger unit
-- of measure (per 10 minutes, per 1,000 calls).
--
-- Billing periods (bill units) are half-open: [period_start, period_end).

CREATE SCHEMA ledger;

-- A billed customer of a client.
CREATE TABLE ledger.accounts (
    client_id text NOT NULL,
    account_id text NOT NULL,
    -- ACTIVE accounts are billed; SUSPENDED ones are due but refused
    -- (ACCOUNT_INACTIVE); CLOSED ones are no longer billed at all.
    status text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')),
    -- Day of the month the account bills on. 29-31 bill on the last day of
    -- shorter months and return to their day after.
    anniversary_day smallint NOT NULL CHECK (anniversary_day BETWEEN 1 AND 31),
    -- ISO 4217 code of every amount of the account.
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- IANA zone in which the account's usage dates are local dates.
    time_zone text NOT NULL DEFAULT 'UTC',
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, account_id)
);

-- BILLING's plan: "accounts due on date D" is a range scan of this index on
-- (client, anniversary days due on D), in account order.
CREATE INDEX accounts_due_idx
    ON ledger.accounts (client_id, anniversary_day, account_id)
    WHERE status <> 'CLOSED';

-- A usage service of the client's catalogue (voice minutes, data, calls).
CREATE TABLE ledger.services (
    client_id text NOT NULL,
    service_id text NOT NULL,
    name text NOT NULL,
    unit_of_measure text NOT NULL,
    -- Whether the service's usage counts toward minimum commitments.
    commitment_eligible boolean NOT NULL DEFAULT true,
    PRIMARY KEY (client_id, service_id)
);

-- The rates of one service on one plan in one currency.
CREATE TABLE ledger.rate_schedules (
    client_id text NOT NULL,
    plan_code text NOT NULL,
    service_id text NOT NULL,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    name text NOT NULL DEFAULT '',
    PRIMARY KEY (client_id, plan_code, service_id, currency),
    FOREIGN KEY (client_id, service_id) REFERENCES ledger.services
);

-- Volume rating tiers of a rate schedule. A tier covers accumulator balances
-- from from_quantity (inclusive) to to_quantity (exclusive; NULL: no upper
-- bound). The tier covering the period's accumulator balance prices all
-- billable usage of the period.
CREATE TABLE ledger.rate_tiers (
    client_id text NOT NULL,
    plan_code text NOT NULL,
    service_id text NOT NULL,
    currency text NOT NULL,
    tier_no integer NOT NULL CHECK (tier_no > 0),
    from_quantity bigint NOT NULL CHECK (from_quantity >= 0),
    to_quantity bigint CHECK (to_quantity > from_quantity),
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (client_id, plan_code, service_id, currency, tier_no),
    FOREIGN KEY (client_id, plan_code, service_id, currency) REFERENCES ledger.rate_schedules
);

-- A plan an account subscribes to.
CREATE TABLE ledger.subscriptions (
    client_id text NOT NULL,
    subscription_id text NOT NULL,
    account_id text NOT NULL,
    plan_code text NOT NULL,
    status text NOT NULL CHECK (status IN ('ACTIVE', 'CANCELLED')),
    -- Minimum commitment per billing period, in minor units of the account's
    -- currency; NULL when the subscription carries none.
    minimum_commitment_minor bigint CHECK (minimum_commitment_minor > 0),
    start_date date NOT NULL,
    PRIMARY KEY (client_id, subscription_id),
    FOREIGN KEY (client_id, account_id) REFERENCES ledger.accounts
);

CREATE INDEX subscriptions_account_idx ON ledger.subscriptions (client_id, account_id);

-- The recurring services of a subscription: each grants its allowance and a
-- fresh accumulator every billing period.
CREATE TABLE ledger.subscription_services (
    client_id text NOT NULL,
    subscription_id text NOT NULL,
    service_id text NOT NULL,
    -- Units of usage free of charge each period.
    allowance_units bigint NOT NULL DEFAULT 0 CHECK (allowance_units >= 0),
    PRIMARY KEY (client_id, subscription_id, service_id),
    FOREIGN KEY (client_id, subscription_id) REFERENCES ledger.subscriptions,
    FOREIGN KEY (client_id, service_id) REFERENCES ledger.services
);

-- One billing period of one subscription, [period_start, period_end).
CREATE TABLE ledger.bill_units (
    client_id text NOT NULL,
    bill_unit_id bigint GENERATED ALWAYS AS IDENTITY,
    subscription_id text NOT NULL,
    account_id text NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL CHECK (period_end > period_start),
    -- OPEN while usage accrues; CLOSED by BILLING on period_end.
    status text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED')),
    -- When BILLTIME_USAGE_RATING re-rated the period (second pass).
    rate_time timestamptz,
    close_time timestamptz,
    PRIMARY KEY (client_id, bill_unit_id),
    -- One bill unit per subscription per period: opening the next period is
    -- idempotent.
    CONSTRAINT bill_units_subscription_period_key UNIQUE (client_id, subscription_id, period_start),
    -- Periods of a subscription do not share an end either; BILLING finds
    -- the bill unit ending on its date through this key.
    CONSTRAINT bill_units_subscription_period_end_key UNIQUE (client_id, subscription_id, period_end),
    FOREIGN KEY (client_id, subscription_id) REFERENCES ledger.subscriptions,
    FOREIGN KEY (client_id, account_id) REFERENCES ledger.accounts
);

-- BILLTIME_USAGE_RATING's plan: bill units ending on D, in account order.
CREATE INDEX bill_units_period_end_idx
    ON ledger.bill_units (client_id, period_end, account_id, bill_unit_id);

-- One usage record, rated in a first pass when it arrived.
CREATE TABLE ledger.usage_records (
    client_id text NOT NULL,
    usage_id bigint GENERATED ALWAYS AS IDENTITY,
    account_id text NOT NULL,
    subscription_id text NOT NULL,
    bill_unit_id bigint NOT NULL,
    service_id text NOT NULL,
    -- Local date of the usage in the account's time zone.
    usage_date date NOT NULL,
    quantity bigint NOT NULL CHECK (quantity >= 0),
    -- Part of the quantity covered by the period's allowance (not charged).
    allowance_used bigint NOT NULL DEFAULT 0 CHECK (allowance_used BETWEEN 0 AND quantity),
    -- First pass: the tier and amount the record was rated at on arrival.
    first_pass_tier integer NOT NULL,
    first_pass_amount_minor bigint NOT NULL,
    -- Second pass (BILLTIME_USAGE_RATING): the period's volume tier.
    second_pass_tier integer,
    second_pass_amount_minor bigint,
    PRIMARY KEY (client_id, usage_id),
    FOREIGN KEY (client_id, bill_unit_id) REFERENCES ledger.bill_units,
    FOREIGN KEY (client_id, subscription_id, service_id) REFERENCES ledger.subscription_services
);

CREATE INDEX usage_records_bill_unit_idx
    ON ledger.usage_records (client_id, bill_unit_id, service_id);

-- Allowance and accumulator balances of one service in one bill unit. A new
-- period gets new rows: granting the allowance and resetting the accumulator
-- is inserting them, and the ended period's balances stay as they were.
CREATE TABLE ledger.balances (
    client_id text NOT NULL,
    bill_unit_id bigint NOT NULL,
    service_id text NOT NULL,
    -- ALLOWANCE: granted units and what is left. ACCUMULATOR: granted is 0,
    -- balance is the usage quantity accumulated in the period.
    balance_type text NOT NULL CHECK (balance_type IN ('ALLOWANCE', 'ACCUMULATOR')),
    granted bigint NOT NULL DEFAULT 0,
    balance bigint NOT NULL DEFAULT 0,
    grant_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, bill_unit_id, service_id, balance_type),
    FOREIGN KEY (client_id, bill_unit_id) REFERENCES ledger.bill_units
);

-- Monetized transactions, to be synchronized with core Aria.
CREATE TABLE ledger.transactions (
    client_id text NOT NULL,
    transaction_id bigint GENERATED ALWAYS AS IDENTITY,
    account_id text NOT NULL,
    subscription_id text,
    bill_unit_id bigint,
    service_id text,
    transaction_type text NOT NULL
        CHECK (transaction_type IN ('USAGE', 'USAGE_ADJ', 'TRUE_UP', 'RECURRING_FEE', 'CREDIT')),
    quantity bigint,
    -- Signed: a USAGE_ADJ that lowers the first pass is negative.
    amount_minor bigint NOT NULL,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- What the transaction is the one and only record of, e.g.
    -- TRUE_UP:BU42. Writers insert ON CONFLICT DO NOTHING, and core Aria
    -- receives the same key, so no retry applies anything twice.
    idempotency_key text NOT NULL,
    -- How the amount was arrived at (e.g. commitment and eligible usage).
    detail jsonb NOT NULL DEFAULT '{}',
    sync_status text NOT NULL DEFAULT 'PENDING' CHECK (sync_status IN ('PENDING', 'SYNCED', 'ERROR')),
    sync_attempts integer NOT NULL DEFAULT 0,
    sync_error_code text,
    sync_error_reason text,
    last_sync_time timestamptz,
    -- Core Aria's id of the transaction or order once synced.
    core_reference text,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, transaction_id),
    CONSTRAINT transactions_idempotency_key UNIQUE (client_id, idempotency_key),
    FOREIGN KEY (client_id, account_id) REFERENCES ledger.accounts
);

-- SYNC_TRANSACTION: unsynchronized usage transactions by account and
-- currency. Partial, so it holds only what is left to send.
CREATE INDEX transactions_usage_unsynced_idx
    ON ledger.transactions (client_id, account_id, currency, transaction_id)
    WHERE sync_status <> 'SYNCED' AND transaction_type IN ('USAGE', 'USAGE_ADJ');

-- SYNC_BILLING_TRANSACTIONS: unsynchronized true-ups.
CREATE INDEX transactions_true_up_unsynced_idx
    ON ledger.transactions (client_id, transaction_id)
    WHERE sync_status <> 'SYNCED' AND transaction_type = 'TRUE_UP';

-- BILLING: the monetized usage of a closing bill unit.
CREATE INDEX transactions_bill_unit_idx
    ON ledger.transactions (client_id, bill_unit_id)
    WHERE bill_unit_id IS NOT NULL;

-- What the stand-in core Aria service received. A real deployment talks to
-- core Aria and leaves these tables empty.
CREATE SCHEMA core_standin;

-- Usage transactions the stand-in accepted: one row per idempotency key.
CREATE TABLE core_standin.usage_transactions (
    client_id text NOT NULL,
    idempotency_key text NOT NULL,
    core_transaction_no bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    account_id text NOT NULL,
    transaction_type text NOT NULL,
    service_id text NOT NULL DEFAULT '',
    quantity bigint NOT NULL DEFAULT 0,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    ledger_transaction_id text NOT NULL DEFAULT '',
    -- How many times the key was received (replays included).
    receive_count integer NOT NULL DEFAULT 1,
    first_receive_time timestamptz NOT NULL DEFAULT now(),
    last_receive_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, idempotency_key)
);

-- True-up orders the stand-in created: one row per idempotency key.
CREATE TABLE core_standin.true_up_orders (
    client_id text NOT NULL,
    idempotency_key text NOT NULL,
    order_no bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    account_id text NOT NULL,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    period_start text NOT NULL DEFAULT '',
    period_end text NOT NULL DEFAULT '',
    minimum_commitment_minor bigint NOT NULL DEFAULT 0,
    eligible_usage_minor bigint NOT NULL DEFAULT 0,
    ledger_transaction_id text NOT NULL DEFAULT '',
    receive_count integer NOT NULL DEFAULT 1,
    first_receive_time timestamptz NOT NULL DEFAULT now(),
    last_receive_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, idempotency_key)
);

-- Requests the stand-in refused (injected rejections, idempotency
-- conflicts). Nothing was applied for them, so a later retry is judged anew.
CREATE TABLE core_standin.rejections (
    rejection_no bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id text NOT NULL,
    idempotency_key text NOT NULL,
    account_id text NOT NULL,
    -- USAGE_TRANSACTION or TRUE_UP_ORDER.
    request_kind text NOT NULL,
    error_code text NOT NULL,
    error_message text NOT NULL,
    receive_time timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rejections_client_idx ON core_standin.rejections (client_id, rejection_no);
