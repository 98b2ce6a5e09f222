-- Retention of executions: how long each client's executions are kept when
-- it differs from the service's default (--retention-days).
CREATE TABLE client_retention (
    client_id text PRIMARY KEY,
    retention_days integer NOT NULL CHECK (retention_days > 0)
);

-- Job runs of executions that retention has removed. Their work items,
-- batches and errors (which carry no foreign key) are deleted afterwards in
-- small bounded statements; the job run leaves this list when nothing of it
-- is left.
CREATE TABLE retention_backlog (
    job_run_id bigint PRIMARY KEY
);

-- Finds expired executions by date without a scan of every execution.
CREATE INDEX executions_business_date_idx ON executions (business_date);
