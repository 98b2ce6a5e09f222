ALTER TABLE job_schedule_configs DROP COLUMN scheduled_through;
