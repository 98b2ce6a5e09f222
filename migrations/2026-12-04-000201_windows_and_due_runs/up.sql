-- An operator may run an execution inside its configuration's exception
-- window; the batch claim honours it.
ALTER TABLE executions ADD COLUMN window_override boolean NOT NULL DEFAULT false;

-- The date a configuration's recurrence rule counts from (its DTSTART).
-- Existing configurations keep the anchor they were evaluated from until
-- now, 2000-01-01, so their run dates do not move; new ones default to the
-- day they are created.
ALTER TABLE job_schedule_configs ADD COLUMN rule_start_date date;
UPDATE job_schedule_configs SET rule_start_date = DATE '2000-01-01';
ALTER TABLE job_schedule_configs ALTER COLUMN rule_start_date SET NOT NULL,
    ALTER COLUMN rule_start_date SET DEFAULT CURRENT_DATE;

-- When the next automatic run of a configuration really starts (its due
-- instant, or the end of the exception window holding it); NULL when it has
-- no automatic run. The scheduler reads only rows due now. Existing rows are
-- due at once, so the first tick computes their next start.
ALTER TABLE job_schedule_configs ADD COLUMN next_start timestamptz;
UPDATE job_schedule_configs SET next_start = scheduled_through
    WHERE NOT automatic_runs_paused;
CREATE INDEX job_schedule_configs_next_start_idx
    ON job_schedule_configs (next_start) WHERE next_start IS NOT NULL;

-- Batches and plans whose owner process is dead (its liveness lock is free)
-- are taken over at once; this index finds the claimed ones.
CREATE INDEX batches_claimed_owner_idx ON batches (lease_owner)
    WHERE state = 'CLAIMED';
