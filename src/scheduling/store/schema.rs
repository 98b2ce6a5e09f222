//! Diesel table definitions, in `diesel print-schema` form.
#![allow(missing_docs)]

// @generated automatically by Diesel CLI.

diesel::table! {
    batches (batch_id) {
        batch_id -> Int8,
        job_run_id -> Int8,
        first_seq -> Int4,
        last_seq -> Int4,
        seqs -> Nullable<Array<Nullable<Int4>>>,
        round -> Int4,
        state -> Text,
        lease_owner -> Nullable<Uuid>,
        lease_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        processed -> Int4,
        errored -> Int4,
        settle_time -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    client_event_sequences (client_id) {
        client_id -> Text,
        last_sequence -> Int8,
    }
}

diesel::table! {
    api_keys (key_id) {
        key_id -> Text,
        client_id -> Text,
        name -> Text,
        role -> Text,
        clients -> Nullable<Array<Text>>,
        secret_hash -> Bytea,
        created_by -> Text,
        create_time -> Timestamptz,
        expire_time -> Nullable<Timestamptz>,
        revoke_time -> Nullable<Timestamptz>,
        last_use_time -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    execution_actions (action_id) {
        action_id -> Int8,
        execution_id -> Uuid,
        kind -> Text,
        actor -> Text,
        reason -> Text,
        job_position -> Int4,
        outcome -> Text,
        time -> Timestamptz,
        on_behalf_of -> Nullable<Text>,
        client_number -> Int8,
    }
}

diesel::table! {
    client_action_sequences (client_id) {
        client_id -> Text,
        last_number -> Int8,
    }
}

diesel::table! {
    execution_events (client_id, sequence) {
        client_id -> Text,
        sequence -> Int8,
        execution_id -> Uuid,
        config_id -> Uuid,
        business_date -> Date,
        body -> Jsonb,
        time -> Timestamptz,
    }
}

diesel::table! {
    executions (execution_id) {
        execution_id -> Uuid,
        client_id -> Text,
        config_id -> Uuid,
        config_name -> Text,
        business_date -> Date,
        status -> Text,
        phase -> Text,
        automatic -> Bool,
        create_time -> Timestamptz,
        start_time -> Nullable<Timestamptz>,
        end_time -> Nullable<Timestamptz>,
        window_override -> Bool,
    }
}

diesel::table! {
    job_run_error_counts (job_run_id, error_code) {
        job_run_id -> Int8,
        error_code -> Text,
        count -> Int8,
    }
}

diesel::table! {
    job_runs (job_run_id) {
        job_run_id -> Int8,
        execution_id -> Uuid,
        position -> Int4,
        job_type -> Text,
        manual -> Bool,
        released -> Bool,
        status -> Text,
        phase -> Text,
        total -> Int8,
        processed -> Int8,
        errored -> Int8,
        round -> Int4,
        plan_failed -> Bool,
        plan_owner -> Nullable<Uuid>,
        plan_lease_until -> Nullable<Timestamptz>,
        start_time -> Nullable<Timestamptz>,
        end_time -> Nullable<Timestamptz>,
    }
}

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
        scheduled_through -> Timestamptz,
        rule_start_date -> Date,
        next_start -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    work_item_errors (job_run_id, seq, attempt) {
        job_run_id -> Int8,
        seq -> Int4,
        attempt -> Int4,
        batch_id -> Int8,
        error_code -> Text,
        reason -> Text,
        current -> Bool,
        settle_time -> Timestamptz,
    }
}

diesel::table! {
    work_items (job_run_id, seq) {
        job_run_id -> Int8,
        seq -> Int4,
        account_id -> Text,
        payload -> Jsonb,
    }
}

diesel::joinable!(execution_actions -> executions (execution_id));
diesel::joinable!(executions -> job_schedule_configs (config_id));
diesel::joinable!(job_runs -> executions (execution_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    batches,
    client_event_sequences,
    execution_actions,
    execution_events,
    executions,
    job_run_error_counts,
    job_runs,
    job_schedule_configs,
    work_item_errors,
    work_items,
);
