// @generated automatically by Diesel CLI.

diesel::table! {
    job_schedule_configs (config_id) {
        config_id -> Uuid,
        client_id -> Text,
        name -> Text,
        description -> Text,
        frequency -> Text,
        scheduled_time -> Nullable<Time>,
        exception_start_time -> Nullable<Time>,
        exception_end_time -> Nullable<Time>,
        time_zone -> Text,
        recurrence_rule -> Nullable<Text>,
        jobs -> Jsonb,
        automatic_runs_paused -> Bool,
        version -> Int8,
        create_time -> Timestamptz,
        update_time -> Timestamptz,
    }
}
