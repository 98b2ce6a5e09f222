//! `ExecutionService`: actions on executions, their statistics and
//! drill-down, the action history and the live status stream. Each handler
//! decodes and validates its request, calls one use case, and encodes.

use std::pin::Pin;

use chrono::NaiveDate;
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert;
use super::execution_request::{action, read};
use super::page_token::{self, PageTokens};
use super::watch_event::watch_item;
use super::{authorized_client, date, manual_positions, position, text, uuid};
use crate::proto::v1 as pb;
use crate::proto::v1::execution_service_server::ExecutionService;
use crate::scheduling::domain::limits;
use crate::scheduling::usecases::execution_queries::ExecutionFilter;
use crate::scheduling::usecases::{ActionOutcome, UseCases};
use crate::scheduling::watch::WatchScope;
use crate::scheduling::Error;

/// The status stream's type.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

/// Serves executions through the use cases.
pub struct ExecutionApi {
    usecases: UseCases,
    tokens: PageTokens,
}

impl ExecutionApi {
    /// An execution service on the use cases, signing page tokens with
    /// `tokens`.
    pub fn new(usecases: UseCases, tokens: PageTokens) -> Self {
        Self { usecases, tokens }
    }
}

fn answer(outcome: ActionOutcome) -> Response<pb::ExecutionActionResponse> {
    Response::new(pb::ExecutionActionResponse {
        execution: Some(convert::execution(&outcome.execution)),
        action: Some(convert::action(&outcome.action)),
        changed: outcome.changed,
    })
}

fn optional_date(field: &str, value: &str) -> Result<Option<NaiveDate>, Error> {
    if value.is_empty() {
        Ok(None)
    } else {
        date(field, value).map(Some)
    }
}

