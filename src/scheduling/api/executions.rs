//! `ExecutionService`: actions on executions, their statistics and the live
//! status stream.

use chrono::NaiveDate;
use tonic::{Request, Response, Status};

use super::convert;
use super::page_token::{self, PageTokens};
use super::{actor, client_id, date, manual_positions, text, uuid};
use crate::proto::v1 as pb;
use crate::proto::v1::execution_service_server::ExecutionService;
use crate::scheduling::domain::limits;
use crate::scheduling::domain::Error;
use crate::scheduling::engine::actions::{ActionOutcome, Actor, ExecutionKey};
use crate::scheduling::engine::Engine;
use crate::scheduling::store::executions::{self, LoadedExecution};
use crate::scheduling::store::work;
use crate::scheduling::watch::{self, EventHub, WatchMessage, WatchScope};
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use tokio_util::sync::CancellationToken;

/// The status stream's type.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

fn watch_event(message: WatchMessage) -> pb::WatchEvent {
    use crate::scheduling::domain::event::EventBody;
    use pb::watch_event::Kind;
    match message {
        WatchMessage::Snapshot {
            sequence,
            executions,
        } => pb::WatchEvent {
            sequence: sequence.max(0) as u64,
            time: Some(convert::timestamp(chrono::Utc::now())),
            kind: Some(Kind::Snapshot(pb::Snapshot {
                executions: executions.iter().map(convert::execution).collect(),
            })),
        },
        WatchMessage::ResyncRequired { oldest } => pb::WatchEvent {
            sequence: 0,
            time: Some(convert::timestamp(chrono::Utc::now())),
            kind: Some(Kind::ResyncRequired(pb::ResyncRequired {
                oldest_retained_sequence: oldest.max(0) as u64,
            })),
        },
        WatchMessage::Event {
            sequence,
            time,
            execution_id,
            config_id,
            business_date,
            body,
        } => {
            let (execution_id, config_id, business_date) = (
                execution_id.to_string(),
                config_id.to_string(),
                business_date.to_string(),
            );
            let counts = |c: crate::scheduling::domain::event::EventCounts| {
                convert::counts(crate::scheduling::domain::execution::Counts {
                    total: c.total,
                    processed: c.processed,
                    errored: c.errored,
                })
            };
            let status = |s: &str| {
                crate::scheduling::domain::execution::Status::parse(s)
                    .map(|s| convert::status(s) as i32)
                    .unwrap_or(0)
            };
            let kind = match body {
                EventBody::ExecutionChanged { status: st, phase } => {
                    Kind::ExecutionChanged(pb::ExecutionChanged {
                        execution_id,
                        config_id,
                        business_date,
                        status: status(&st),
                        phase: crate::scheduling::domain::execution::ExecutionPhase::parse(&phase)
                            .map(|p| convert::execution_phase(p) as i32)
                            .unwrap_or(0),
                    })
                }
                EventBody::JobChanged {
                    position,
                    status: st,
                    phase,
                    counts: c,
                } => Kind::JobChanged(pb::JobChanged {
                    execution_id,
                    config_id,
                    business_date,
                    position,
                    status: status(&st),
                    phase: crate::scheduling::domain::execution::JobPhase::parse(&phase)
                        .map(|p| convert::job_phase(p) as i32)
                        .unwrap_or(0),
                    counts: Some(counts(c)),
                }),
                EventBody::CountsChanged {
                    position,
                    counts: c,
                } => Kind::CountsChanged(pb::JobCountsChanged {
                    execution_id,
                    config_id,
                    business_date,
                    position,
                    counts: Some(counts(c)),
                }),
                EventBody::ActionTaken { action } => Kind::ActionTaken(pb::ActionTaken {
                    execution_id,
                    config_id,
                    business_date,
                    action: Some(convert::action(&action)),
                }),
            };
            pb::WatchEvent {
                sequence: sequence.max(0) as u64,
                time: Some(convert::timestamp(time)),
                kind: Some(kind),
            }
        }
    }
}

