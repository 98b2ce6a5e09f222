-- Job schedule configurations: one row per configuration of a client.
CREATE TABLE job_schedule_configs (
    config_id uuid PRIMARY KEY,
    client_id text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    frequency text NOT NULL CHECK (frequency IN ('DAILY', 'SCHEDULED')),
    scheduled_time time,
    exception_start_time time,
    exception_end_time time,
    time_zone text NOT NULL DEFAULT 'UTC',
    recurrence_rule text,
    -- Ordered job list: [{"job_type": "BILLING", "manual": false}, ...]
    jobs jsonb NOT NULL CHECK (jsonb_typeof(jobs) = 'array' AND jsonb_array_length(jobs) > 0),
    automatic_runs_paused boolean NOT NULL DEFAULT false,
    -- Incremented on every update; the API's etag.
    version bigint NOT NULL DEFAULT 1,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_schedule_configs_exception_window_both
        CHECK ((exception_start_time IS NULL) = (exception_end_time IS NULL)),
    CONSTRAINT job_schedule_configs_client_name_key UNIQUE (client_id, name)
);

-- At most one DAILY configuration per client, enforced by the database.
CREATE UNIQUE INDEX job_schedule_configs_one_daily_per_client
    ON job_schedule_configs (client_id) WHERE frequency = 'DAILY';
