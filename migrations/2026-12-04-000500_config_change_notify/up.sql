-- Every change of a configuration notifies `allegro_configs` with its
-- client id at commit, from any replica or session, so that each process
-- drops its cached listing of that client (src/scheduling/watch/config_cache.rs).
-- PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION notify_config_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('allegro_configs', OLD.client_id);
    ELSE
        PERFORM pg_notify('allegro_configs', NEW.client_id);
        IF TG_OP = 'UPDATE' AND OLD.client_id <> NEW.client_id THEN
            PERFORM pg_notify('allegro_configs', OLD.client_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_schedule_configs_notify
    AFTER INSERT OR UPDATE OR DELETE ON job_schedule_configs
    FOR EACH ROW EXECUTE FUNCTION notify_config_change();
