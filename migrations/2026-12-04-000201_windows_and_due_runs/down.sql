DROP INDEX batches_claimed_owner_idx;
DROP INDEX job_schedule_configs_next_start_idx;
ALTER TABLE job_schedule_configs DROP COLUMN next_start;
ALTER TABLE job_schedule_configs DROP COLUMN rule_start_date;
ALTER TABLE executions DROP COLUMN window_override;
