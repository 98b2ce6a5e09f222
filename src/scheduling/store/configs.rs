//! Queries on `job_schedule_configs`, and the row models they use.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::job_schedule_configs;
use super::DbError;
use crate::scheduling::domain::calendar;
use crate::scheduling::domain::config::{
    parse_time_zone, ConfigDraft, ExceptionWindow, Frequency, JobScheduleConfig, JobSpec,
    RecurrenceRule,
};
use crate::scheduling::domain::execution::ExecutionPhase;

/// Unique constraint on (client, name).
pub const UNIQUE_NAME: &str = "job_schedule_configs_client_name_key";
/// Partial unique index allowing one DAILY configuration per client.
pub const ONE_DAILY: &str = "job_schedule_configs_one_daily_per_client";

/// A row of `job_schedule_configs`.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
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
    jobs: StoredJobs,
    automatic_runs_paused: bool,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    rule_start_date: NaiveDate,
    scheduled_through: DateTime<Utc>,
}

/// The `jobs` column read straight into job specs (no intermediate JSON
/// tree: a configuration list decodes one per row); a list that does not
/// parse is kept as its error, for the row's conversion to report.
#[derive(Debug, Clone, diesel::deserialize::FromSqlRow)]
pub struct StoredJobs(Result<Vec<JobSpec>, String>);

impl diesel::deserialize::FromSql<diesel::sql_types::Jsonb, diesel::pg::Pg> for StoredJobs {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        // JSONB's binary form: a version byte (1), then the JSON text.
        let parsed = match value.as_bytes().split_first() {
            Some((1, json)) => serde_json::from_slice(json).map_err(|e| e.to_string()),
            _ => Err("not JSONB version 1".to_string()),
        };
        Ok(StoredJobs(parsed))
    }
}

impl ConfigRow {
    /// The instant up to which the scheduler considered its automatic runs.
    pub fn scheduled_through(&self) -> DateTime<Utc> {
        self.scheduled_through
    }
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
    rule_start_date: NaiveDate,
    next_start: Option<DateTime<Utc>>,
}

