DROP TABLE job_schedule_configs;
