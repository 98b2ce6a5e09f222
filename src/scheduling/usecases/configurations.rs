//! Job schedule configurations: create, read, list, update with a field
//! mask and an etag, delete, and the upcoming automatic runs.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use uuid::Uuid;

use super::{load_config, Page, UseCases};
use crate::db::DbError;
use crate::scheduling::domain;
use crate::scheduling::domain::calendar::{self, UpcomingRun};
use crate::scheduling::domain::config::{ConfigDraft, ConfigInput, JobScheduleConfig};
use crate::scheduling::store::{configs, executions, work};
use crate::scheduling::watch::config_cache::{Listing, MAX_LISTED};
use crate::scheduling::Error;

/// Fields of a configuration an update mask may name.
pub const UPDATABLE_FIELDS: &[&str] = &[
    "description",
    "frequency",
    "scheduled_time",
    "exception_start_time",
    "exception_end_time",
    "time_zone",
    "recurrence_rule",
    "jobs",
    "automatic_runs_paused",
    "rule_start_date",
];

/// Where a listing of configurations continues: the last name. Names are
/// unique per client (a database constraint), so the name alone orders the
/// listing; a page is a range of that constraint's index.
pub type ConfigCursor = String;

/// The page of a whole listing after the configuration named `after`, or
/// `None` when that name is no longer listed: the listing is in the
/// database's collation order, which only the database can extend past a
/// name it does not hold.
fn page_of(
    all: &[JobScheduleConfig],
    after: Option<&str>,
    limit: usize,
) -> Option<Page<JobScheduleConfig, ConfigCursor>> {
    let start = match after {
        None => 0,
        Some(name) => all.iter().position(|c| c.draft.name == name)? + 1,
    };
    let end = all.len().min(start.saturating_add(limit).saturating_add(1));
    Some(Page::from_fetched(all[start..end].to_vec(), limit, |c| {
        c.draft.name.clone()
    }))
}

/// An upcoming automatic run as a reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledRun {
    /// The business date it processes.
    pub business_date: chrono::NaiveDate,
    /// When it falls due: the date at the scheduled time.
    pub due: DateTime<Utc>,
    /// When it really starts: `due`, or the end of the exception window
    /// holding it.
    pub start: DateTime<Utc>,
}

/// An update of a configuration as a front end received it.
#[derive(Debug, Clone)]
pub struct ConfigUpdate {
    /// Which configuration.
    pub config_id: Uuid,
    /// The etag the caller read; empty skips the check.
    pub etag: String,
    /// The fields to replace (`UPDATABLE_FIELDS`); empty replaces them all.
    pub mask: Vec<String>,
    /// The new values; fields outside the mask are ignored. Its name must be
    /// empty or the current name (names are immutable).
    pub values: ConfigInput,
}

impl UseCases {
    /// Creates a configuration of `client`.
    pub async fn create_config(
        &self,
        client: &str,
        input: ConfigInput,
    ) -> Result<JobScheduleConfig, Error> {
        let draft = self.validate(input)?;
        let mut conn = self.conn().await?;
        let inserted = configs::insert(&mut conn, client, &draft, self.engine.clock().now()).await;
        self.changed(client);
        let row = inserted.map_err(|e| conflict(e, client, &draft))?;
        let stored = JobScheduleConfig::try_from(row)?;
        tracing::info!(client, config_id = %stored.config_id, name = %stored.draft.name, "created job schedule config");
        Ok(stored)
    }

    /// The configuration `config_id` of `client`.
    pub async fn get_config(
        &self,
        client: &str,
        config_id: Uuid,
    ) -> Result<JobScheduleConfig, Error> {
        let mut conn = self.conn().await?;
        load_config(&mut conn, client, config_id).await
    }

