//! `JobScheduleConfigService`: create, read, list, update and delete job
//! schedule configurations, and preview their upcoming runs. Each handler
//! decodes and validates its request, calls one use case, and encodes.

use tonic::{Request, Response, Status};

use super::convert::{config_input, config_to_proto, timestamp};
use super::page_token::{self, PageTokens};
use super::{authorized_client, text, uuid};
use crate::proto::v1 as pb;
use crate::proto::v1::job_schedule_config_service_server::JobScheduleConfigService;
use crate::scheduling::domain::limits;
use crate::scheduling::usecases::configurations::{ConfigCursor, ConfigUpdate};
use crate::scheduling::usecases::UseCases;
use crate::scheduling::Error;

/// Serves configurations through the use cases.
pub struct ConfigApi {
    usecases: UseCases,
    tokens: PageTokens,
}

impl ConfigApi {
    /// A configuration service on the use cases, signing page tokens with
    /// `tokens`.
    pub fn new(usecases: UseCases, tokens: PageTokens) -> Self {
        Self { usecases, tokens }
    }
}

#[tonic::async_trait]
impl JobScheduleConfigService for ConfigApi {
    async fn create_job_schedule_config(
        &self,
        request: Request<pb::CreateJobScheduleConfigRequest>,
    ) -> Result<Response<pb::JobScheduleConfig>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let config = req
            .config
            .ok_or_else(|| Error::invalid("config", "required: the configuration to create"))?;
        if !config.client_id.is_empty() && config.client_id != client {
            return Err(
                Error::invalid("config.client_id", "must be empty or equal client_id").into(),
            );
        }
        let stored = self
            .usecases
            .create_config(&client, config_input(&config))
            .await?;
        Ok(Response::new(config_to_proto(stored)))
    }

    async fn get_job_schedule_config(
        &self,
        request: Request<pb::GetJobScheduleConfigRequest>,
    ) -> Result<Response<pb::JobScheduleConfig>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let config_id = uuid("config_id", &req.config_id)?;
        let config = self.usecases.get_config(&client, config_id).await?;
        Ok(Response::new(config_to_proto(config)))
    }

    async fn list_job_schedule_configs(
        &self,
        request: Request<pb::ListJobScheduleConfigsRequest>,
    ) -> Result<Response<pb::ListJobScheduleConfigsResponse>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let limit = page_token::page_size("page_size", req.page_size, 50, 1000)?;
        let scope = ["ListJobScheduleConfigs", client.as_str()];
        let after: Option<ConfigCursor> =
            self.tokens.decode("page_token", &req.page_token, &scope)?;
        let page = self
            .usecases
            .list_configs(&client, after, limit as usize)
            .await?;
        Ok(Response::new(pb::ListJobScheduleConfigsResponse {
            configs: page.items.into_iter().map(config_to_proto).collect(),
            next_page_token: page
                .next
                .map(|key| self.tokens.encode(&scope, &key))
                .unwrap_or_default(),
        }))
    }

    async fn update_job_schedule_config(
        &self,
        request: Request<pb::UpdateJobScheduleConfigRequest>,
    ) -> Result<Response<pb::JobScheduleConfig>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let config = req
            .config
            .ok_or_else(|| Error::invalid("config", "required: the new values"))?;
        let mask = req.update_mask.map(|m| m.paths).unwrap_or_default();
        limits::check_count("update_mask.paths", mask.len(), limits::MAX_MASK_PATHS)?;
        for (i, path) in mask.iter().enumerate() {
            text(&format!("update_mask.paths[{i}]"), limits::MASK_PATH, path)?;
        }
        let update = ConfigUpdate {
            config_id: uuid("config.config_id", &config.config_id)?,
            etag: text("config.etag", limits::ETAG, &config.etag)?.to_string(),
            mask,
            values: config_input(&config),
        };
        let stored = self.usecases.update_config(&client, update).await?;
        Ok(Response::new(config_to_proto(stored)))
    }

    async fn list_upcoming_runs(
        &self,
        request: Request<pb::ListUpcomingRunsRequest>,
    ) -> Result<Response<pb::ListUpcomingRunsResponse>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let config_id = uuid("config_id", &req.config_id)?;
        let count = match req.count {
            0 => 10,
            n if (1..=limits::MAX_UPCOMING_RUNS).contains(&n) => n as usize,
            _ => return Err(Error::invalid("count", "must be 1 to 366 (0 means 10)").into()),
        };
        let after = match req.after {
            None => None,
            Some(ts) => Some(limits::instant("after", ts.seconds, ts.nanos)?),
        };
        let (config, runs) = self
            .usecases
            .upcoming_runs(&client, config_id, after, count)
            .await?;
        let zone = config.draft.time_zone;
        Ok(Response::new(pb::ListUpcomingRunsResponse {
            runs: runs
                .into_iter()
                .map(|run| pb::UpcomingRun {
                    business_date: run.business_date.to_string(),
                    start_time: Some(timestamp(run.start)),
                    local_start_time: run.start.with_timezone(&zone).to_rfc3339(),
                    due_time: Some(timestamp(run.due)),
                })
                .collect(),
        }))
    }

    async fn delete_job_schedule_config(
        &self,
        request: Request<pb::DeleteJobScheduleConfigRequest>,
    ) -> Result<Response<()>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let config_id = uuid("config_id", &req.config_id)?;
        let etag = text("etag", limits::ETAG, &req.etag)?;
        self.usecases
            .delete_config(&client, config_id, etag)
            .await?;
        Ok(Response::new(()))
    }
}
