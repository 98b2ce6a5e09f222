//! `JobScheduleConfigService`: create, read, list, update and delete job
//! schedule configurations.

use std::collections::HashSet;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{config_input, config_to_proto};
use super::page_token::{self, PageTokens};
use super::{client_id, text, uuid};
use crate::proto::v1 as pb;
use crate::proto::v1::job_schedule_config_service_server::JobScheduleConfigService;
use crate::scheduling::domain::config::{ConfigDraft, JobScheduleConfig};
use crate::scheduling::domain::limits::{self, quote};
use crate::scheduling::domain::Error;
use crate::scheduling::engine::Engine;
use crate::scheduling::store::{configs, DbError};

/// Fields of `JobScheduleConfig` an update mask may name.
const UPDATABLE: &[&str] = &[
    "description",
    "frequency",
    "scheduled_time",
    "exception_start_time",
    "exception_end_time",
    "time_zone",
    "recurrence_rule",
    "jobs",
    "automatic_runs_paused",
];

/// Serves configurations from the store.
pub struct ConfigApi {
    engine: Engine,
    tokens: PageTokens,
}

impl ConfigApi {
    /// A configuration service on the engine's database and job registry,
    /// signing page tokens with `tokens`.
    pub fn new(engine: Engine, tokens: PageTokens) -> Self {
        Self { engine, tokens }
    }

    fn today(&self) -> chrono::NaiveDate {
        self.engine.clock().now().date_naive()
    }

    fn known_job_types(&self) -> HashSet<String> {
        self.engine.registry().names()
    }

    async fn load(&self, client: &str, config_id: Uuid) -> Result<JobScheduleConfig, Error> {
        let mut conn = self.engine.db().conn().await?;
        configs::load(&mut conn, client, config_id).await
    }
}

/// Turns a unique violation on write into the ALREADY_EXISTS the caller
/// should see.
fn conflict(error: DbError, client: &str, draft: &ConfigDraft) -> Error {
    match error.unique_violation() {
        Some(configs::UNIQUE_NAME) => Error::AlreadyExists {
            reason: "DUPLICATE_NAME",
            field: "config.name",
            message: format!(
                "config.name: client {client} already has a job schedule configuration named {:?}",
                draft.name
            ),
        },
        Some(configs::ONE_DAILY) => Error::AlreadyExists {
            reason: "DAILY_ALREADY_EXISTS",
            field: "config.frequency",
            message: format!(
                "config.frequency: client {client} already has a DAILY configuration; only one \
                 end-of-day schedule is allowed per client"
            ),
        },
        _ => Error::Store(error),
    }
}

fn check_etag(given: &str, current: &JobScheduleConfig) -> Result<(), Error> {
    limits::ETAG.check("etag", given)?;
    if !given.is_empty() && given != current.etag() {
        return Err(Error::Aborted {
            reason: "ETAG_MISMATCH",
            message: format!(
                "etag {} is stale: the configuration is now at etag {:?}; read it again \
                 and retry",
                quote(given),
                current.etag()
            ),
        });
    }
    Ok(())
}

#[tonic::async_trait]
impl JobScheduleConfigService for ConfigApi {
    async fn create_job_schedule_config(
        &self,
        request: Request<pb::CreateJobScheduleConfigRequest>,
    ) -> Result<Response<pb::JobScheduleConfig>, Status> {
        let req = request.into_inner();
        let client = client_id(&req.client_id)?;
        let config = req
            .config
            .ok_or_else(|| Error::invalid("config", "required: the configuration to create"))?;
        if !config.client_id.is_empty() && config.client_id != client {
            return Err(
                Error::invalid("config.client_id", "must be empty or equal client_id").into(),
            );
        }
        let draft = ConfigDraft::validate(
            config_input(&config),
            "config",
            &self.known_job_types(),
            self.today(),
        )?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let row = configs::insert(&mut conn, &client, &draft, self.engine.clock().now())
            .await
            .map_err(|e| conflict(e, &client, &draft))?;
        let stored: JobScheduleConfig = row.try_into()?;
        tracing::info!(client = %client, config_id = %stored.config_id, name = %stored.draft.name, "created job schedule config");
        Ok(Response::new(config_to_proto(&stored)))
    }

    async fn get_job_schedule_config(
        &self,
        request: Request<pb::GetJobScheduleConfigRequest>,
    ) -> Result<Response<pb::JobScheduleConfig>, Status> {
        let req = request.into_inner();
        let client = client_id(&req.client_id)?;
        let config_id = uuid("config_id", &req.config_id)?;
        let config = self.load(&client, config_id).await?;
        Ok(Response::new(config_to_proto(&config)))
    }