    /// A page of `client`'s configurations by name, after `after`: from the
    /// process's cache of the client's whole listing when it holds one (see
    /// [`crate::scheduling::watch::config_cache`]), else from the database,
    /// filling the cache on the way when the client's listing is small
    /// enough to hold.
    pub async fn list_configs(
        &self,
        client: &str,
        after: Option<ConfigCursor>,
        limit: usize,
    ) -> Result<Page<JobScheduleConfig, ConfigCursor>, Error> {
        let cache = self.hub.configs();
        let listing = match cache.get(client) {
            Some(listing) => Some(listing),
            None => match cache.ticket() {
                Some(ticket) => {
                    let mut conn = self.conn().await?;
                    let fetch = MAX_LISTED as i64 + 1;
                    let all = configs::load_page(&mut conn, client, None, fetch).await?;
                    let listing = if all.len() > MAX_LISTED {
                        Listing::TooMany
                    } else {
                        Listing::Whole(all.into())
                    };
                    cache.fill(client, ticket, listing.clone());
                    Some(listing)
                }
                None => None,
            },
        };
        if let Some(Listing::Whole(all)) = listing {
            if let Some(page) = page_of(&all, after.as_deref(), limit) {
                return Ok(page);
            }
        }
        let mut conn = self.conn().await?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let configs = configs::load_page(&mut conn, client, after, fetch).await?;
        Ok(Page::from_fetched(configs, limit, |c| c.draft.name.clone()))
    }