#[tonic::async_trait]
impl ExecutionService for ExecutionApi {
    async fn watch_executions(
        &self,
        request: Request<pb::WatchExecutionsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let (_, extensions, r) = request.into_parts();
        let scope = WatchScope {
            client_id: authorized_client(&extensions, &r.client_id)?,
            config_id: match r.config_id.as_str() {
                "" => None,
                id => Some(uuid("config_id", id)?),
            },
            business_date: optional_date("business_date", &r.business_date)?,
            after_sequence: i64::try_from(r.after_sequence)
                .map_err(|_| Error::invalid("after_sequence", "too large"))?,
        };
        let rx = self.usecases.watch_executions(scope).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(watch_item);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create_execution(
        &self,
        request: Request<pb::CreateExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let (key, actor, r) = action(request)?;
        let manual = manual_positions(&r.manual_job_positions)?;
        Ok(answer(
            self.usecases
                .create_execution(&actor, &key, &manual)
                .await?,
        ))
    }

    async fn recreate_execution(
        &self,
        request: Request<pb::RecreateExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let (key, actor, r) = action(request)?;
        let manual = manual_positions(&r.manual_job_positions)?;
        Ok(answer(
            self.usecases
                .recreate_execution(&actor, &key, &manual)
                .await?,
        ))
    }

    async fn process_execution(
        &self,
        request: Request<pb::ProcessExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let (key, actor, r) = action(request)?;
        let manual = manual_positions(&r.manual_job_positions)?;
        Ok(answer(
            self.usecases
                .process_execution(&actor, &key, &manual, r.override_exception_window)
                .await?,
        ))
    }

    async fn reprocess_execution(
        &self,
        request: Request<pb::ReprocessExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let (key, actor, r) = action(request)?;
        Ok(answer(
            self.usecases
                .reprocess_execution(&actor, &key, r.override_exception_window)
                .await?,
        ))
    }

    async fn reset_execution(
        &self,
        request: Request<pb::ResetExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let (key, actor, r) = action(request)?;
        let cancel = r.cancel_in_flight;
        Ok(answer(
            self.usecases.reset_execution(&actor, &key, cancel).await?,
        ))
    }

    async fn trigger_job(
        &self,
        request: Request<pb::TriggerJobRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let (key, actor, r) = action(request)?;
        let position = position(r.position)?;
        Ok(answer(
            self.usecases
                .trigger_job(&actor, &key, position, r.override_exception_window)
                .await?,
        ))
    }

    async fn retry_job(
        &self,
        request: Request<pb::RetryJobRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let (key, actor, r) = action(request)?;
        let position = position(r.position)?;
        Ok(answer(
            self.usecases
                .retry_job(&actor, &key, position, r.override_exception_window)
                .await?,
        ))
    }

    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let (key, _) = read(request)?;
        let execution = self.usecases.get_execution(&key).await?;
        Ok(Response::new(convert::execution(&execution)))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let (_, extensions, r) = request.into_parts();
        let filter = ExecutionFilter {
            client_id: authorized_client(&extensions, &r.client_id)?,
            config_id: uuid("config_id", &r.config_id)?,
            start_date: optional_date("start_date", &r.start_date)?,
            end_date: optional_date("end_date", &r.end_date)?,
        };
        let limit = page_token::page_size("page_size", r.page_size, 50, 1000)?;
        let scope = [
            "ListExecutions",
            filter.client_id.as_str(),
            r.config_id.as_str(),
            r.start_date.as_str(),
            r.end_date.as_str(),
        ];
        let before: Option<NaiveDate> = self.tokens.decode("page_token", &r.page_token, &scope)?;
        let page = self
            .usecases
            .list_executions(&filter, before, limit as usize)
            .await?;
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: page.items.iter().map(convert::execution).collect(),
            next_page_token: page
                .next
                .map(|key| self.tokens.encode(&scope, &key))
                .unwrap_or_default(),
        }))
    }

    async fn get_job_stats(
        &self,
        request: Request<pb::GetJobStatsRequest>,
    ) -> Result<Response<pb::JobStats>, Status> {
        let (key, r) = read(request)?;
        let job = self.usecases.job_stats(&key, position(r.position)?).await?;
        Ok(Response::new(convert::job_stats(&job)))
    }

    async fn list_job_error_codes(
        &self,
        request: Request<pb::ListJobErrorCodesRequest>,
    ) -> Result<Response<pb::ListJobErrorCodesResponse>, Status> {
        let (key, r) = read(request)?;
        let codes = self
            .usecases
            .job_error_codes(&key, position(r.position)?)
            .await?;
        Ok(Response::new(pb::ListJobErrorCodesResponse {
            error_codes: codes.iter().map(convert::error_code_count).collect(),
        }))
    }

    async fn list_errored_work_items(
        &self,
        request: Request<pb::ListErroredWorkItemsRequest>,
    ) -> Result<Response<pb::ListErroredWorkItemsResponse>, Status> {
        let (key, r) = read(request)?;
        text("error_code", limits::ERROR_CODE, &r.error_code)?;
        let limit = page_token::page_size("page_size", r.page_size, 100, 1000)?;
        let at = position(r.position)?;
        let position = at.to_string();
        let scope = [
            "ListErroredWorkItems",
            key.client_id.as_str(),
            r.config_id.as_str(),
            r.business_date.as_str(),
            position.as_str(),
            r.error_code.as_str(),
            if r.include_resolved { "resolved" } else { "" },
        ];
        let after: Option<i32> = self.tokens.decode("page_token", &r.page_token, &scope)?;
        let page = self
            .usecases
            .drill_down_items(
                &key,
                at,
                &r.error_code,
                r.include_resolved,
                after,
                limit as usize,
            )
            .await?;
        Ok(Response::new(pb::ListErroredWorkItemsResponse {
            next_page_token: page
                .next
                .map(|key| self.tokens.encode(&scope, &key))
                .unwrap_or_default(),
            items: page
                .items
                .into_iter()
                .map(convert::errored_work_item)
                .collect(),
        }))
    }

    async fn list_execution_actions(
        &self,
        request: Request<pb::ListExecutionActionsRequest>,
    ) -> Result<Response<pb::ListExecutionActionsResponse>, Status> {
        let (key, _) = read(request)?;
        let actions = self.usecases.execution_actions(&key).await?;
        Ok(Response::new(pb::ListExecutionActionsResponse {
            actions: actions.iter().map(convert::action).collect(),
        }))
    }
}