/// Serves executions from the engine.
pub struct ExecutionApi {
    engine: Engine,
    hub: EventHub,
    shutdown: CancellationToken,
    tokens: PageTokens,
}

impl ExecutionApi {
    /// An execution service on `engine`; status streams wake through `hub`
    /// and end when `shutdown` is cancelled; page tokens are signed with
    /// `tokens`.
    pub fn new(
        engine: Engine,
        hub: EventHub,
        shutdown: CancellationToken,
        tokens: PageTokens,
    ) -> Self {
        Self {
            engine,
            hub,
            shutdown,
            tokens,
        }
    }

    async fn load(&self, client: &str, key: ExecutionKey) -> Result<LoadedExecution, Error> {
        self.engine
            .get_execution(client, key.config_id, key.business_date)
            .await
    }

    /// The job run at `position` in one query; when there is none, tells
    /// NOT_FOUND (no execution) from INVALID_ARGUMENT (no such position).
    async fn stats_job_run(
        &self,
        conn: &mut crate::scheduling::store::Conn,
        client: &str,
        key: ExecutionKey,
        position: u32,
    ) -> Result<executions::JobRunRow, Error> {
        if position == 0 {
            return Err(Error::invalid(
                "position",
                "required: a job position from 1",
            ));
        }
        if let Some(run) =
            executions::job_run_at(conn, client, key.config_id, key.business_date, position).await?
        {
            return Ok(run);
        }
        let execution = self.load(client, key).await?;
        Self::job_run(&execution, position).cloned()
    }

    /// The job run at `position`, INVALID_ARGUMENT when there is none.
    fn job_run(
        execution: &LoadedExecution,
        position: u32,
    ) -> Result<&executions::JobRunRow, Error> {
        if position == 0 {
            return Err(Error::invalid(
                "position",
                "required: a job position from 1",
            ));
        }
        execution.job_run(position).ok_or_else(|| {
            Error::invalid(
                "position",
                format!(
                    "no job at position {position}; the execution has jobs 1 to {}",
                    execution.jobs.len()
                ),
            )
        })
    }
}

/// Decodes the (client, config, date) every execution request carries.
fn key(
    client: &str,
    config_id: &str,
    business_date: &str,
) -> Result<(String, ExecutionKey), Error> {
    let client = client_id(client)?;
    let config_id = uuid("config_id", config_id)?;
    let business_date = date("business_date", business_date)?;
    Ok((
        client,
        ExecutionKey {
            config_id,
            business_date,
        },
    ))
}

fn who<T>(request: &Request<T>, client: &str, reason: &str) -> Result<Actor, Error> {
    text("reason", limits::REASON, reason)?;
    Ok(Actor {
        client_id: client.to_string(),
        actor: actor(request)?,
        reason: reason.to_string(),
    })
}

fn answer(outcome: ActionOutcome) -> Response<pb::ExecutionActionResponse> {
    Response::new(pb::ExecutionActionResponse {
        execution: Some(convert::execution(&outcome.execution)),
        action: Some(convert::action(&outcome.action)),
        changed: outcome.changed,
    })
}

