DROP TRIGGER job_schedule_configs_notify ON job_schedule_configs;
DROP FUNCTION notify_config_change();