    async fn list_job_schedule_configs(
        &self,
        request: Request<pb::ListJobScheduleConfigsRequest>,
    ) -> Result<Response<pb::ListJobScheduleConfigsResponse>, Status> {
        let req = request.into_inner();
        let client = client_id(&req.client_id)?;
        let limit = page_token::page_size("page_size", req.page_size, 50, 1000)?;
        let scope = ["ListJobScheduleConfigs", client.as_str()];
        let after: Option<(String, Uuid)> =
            self.tokens.decode("page_token", &req.page_token, &scope)?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let mut rows = configs::list_page(&mut conn, &client, after, limit + 1)
            .await
            .map_err(Error::from)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let configs = rows
            .into_iter()
            .map(JobScheduleConfig::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = match (more, configs.last()) {
            (true, Some(last)) => self
                .tokens
                .encode(&scope, &(last.draft.name.clone(), last.config_id)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListJobScheduleConfigsResponse {
            configs: configs.iter().map(config_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_job_schedule_config(
        &self,
        request: Request<pb::UpdateJobScheduleConfigRequest>,
    ) -> Result<Response<pb::JobScheduleConfig>, Status> {
        let req = request.into_inner();
        let client = client_id(&req.client_id)?;
        let update = req
            .config
            .ok_or_else(|| Error::invalid("config", "required: the new values"))?;
        let config_id = uuid("config.config_id", &update.config_id)?;
        let paths: Vec<String> = req.update_mask.map(|m| m.paths).unwrap_or_default();
        limits::check_count("update_mask.paths", paths.len(), limits::MAX_MASK_PATHS)?;
        for (i, path) in paths.iter().enumerate() {
            text(&format!("update_mask.paths[{i}]"), limits::MASK_PATH, path)?;
            if path == "name" {
                return Err(Error::invalid(
                    format!("update_mask.paths[{i}]"),
                    "name is immutable after create",
                )
                .into());
            }
            if !UPDATABLE.contains(&path.as_str()) {
                return Err(Error::invalid(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "{} is not an updatable field; use one of {}",
                        quote(path),
                        UPDATABLE.join(", ")
                    ),
                )
                .into());
            }
        }
        let current = self.load(&client, config_id).await?;
        if !update.name.is_empty() && update.name.trim() != current.draft.name {
            return Err(Error::invalid("config.name", "name is immutable after create").into());
        }
        check_etag(&update.etag, &current)?;

        let mut merged = config_to_proto(&current);
        let replace_all = paths.is_empty();
        let wants = |field: &str| replace_all || paths.iter().any(|p| p == field);
        if wants("description") {
            merged.description = update.description;
        }
        if wants("frequency") {
            merged.frequency = update.frequency;
        }
        if wants("scheduled_time") {
            merged.scheduled_time = update.scheduled_time;
        }
        if wants("exception_start_time") {
            merged.exception_start_time = update.exception_start_time;
        }
        if wants("exception_end_time") {
            merged.exception_end_time = update.exception_end_time;
        }
        if wants("time_zone") {
            merged.time_zone = update.time_zone;
        }
        if wants("recurrence_rule") {
            merged.recurrence_rule = update.recurrence_rule;
        }
        if wants("jobs") {
            merged.jobs = update.jobs;
        }
        if wants("automatic_runs_paused") {
            merged.automatic_runs_paused = update.automatic_runs_paused;
        }
        let draft = ConfigDraft::validate(
            config_input(&merged),
            "config",
            &self.known_job_types(),
            self.today(),
        )?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let row = configs::update(&mut conn, &client, config_id, current.version, &draft)
            .await
            .map_err(|e| conflict(e, &client, &draft))?
            .ok_or_else(|| Error::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: "the configuration changed while this update was applied; read it \
                          again and retry"
                    .into(),
            })?;
        let stored: JobScheduleConfig = row.try_into()?;
        if current.draft.automatic_runs_paused && !stored.draft.automatic_runs_paused {
            configs::restart_schedule(&mut conn, config_id, self.engine.clock().now())
                .await
                .map_err(Error::from)?;
        }
        tracing::info!(client = %client, config_id = %config_id, etag = %stored.etag(), "updated job schedule config");
        Ok(Response::new(config_to_proto(&stored)))
    }

    async fn list_upcoming_runs(
        &self,
        request: Request<pb::ListUpcomingRunsRequest>,
    ) -> Result<Response<pb::ListUpcomingRunsResponse>, Status> {
        let req = request.into_inner();
        let client = client_id(&req.client_id)?;
        let config_id = uuid("config_id", &req.config_id)?;
        let count = match req.count {
            0 => 10,
            n if (1..=limits::MAX_UPCOMING_RUNS).contains(&n) => n as usize,
            _ => return Err(Error::invalid("count", "must be 1 to 366 (0 means 10)").into()),
        };
        let after = match req.after {
            None => self.engine.clock().now(),
            Some(ts) => limits::instant("after", ts.seconds, ts.nanos)?,
        };
        let config = self.load(&client, config_id).await?;
        let runs = crate::scheduling::domain::calendar::next_runs(&config.draft, after, count)
            .into_iter()
            .map(|run| pb::UpcomingRun {
                business_date: run.business_date.to_string(),
                start_time: Some(super::convert::timestamp(run.start)),
                local_start_time: run
                    .start
                    .with_timezone(&config.draft.time_zone)
                    .to_rfc3339(),
            })
            .collect();
        Ok(Response::new(pb::ListUpcomingRunsResponse { runs }))
    }

    async fn delete_job_schedule_config(
        &self,
        request: Request<pb::DeleteJobScheduleConfigRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let client = client_id(&req.client_id)?;
        let config_id = uuid("config_id", &req.config_id)?;
        let current = self.load(&client, config_id).await?;
        check_etag(&req.etag, &current)?;
        self.engine.delete_config(&client, config_id).await?;
        tracing::info!(client = %client, config_id = %config_id, "deleted job schedule config");
        Ok(Response::new(()))
    }
}
