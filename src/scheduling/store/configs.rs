//! Queries on `job_schedule_configs`, and the row models they use.

use chrono::{DateTime, NaiveTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::job_schedule_configs;
use super::DbError;
use crate::scheduling::domain::config::{
    parse_time_zone, ConfigDraft, ExceptionWindow, Frequency, JobScheduleConfig, JobSpec,
    RecurrenceRule,
};

/// Unique constraint on (client, name).
pub const UNIQUE_NAME: &str = "job_schedule_configs_client_name_key";
/// Partial unique index allowing one DAILY configuration per client.
pub const ONE_DAILY: &str = "job_schedule_configs_one_daily_per_client";

/// A row of `job_schedule_configs`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = job_schedule_configs, check_for_backend(diesel::pg::Pg))]
pub struct ConfigRow {
    config_id: Uuid,
    client_id: String,
    name: String,
    description: String,
    frequency: String,
    scheduled_time: Option<NaiveTime>,
    exception_start_time: Option<NaiveTime>,
    exception_end_time: Option<NaiveTime>,
    time_zone: String,
    recurrence_rule: Option<String>,
    jobs: serde_json::Value,
    automatic_runs_paused: bool,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

/// The columns a draft sets, on insert and on update.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = job_schedule_configs, treat_none_as_null = true)]
struct DraftColumns<'a> {
    name: &'a str,
    description: &'a str,
    frequency: &'a str,
    scheduled_time: Option<NaiveTime>,
    exception_start_time: Option<NaiveTime>,
    exception_end_time: Option<NaiveTime>,
    time_zone: &'a str,
    recurrence_rule: Option<&'a str>,
    jobs: serde_json::Value,
    automatic_runs_paused: bool,
}

impl<'a> DraftColumns<'a> {
    fn of(draft: &'a ConfigDraft) -> Self {
        Self {
            name: &draft.name,
            description: &draft.description,
            frequency: draft.frequency.as_str(),
            scheduled_time: draft.scheduled_time,
            exception_start_time: draft.exception_window.map(|w| w.start),
            exception_end_time: draft.exception_window.map(|w| w.end),
            time_zone: draft.time_zone.name(),
            recurrence_rule: draft.recurrence_rule.as_ref().map(|r| r.as_str()),
            jobs: serde_json::to_value(&draft.jobs).expect("jobs serialize"),
            automatic_runs_paused: draft.automatic_runs_paused,
        }
    }
}

impl TryFrom<ConfigRow> for JobScheduleConfig {
    type Error = DbError;

    fn try_from(row: ConfigRow) -> Result<Self, DbError> {
        let id = row.config_id;
        let corrupt =
            |what: &str, e: String| DbError::Corrupt(format!("config {id} has a bad {what}: {e}"));
        let frequency = Frequency::parse(&row.frequency)
            .ok_or_else(|| corrupt("frequency", row.frequency.clone()))?;
        let time_zone = parse_time_zone(&row.time_zone).map_err(|e| corrupt("time zone", e))?;
        let recurrence_rule = row
            .recurrence_rule
            .as_deref()
            .map(RecurrenceRule::parse)
            .transpose()
            .map_err(|e| corrupt("recurrence rule", e))?;
        let jobs: Vec<JobSpec> = serde_json::from_value(row.jobs.clone())
            .map_err(|e| corrupt("job list", e.to_string()))?;
        let exception_window = match (row.exception_start_time, row.exception_end_time) {
            (Some(start), Some(end)) => Some(ExceptionWindow { start, end }),
            _ => None,
        };
        Ok(JobScheduleConfig {
            config_id: row.config_id,
            client_id: row.client_id,
            draft: ConfigDraft {
                name: row.name,
                description: row.description,
                frequency,
                scheduled_time: row.scheduled_time,
                exception_window,
                time_zone,
                recurrence_rule,
                jobs,
                automatic_runs_paused: row.automatic_runs_paused,
            },
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// Inserts a new configuration of `client_id`. A unique violation names
/// [`UNIQUE_NAME`] or [`ONE_DAILY`].
/// Automatic runs are considered from `now` on.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    draft: &ConfigDraft,
    now: DateTime<Utc>,
) -> Result<ConfigRow, DbError> {
    let row = diesel::insert_into(job_schedule_configs::table)
        .values((
            job_schedule_configs::config_id.eq(Uuid::now_v7()),
            job_schedule_configs::client_id.eq(client_id),
            DraftColumns::of(draft),
            job_schedule_configs::scheduled_through.eq(now),
        ))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row)
}

/// The configuration `config_id` of `client_id`, if it exists.
pub async fn find(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    config_id: Uuid,
) -> Result<Option<ConfigRow>, DbError> {
    Ok(job_schedule_configs::table
        .filter(job_schedule_configs::client_id.eq(client_id))
        .filter(job_schedule_configs::config_id.eq(config_id))
        .select(ConfigRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The configuration `config_id` of `client_id`, parsed, if it exists.
pub async fn load(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    config_id: Uuid,
) -> Result<Option<JobScheduleConfig>, DbError> {
    find(conn, client_id, config_id)
        .await?
        .map(JobScheduleConfig::try_from)
        .transpose()
}

/// Up to `limit` configurations of `client_id` ordered by (name, id), after
/// the key `after` when given. Two fixed statements (first page, later
/// pages) rather than one built at run time, so each is prepared once per
/// connection and a page costs one round trip.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> Result<Vec<ConfigRow>, DbError> {
    let query = job_schedule_configs::table
        .filter(job_schedule_configs::client_id.eq(client_id))
        .select(ConfigRow::as_select())
        .order((job_schedule_configs::name, job_schedule_configs::config_id))
        .limit(limit);
    Ok(match after {
        None => query.load(conn).await?,
        Some((name, id)) => {
            query
                .filter(
                    job_schedule_configs::name
                        .gt(name.clone())
                        .or(job_schedule_configs::name
                            .eq(name)
                            .and(job_schedule_configs::config_id.gt(id))),
                )
                .load(conn)
                .await?
        }
    })
}

/// Replaces the content of a configuration if its version is still
/// `expected_version`; bumps the version. `None` when the configuration does
/// not exist at that version.
pub async fn update(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    config_id: Uuid,
    expected_version: i64,
    draft: &ConfigDraft,
) -> Result<Option<ConfigRow>, DbError> {
    Ok(diesel::update(job_schedule_configs::table)
        .filter(job_schedule_configs::client_id.eq(client_id))
        .filter(job_schedule_configs::config_id.eq(config_id))
        .filter(job_schedule_configs::version.eq(expected_version))
        .set((
            DraftColumns::of(draft),
            job_schedule_configs::version.eq(expected_version + 1),
            job_schedule_configs::update_time.eq(diesel::dsl::now),
        ))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// Starts considering automatic runs from `now` (when automatic runs are
/// switched back on: the paused period is not caught up).
pub async fn restart_schedule(
    conn: &mut AsyncPgConnection,
    config_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(job_schedule_configs::table.find(config_id))
        .set(job_schedule_configs::scheduled_through.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Configurations with automatic runs switched on, with the instant up to
/// which their runs were considered.
pub async fn automatic(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(ConfigRow, DateTime<Utc>)>, DbError> {
    Ok(job_schedule_configs::table
        .filter(job_schedule_configs::automatic_runs_paused.eq(false))
        .select((
            ConfigRow::as_select(),
            job_schedule_configs::scheduled_through,
        ))
        .load(conn)
        .await?)
}

/// Moves the schedule watermark forward (never back).
pub async fn advance_schedule(
    conn: &mut AsyncPgConnection,
    config_id: Uuid,
    to: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::sql_query(
        "UPDATE job_schedule_configs SET scheduled_through = GREATEST(scheduled_through, $2) \
         WHERE config_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(config_id)
    .bind::<diesel::sql_types::Timestamptz, _>(to)
    .execute(conn)
    .await?;
    Ok(())
}

/// Executions with work running or held, of configurations that have an
/// exception window: (execution, its configuration).
pub async fn windowed_running(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(Uuid, ConfigRow)>, DbError> {
    use super::schema::{executions, job_runs};
    Ok(executions::table
        .inner_join(job_schedule_configs::table)
        .filter(job_schedule_configs::exception_start_time.is_not_null())
        .filter(diesel::dsl::exists(
            job_runs::table
                .filter(job_runs::execution_id.eq(executions::execution_id))
                .filter(job_runs::phase.eq_any(["RUNNING", "PAUSED_BY_WINDOW"])),
        ))
        .select((executions::execution_id, ConfigRow::as_select()))
        .load(conn)
        .await?)
}

/// Deletes a configuration; whether a row was deleted.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    config_id: Uuid,
) -> Result<bool, DbError> {
    let n = diesel::delete(job_schedule_configs::table)
        .filter(job_schedule_configs::client_id.eq(client_id))
        .filter(job_schedule_configs::config_id.eq(config_id))
        .execute(conn)
        .await?;
    Ok(n > 0)
}
