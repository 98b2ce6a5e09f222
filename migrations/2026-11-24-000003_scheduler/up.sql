-- The instant up to which the scheduler has considered a configuration's
-- automatic runs. Runs due after it and not later than now are started (or,
-- beyond the catch-up window, recorded as missed); then it moves to now.
ALTER TABLE job_schedule_configs
    ADD COLUMN scheduled_through timestamptz NOT NULL DEFAULT now();
