-- Executions: a configuration materialised for one business date.
CREATE TABLE executions (
    execution_id uuid PRIMARY KEY,
    client_id text NOT NULL,
    config_id uuid NOT NULL REFERENCES job_schedule_configs (config_id) ON DELETE CASCADE,
    config_name text NOT NULL,
    business_date date NOT NULL,
    status text NOT NULL DEFAULT 'PENDING',
    phase text NOT NULL DEFAULT 'NOT_STARTED',
    automatic boolean NOT NULL DEFAULT false,
    create_time timestamptz NOT NULL DEFAULT now(),
    start_time timestamptz,
    end_time timestamptz,
    CONSTRAINT executions_config_date_key UNIQUE (config_id, business_date)
);
CREATE INDEX executions_client_config_date_idx
    ON executions (client_id, config_id, business_date DESC);

-- The snapshotted jobs of an execution, with their state and counters.
CREATE TABLE job_runs (
    job_run_id bigserial PRIMARY KEY,
    execution_id uuid NOT NULL REFERENCES executions (execution_id) ON DELETE CASCADE,
    position integer NOT NULL,
    job_type text NOT NULL,
    manual boolean NOT NULL,
    released boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'PENDING',
    phase text NOT NULL DEFAULT 'WAITING',
    total bigint NOT NULL DEFAULT 0,
    processed bigint NOT NULL DEFAULT 0,
    errored bigint NOT NULL DEFAULT 0,
    -- Retry round: 1 for the first run, +1 per retry; an item's attempt number.
    round integer NOT NULL DEFAULT 1,
    -- The plan failed as a whole: a retry plans again.
    plan_failed boolean NOT NULL DEFAULT false,
    plan_owner uuid,
    plan_lease_until timestamptz,
    start_time timestamptz,
    end_time timestamptz,
    CONSTRAINT job_runs_execution_position_key UNIQUE (execution_id, position)
);
CREATE INDEX job_runs_active_idx ON job_runs (job_run_id)
    WHERE phase IN ('PLANNING', 'RUNNING', 'PAUSED_BY_WINDOW');

-- Work items, inserted in bulk when a job is planned. Never rewritten: a
-- processed item's status follows from its batch, an errored one has a row
-- in work_item_errors. (No foreign key: planning inserts hundreds of
-- thousands of rows at a time; the engine deletes them with their job run.)
CREATE TABLE work_items (
    job_run_id bigint NOT NULL,
    seq integer NOT NULL,
    account_id text NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (job_run_id, seq)
);

-- Batches: formed at planning as contiguous ranges of items (or, for a
-- retry, an explicit list), claimed under a lease with SKIP LOCKED.
CREATE TABLE batches (
    batch_id bigserial PRIMARY KEY,
    job_run_id bigint NOT NULL,
    first_seq integer NOT NULL,
    last_seq integer NOT NULL,
    seqs integer[],
    round integer NOT NULL DEFAULT 1,
    state text NOT NULL DEFAULT 'READY' CHECK (state IN ('READY', 'CLAIMED', 'DONE')),
    lease_owner uuid,
    lease_until timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    processed integer NOT NULL DEFAULT 0,
    errored integer NOT NULL DEFAULT 0,
    settle_time timestamptz
);
CREATE INDEX batches_open_idx ON batches (batch_id) WHERE state <> 'DONE';
CREATE INDEX batches_job_run_idx ON batches (job_run_id);

-- One row per errored attempt of a work item; `current` marks the item's
-- latest outcome while it is in ERROR (a retry clears it, keeping history).
CREATE TABLE work_item_errors (
    job_run_id bigint NOT NULL,
    seq integer NOT NULL,
    attempt integer NOT NULL,
    batch_id bigint NOT NULL,
    error_code text NOT NULL,
    reason text NOT NULL,
    current boolean NOT NULL DEFAULT true,
    settle_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_run_id, seq, attempt)
);
CREATE INDEX work_item_errors_current_idx
    ON work_item_errors (job_run_id, error_code, seq) WHERE current;

-- Errored items per code, kept as counters with the items.
CREATE TABLE job_run_error_counts (
    job_run_id bigint NOT NULL,
    error_code text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (job_run_id, error_code)
);

-- Every action taken on an execution.
CREATE TABLE execution_actions (
    action_id bigserial PRIMARY KEY,
    execution_id uuid NOT NULL REFERENCES executions (execution_id) ON DELETE CASCADE,
    kind text NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL DEFAULT '',
    job_position integer NOT NULL DEFAULT 0,
    outcome text NOT NULL,
    time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_actions_execution_idx ON execution_actions (execution_id, action_id);

-- Status events, written in the transaction of the change they describe,
-- numbered per client.
CREATE TABLE client_event_sequences (
    client_id text PRIMARY KEY,
    last_sequence bigint NOT NULL
);
CREATE TABLE execution_events (
    client_id text NOT NULL,
    sequence bigint NOT NULL,
    execution_id uuid NOT NULL,
    config_id uuid NOT NULL,
    business_date date NOT NULL,
    body jsonb NOT NULL,
    time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, sequence)
);
CREATE INDEX execution_events_time_idx ON execution_events (time);