impl<'a> DraftColumns<'a> {
    /// The columns of `draft` saved at `now`: the rule counts from the
    /// draft's start date, else from `now`'s date in the configuration's
    /// zone; a configuration with automatic runs is due for the scheduler to
    /// compute its next start at once.
    fn of(draft: &'a ConfigDraft, now: DateTime<Utc>) -> Self {
        Self {
            name: &draft.name,
            description: &draft.description,
            frequency: draft.frequency.as_str(),
            scheduled_time: draft.scheduled_time,
            exception_start_time: draft.exception_window.map(|w| w.start),
            exception_end_time: draft.exception_window.map(|w| w.end),
            time_zone: draft.time_zone.name(),
            recurrence_rule: draft.recurrence_rule.as_ref().map(|r| r.as_str()),
            // Invariant: a job list is strings and booleans.
            #[allow(clippy::expect_used)]
            jobs: serde_json::to_value(&draft.jobs).expect("jobs serialize"),
            automatic_runs_paused: draft.automatic_runs_paused,
            rule_start_date: draft
                .rule_start_date
                .unwrap_or_else(|| now.with_timezone(&draft.time_zone).date_naive()),
            next_start: calendar::has_automatic_runs(draft).then_some(now),
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
        let jobs = row.jobs.0.map_err(|e| corrupt("job list", e))?;
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
                rule_start_date: Some(row.rule_start_date),
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
            DraftColumns::of(draft, now),
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

/// Up to `limit` configurations of `client_id` ordered by name, after the
/// name `after` when given. Names are unique per client
/// (`job_schedule_configs_client_name_key`), so the name alone orders the
/// listing totally and a page is a range of that key's index. Two
/// fixed statements (first page, later pages) rather than one built at run
/// time, so each is prepared once per connection and a page costs one round
/// trip.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<ConfigRow>, DbError> {
    let query = job_schedule_configs::table
        .filter(job_schedule_configs::client_id.eq(client_id))
        .select(ConfigRow::as_select())
        .order(job_schedule_configs::name)
        .limit(limit);
    Ok(match after {
        None => query.load(conn).await?,
        Some(name) => {
            query
                .filter(job_schedule_configs::name.gt(name))
                .load(conn)
                .await?
        }
    })
}

/// [`list_page`], parsed.
pub async fn load_page(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<JobScheduleConfig>, DbError> {
    list_page(conn, client_id, after, limit)
        .await?
        .into_iter()
        .map(JobScheduleConfig::try_from)
        .collect()
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
    now: DateTime<Utc>,
) -> Result<Option<ConfigRow>, DbError> {
    Ok(diesel::update(job_schedule_configs::table)
        .filter(job_schedule_configs::client_id.eq(client_id))
        .filter(job_schedule_configs::config_id.eq(config_id))
        .filter(job_schedule_configs::version.eq(expected_version))
        .set((
            DraftColumns::of(draft, now),
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

/// Takes up to `limit` configurations whose next start is due at `now`,
/// earliest first, and moves their next start to `retry_at` so that other
/// processes skip them (and this one looks again then if it dies before
/// [`finish_schedule`]). `SKIP LOCKED`: replicas share the due rows. One
/// statement, writing nothing, when nothing is due.
pub async fn take_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ConfigRow>, DbError> {
    use diesel::sql_types::{BigInt, Timestamptz};
    Ok(diesel::sql_query(
        "UPDATE job_schedule_configs c SET next_start = $2 \
         FROM (SELECT config_id FROM job_schedule_configs \
               WHERE next_start IS NOT NULL AND next_start <= $1 \
               ORDER BY next_start LIMIT $3 FOR UPDATE SKIP LOCKED) d \
         WHERE c.config_id = d.config_id \
         RETURNING c.*",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(retry_at)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Records what the scheduler did with a configuration it took: moves the
/// watermark forward (never back) and stores its next start, unless the
/// configuration was updated meanwhile (`version` moved on; the update set
/// its own next start).
pub async fn finish_schedule(
    conn: &mut AsyncPgConnection,
    config_id: Uuid,
    version: i64,
    watermark: DateTime<Utc>,
    next_start: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    use diesel::sql_types::{BigInt, Nullable, Timestamptz};
    diesel::sql_query(
        "UPDATE job_schedule_configs SET scheduled_through = GREATEST(scheduled_through, $2), \
             next_start = CASE WHEN version = $3 THEN $4 ELSE next_start END \
         WHERE config_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(config_id)
    .bind::<Timestamptz, _>(watermark)
    .bind::<BigInt, _>(version)
    .bind::<Nullable<Timestamptz>, _>(next_start)
    .execute(conn)
    .await?;
    Ok(())
}

/// An execution with work running or held by its configuration's
/// exception window.
pub struct WindowedExecution {
    /// The execution.
    pub execution_id: Uuid,
    /// Whether its work is held now (phase PAUSED_BY_WINDOW).
    pub held: bool,
    /// Whether an operator let it run inside the window.
    pub window_override: bool,
    /// Its configuration.
    pub config: ConfigRow,
}

/// Executions with work running or held, of configurations that have an
/// exception window.
pub async fn windowed_running(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<WindowedExecution>, DbError> {
    use super::schema::{executions, job_runs};
    Ok(executions::table
        .inner_join(job_schedule_configs::table)
        .filter(job_schedule_configs::exception_start_time.is_not_null())
        .filter(diesel::dsl::exists(
            job_runs::table
                .filter(job_runs::execution_id.eq(executions::execution_id))
                .filter(job_runs::phase.eq_any(["RUNNING", "PAUSED_BY_WINDOW"])),
        ))
        .select((
            executions::execution_id,
            executions::phase,
            executions::window_override,
            ConfigRow::as_select(),
        ))
        .load::<(Uuid, String, bool, ConfigRow)>(conn)
        .await?
        .into_iter()
        .map(
            |(execution_id, phase, window_override, config)| WindowedExecution {
                execution_id,
                held: phase == ExecutionPhase::PausedByWindow.as_str(),
                window_override,
                config,
            },
        )
        .collect())
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