    /// Updates the masked fields of a configuration, if the caller's etag
    /// is current. Switching automatic runs back on starts the schedule
    /// from now (the paused period is not caught up).
    pub async fn update_config(
        &self,
        client: &str,
        update: ConfigUpdate,
    ) -> Result<JobScheduleConfig, Error> {
        for (i, path) in update.mask.iter().enumerate() {
            if path == "name" {
                return Err(Error::invalid(
                    format!("update_mask.paths[{i}]"),
                    "name is immutable after create",
                ));
            }
            if !UPDATABLE_FIELDS.contains(&path.as_str()) {
                return Err(Error::invalid(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "not an updatable field; use one of {}",
                        UPDATABLE_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let mut conn = self.conn().await?;
        let current = load_config(&mut conn, client, update.config_id).await?;
        let new_name = update.values.name.trim();
        if !new_name.is_empty() && new_name != current.draft.name {
            return Err(Error::invalid(
                "config.name",
                "name is immutable after create",
            ));
        }
        check_etag(&update.etag, &current)?;
        let draft = self.validate(merge(current.to_input(), update.values, &update.mask))?;
        let now = self.engine.clock().now();
        let updated = configs::update(
            &mut conn,
            client,
            update.config_id,
            current.version,
            &draft,
            now,
        )
        .await;
        self.changed(client);
        let row = updated
            .map_err(|e| conflict(e, client, &draft))?
            .ok_or_else(|| {
                Error::aborted(
                    "CONCURRENT_UPDATE",
                    "the configuration changed while this update was applied; read it again \
                     and retry",
                )
            })?;
        let stored = JobScheduleConfig::try_from(row)?;
        if current.draft.automatic_runs_paused && !stored.draft.automatic_runs_paused {
            configs::restart_schedule(&mut conn, update.config_id, now).await?;
        }
        tracing::info!(client, config_id = %update.config_id, etag = %stored.etag(), "updated job schedule config");
        Ok(stored)
    }

    /// Deletes a configuration and its executions, if the caller's etag is
    /// current. Refused while one of its executions has work in flight.
    pub async fn delete_config(
        &self,
        client: &str,
        config_id: Uuid,
        etag: &str,
    ) -> Result<(), Error> {
        let mut conn = self.conn().await?;
        let current = load_config(&mut conn, client, config_id).await?;
        check_etag(etag, &current)?;
        let owner = client.to_string();
        let deleted = conn
            .transaction::<_, Error, _>(async move |conn| {
                let client = owner;
                if executions::config_has_running(conn, config_id).await? {
                    return Err(Error::precondition(
                        "EXECUTION_RUNNING",
                        "an execution of this configuration is running; wait for it, or reset it \
                     with cancel_in_flight, then delete",
                    ));
                }
                let runs = executions::job_run_ids_of_config(conn, config_id).await?;
                work::discard(conn, &runs).await?;
                if !configs::delete(conn, &client, config_id).await? {
                    return Err(Error::not_found(
                        "job schedule config",
                        config_id.to_string(),
                    ));
                }
                tracing::info!(client, config_id = %config_id, "deleted job schedule config");
                Ok(())
            })
            .await;
        self.changed(client);
        deleted
    }

    /// Drops the cached listing of `client` after one of its configurations
    /// was written (or a write was attempted): this process's next listing
    /// shows the change without waiting for the database's notification.
    fn changed(&self, client: &str) {
        self.hub.configs().invalidate(client);
    }

    /// The next `count` automatic runs of a configuration due after `after`
    /// (default: now), with the configuration (for its time zone). Each run
    /// carries its due instant and the instant it really starts (the end of
    /// the exception window when it falls due inside it).
    pub async fn upcoming_runs(
        &self,
        client: &str,
        config_id: Uuid,
        after: Option<DateTime<Utc>>,
        count: usize,
    ) -> Result<(JobScheduleConfig, Vec<ScheduledRun>), Error> {
        let config = self.get_config(client, config_id).await?;
        let after = after.unwrap_or_else(|| self.engine.clock().now());
        let runs = calendar::next_runs(&config.draft, after, count)
            .into_iter()
            .map(|run: UpcomingRun| ScheduledRun {
                business_date: run.business_date,
                due: run.start,
                start: calendar::effective_start(&config.draft, run.start),
            })
            .collect();
        Ok((config, runs))
    }

    /// The next `count` automatic runs a draft would have, before it is
    /// saved (a front end previews them as the operator types). The draft
    /// is validated as a create would validate it.
    pub fn preview_runs(
        &self,
        input: ConfigInput,
        count: usize,
    ) -> Result<Vec<UpcomingRun>, Error> {
        let draft = self.validate(input)?;
        Ok(calendar::next_runs(
            &draft,
            self.engine.clock().now(),
            count,
        ))
    }

    fn validate(&self, input: ConfigInput) -> Result<ConfigDraft, Error> {
        let known = self.engine.registry().names();
        let today = self.engine.clock().now().date_naive();
        Ok(ConfigDraft::validate(input, "config", &known, today)?)
    }
}

/// `current` with the fields of `mask` (all when empty) taken from `new`.
fn merge(mut current: ConfigInput, new: ConfigInput, mask: &[String]) -> ConfigInput {
    let wants = |field: &str| mask.is_empty() || mask.iter().any(|p| p == field);
    if wants("description") {
        current.description = new.description;
    }
    if wants("frequency") {
        current.frequency = new.frequency;
    }
    if wants("scheduled_time") {
        current.scheduled_time = new.scheduled_time;
    }
    if wants("exception_start_time") {
        current.exception_start_time = new.exception_start_time;
    }
    if wants("exception_end_time") {
        current.exception_end_time = new.exception_end_time;
    }
    if wants("time_zone") {
        current.time_zone = new.time_zone;
    }
    if wants("recurrence_rule") {
        current.recurrence_rule = new.recurrence_rule;
    }
    if wants("jobs") {
        current.jobs = new.jobs;
    }
    if wants("automatic_runs_paused") {
        current.automatic_runs_paused = new.automatic_runs_paused;
    }
    if wants("rule_start_date") && !(mask.is_empty() && new.rule_start_date.is_empty()) {
        current.rule_start_date = new.rule_start_date;
    }
    current
}

/// ABORTED when the caller's etag (if any) is not the current one.
fn check_etag(given: &str, current: &JobScheduleConfig) -> Result<(), Error> {
    if !given.is_empty() && given != current.etag() {
        return Err(Error::aborted(
            "ETAG_MISMATCH",
            format!(
                "the etag given is stale: the configuration is now at etag {:?}; read it again \
                 and retry",
                current.etag()
            ),
        ));
    }
    Ok(())
}

/// Turns a unique violation on write into the ALREADY_EXISTS the caller
/// should see.
fn conflict(error: DbError, client: &str, draft: &ConfigDraft) -> Error {
    let exists = |reason, field, message| {
        Error::from(domain::Error::AlreadyExists {
            reason,
            field,
            message,
        })
    };
    match error.unique_violation() {
        Some(configs::UNIQUE_NAME) => exists(
            "DUPLICATE_NAME",
            "config.name",
            format!(
                "config.name: client {client} already has a job schedule configuration named {:?}",
                draft.name
            ),
        ),
        Some(configs::ONE_DAILY) => exists(
            "DAILY_ALREADY_EXISTS",
            "config.frequency",
            format!(
                "config.frequency: client {client} already has a DAILY configuration; only one \
                 end-of-day schedule is allowed per client"
            ),
        ),
        _ => Error::Store(error),
    }
}