fn parse_optional_date(field: &str, value: &str) -> Result<Option<NaiveDate>, Error> {
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
        let r = request.into_inner();
        let client = client_id(&r.client_id)?;
        let config_id = if r.config_id.is_empty() {
            None
        } else {
            Some(uuid("config_id", &r.config_id)?)
        };
        let business_date = parse_optional_date("business_date", &r.business_date)?;
        if business_date.is_some() && config_id.is_none() {
            return Err(Error::invalid("config_id", "required with business_date").into());
        }
        let after_sequence = i64::try_from(r.after_sequence)
            .map_err(|_| Error::invalid("after_sequence", "too large"))?;
        let scope = WatchScope {
            client_id: client,
            config_id,
            business_date,
            after_sequence,
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<WatchMessage>(64);
        let engine = self.engine.clone();
        let hub = self.hub.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = watch::run(engine, hub, scope, tx, shutdown).await {
                tracing::warn!(error = %e, "watcher ended with an error");
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|m| Ok(watch_event(m)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create_execution(
        &self,
        request: Request<pb::CreateExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let r = request.get_ref();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let actor = who(&request, &client, &r.reason)?;
        let outcome = self
            .engine
            .create_execution(
                &actor,
                key,
                manual_positions(&r.manual_job_positions)?,
                false,
            )
            .await?;
        Ok(answer(outcome))
    }

    async fn recreate_execution(
        &self,
        request: Request<pb::RecreateExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let r = request.get_ref();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let actor = who(&request, &client, &r.reason)?;
        let outcome = self
            .engine
            .recreate_execution(
                &actor,
                key,
                manual_positions(&r.manual_job_positions)?.to_vec(),
            )
            .await?;
        Ok(answer(outcome))
    }

    async fn process_execution(
        &self,
        request: Request<pb::ProcessExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let r = request.get_ref();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let actor = who(&request, &client, &r.reason)?;
        let outcome = self
            .engine
            .process_execution(
                &actor,
                key,
                manual_positions(&r.manual_job_positions)?,
                false,
            )
            .await?;
        Ok(answer(outcome))
    }

    async fn reprocess_execution(
        &self,
        request: Request<pb::ReprocessExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let r = request.get_ref();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let actor = who(&request, &client, &r.reason)?;
        Ok(answer(self.engine.reprocess_execution(&actor, key).await?))
    }

    async fn reset_execution(
        &self,
        request: Request<pb::ResetExecutionRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let r = request.get_ref();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let actor = who(&request, &client, &r.reason)?;
        Ok(answer(
            self.engine
                .reset_execution(&actor, key, r.cancel_in_flight)
                .await?,
        ))
    }

    async fn trigger_job(
        &self,
        request: Request<pb::TriggerJobRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let r = request.get_ref();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let actor = who(&request, &client, &r.reason)?;
        limits::check_position("position", r.position)?;
        Ok(answer(
            self.engine.trigger_job(&actor, key, r.position).await?,
        ))
    }

    async fn retry_job(
        &self,
        request: Request<pb::RetryJobRequest>,
    ) -> Result<Response<pb::ExecutionActionResponse>, Status> {
        let r = request.get_ref();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let actor = who(&request, &client, &r.reason)?;
        limits::check_position("position", r.position)?;
        Ok(answer(
            self.engine.retry_job(&actor, key, r.position).await?,
        ))
    }

    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let r = request.into_inner();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let execution = self.load(&client, key).await?;
        Ok(Response::new(convert::execution(&execution)))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let r = request.into_inner();
        let client = client_id(&r.client_id)?;
        let config_id = uuid("config_id", &r.config_id)?;
        let start = parse_optional_date("start_date", &r.start_date)?;
        let end = parse_optional_date("end_date", &r.end_date)?;
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                return Err(Error::invalid("end_date", "must not be before start_date").into());
            }
        }
        let limit = page_token::page_size("page_size", r.page_size, 50, 1000)?;
        let scope = [
            "ListExecutions",
            client.as_str(),
            r.config_id.as_str(),
            r.start_date.as_str(),
            r.end_date.as_str(),
        ];
        let before: Option<NaiveDate> = self.tokens.decode("page_token", &r.page_token, &scope)?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let mut rows = executions::list(
            &mut conn,
            &client,
            config_id,
            (start, end),
            before,
            limit + 1,
        )
        .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => self.tokens.encode(&scope, &last.row.business_date),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: rows.iter().map(convert::execution).collect(),
            next_page_token,
        }))
    }

    async fn get_job_stats(
        &self,
        request: Request<pb::GetJobStatsRequest>,
    ) -> Result<Response<pb::JobStats>, Status> {
        let r = request.into_inner();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let run = self
            .stats_job_run(&mut conn, &client, key, r.position)
            .await?;
        let job = run.state()?;
        Ok(Response::new(pb::JobStats {
            position: job.position,
            job_type: job.job_type.clone(),
            status: convert::status(job.status) as i32,
            counts: Some(convert::counts(job.counts)),
        }))
    }

    async fn list_job_error_codes(
        &self,
        request: Request<pb::ListJobErrorCodesRequest>,
    ) -> Result<Response<pb::ListJobErrorCodesResponse>, Status> {
        let r = request.into_inner();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let run = self
            .stats_job_run(&mut conn, &client, key, r.position)
            .await?;
        let rows = work::error_counts(&mut conn, run.job_run_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListJobErrorCodesResponse {
            error_codes: rows
                .into_iter()
                .map(|row| pb::ErrorCodeCount {
                    error_code: row.error_code,
                    count: row.count.max(0) as u64,
                })
                .collect(),
        }))
    }

    async fn list_errored_work_items(
        &self,
        request: Request<pb::ListErroredWorkItemsRequest>,
    ) -> Result<Response<pb::ListErroredWorkItemsResponse>, Status> {
        let r = request.into_inner();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        text("error_code", limits::ERROR_CODE, &r.error_code)?;
        if r.error_code.is_empty() {
            return Err(Error::invalid(
                "error_code",
                "required: one of the codes ListJobErrorCodes returns",
            )
            .into());
        }
        let limit = page_token::page_size("page_size", r.page_size, 100, 1000)?;
        let position = r.position.to_string();
        let scope = [
            "ListErroredWorkItems",
            client.as_str(),
            r.config_id.as_str(),
            r.business_date.as_str(),
            position.as_str(),
            r.error_code.as_str(),
        ];
        let after: i32 = self
            .tokens
            .decode("page_token", &r.page_token, &scope)?
            .unwrap_or(0);
        let execution = self.load(&client, key).await?;
        let run = Self::job_run(&execution, r.position)?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let mut rows =
            work::errored_items(&mut conn, run.job_run_id, &r.error_code, after, limit + 1)
                .await
                .map_err(Error::from)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let seqs: Vec<i32> = rows
            .iter()
            .filter(|r| r.attempt > 1)
            .map(|r| r.seq)
            .collect();
        let history = if seqs.is_empty() {
            Vec::new()
        } else {
            work::history(&mut conn, run.job_run_id, &seqs)
                .await
                .map_err(Error::from)?
        };
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => self.tokens.encode(&scope, &last.seq),
            _ => String::new(),
        };
        let items = rows
            .into_iter()
            .map(|row| pb::ErroredWorkItem {
                work_item_id: i64::from(row.seq),
                account_id: row.account_id,
                batch_id: row.batch_id,
                error_code: row.error_code,
                reason: row.reason,
                status: pb::WorkItemStatus::Error as i32,
                payload_json: row.payload,
                attempts: row.attempt.max(1) as u32,
                history: history
                    .iter()
                    .filter(|h| h.seq == row.seq)
                    .map(|h| pb::WorkItemAttempt {
                        attempt: h.attempt as u32,
                        batch_id: h.batch_id,
                        error_code: h.error_code.clone(),
                        reason: h.reason.clone(),
                        time: Some(convert::timestamp(h.settle_time)),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListErroredWorkItemsResponse {
            items,
            next_page_token,
        }))
    }

    async fn list_execution_actions(
        &self,
        request: Request<pb::ListExecutionActionsRequest>,
    ) -> Result<Response<pb::ListExecutionActionsResponse>, Status> {
        let r = request.into_inner();
        let (client, key) = key(&r.client_id, &r.config_id, &r.business_date)?;
        let execution = self.load(&client, key).await?;
        let mut conn = self.engine.db().conn().await.map_err(Error::from)?;
        let actions = executions::actions(&mut conn, execution.row.execution_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListExecutionActionsResponse {
            actions: actions.iter().map(convert::action).collect(),
        }))
    }
}
