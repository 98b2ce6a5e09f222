//! The execution fixture most integration tests share: a server with the
//! test job types, one configuration of client [`CLIENT`], and request
//! helpers for its executions.

use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use tonic::Request;

use crate::support::*;
use crate::test_jobs::{self, Controls};

/// The business date most fixtures use.
pub const DATE: &str = "2026-11-24";

pub struct Fixture {
    pub server: TestServer,
    pub controls: Controls,
    pub config_id: String,
}

pub async fn setup_with(jobs: &[(&str, bool)], batch_size: usize) -> Fixture {
    let url = fresh_database().await;
    let (registry, controls) = test_jobs::registry();
    let mut settings = test_settings(&url);
    settings.batch_size = batch_size;
    let server = TestServer::start_with(settings, registry).await;
    let mut config = daily("eod", &[]);
    config.jobs = jobs
        .iter()
        .map(|(t, manual)| pb::JobSpec {
            job_type: t.to_string(),
            manual: *manual,
        })
        .collect();
    let config_id = server.create_config(CLIENT, config).await;
    Fixture {
        server,
        controls,
        config_id,
    }
}

pub async fn setup(jobs: &[(&str, bool)]) -> Fixture {
    setup_with(jobs, 50).await
}

pub fn with_actor<T>(message: T, actor: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-actor", actor.parse().unwrap());
    request
}

impl Fixture {
    pub async fn process(&self, date: &str, manual: Vec<u32>) -> pb::ExecutionActionResponse {
        self.server
            .executions()
            .process_execution(with_actor(
                pb::ProcessExecutionRequest {
                    override_exception_window: false,
                    client_id: CLIENT.into(),
                    config_id: self.config_id.clone(),
                    business_date: date.into(),
                    manual_job_positions: manual,
                    reason: "test run".into(),
                },
                "ops@aria",
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn get(&self, date: &str) -> Result<pb::Execution, tonic::Status> {
        self.server
            .executions()
            .get_execution(pb::GetExecutionRequest {
                client_id: CLIENT.into(),
                config_id: self.config_id.clone(),
                business_date: date.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Polls until `done` holds (a guard of 60 s against hangs, not a timing
    /// assertion).
    pub async fn wait_for(
        &self,
        date: &str,
        done: impl Fn(&pb::Execution) -> bool,
    ) -> pb::Execution {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.get(date).await.unwrap();
            if done(&e) {
                return e;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "condition never held; last state: {e:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stats(&self, date: &str, position: u32) -> pb::JobStats {
        self.server
            .executions()
            .get_job_stats(pb::GetJobStatsRequest {
                client_id: CLIENT.into(),
                config_id: self.config_id.clone(),
                business_date: date.into(),
                position,
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn error_codes(&self, position: u32) -> Vec<(String, u64)> {
        self.server
            .executions()
            .list_job_error_codes(pb::ListJobErrorCodesRequest {
                client_id: CLIENT.into(),
                config_id: self.config_id.clone(),
                business_date: DATE.into(),
                position,
            })
            .await
            .unwrap()
            .into_inner()
            .error_codes
            .into_iter()
            .map(|c| (c.error_code, c.count))
            .collect()
    }

    pub async fn errored_items(
        &self,
        position: u32,
        code: &str,
        page_size: i32,
    ) -> Vec<pb::ErroredWorkItem> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .server
                .executions()
                .list_errored_work_items(pb::ListErroredWorkItemsRequest {
                    client_id: CLIENT.into(),
                    config_id: self.config_id.clone(),
                    business_date: DATE.into(),
                    position,
                    error_code: code.into(),
                    page_size,
                    page_token: token.clone(),
                    include_resolved: false,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.items.len() <= page_size as usize);
            items.extend(page.items);
            if page.next_page_token.is_empty() {
                return items;
            }
            token = page.next_page_token;
        }
    }

    pub async fn actions(&self, date: &str) -> Vec<pb::ExecutionAction> {
        self.server
            .executions()
            .list_execution_actions(pb::ListExecutionActionsRequest {
                client_id: CLIENT.into(),
                config_id: self.config_id.clone(),
                business_date: date.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .actions
    }
}

pub fn status(e: &pb::Execution) -> pb::Status {
    pb::Status::try_from(e.status).unwrap()
}

pub fn phase(e: &pb::Execution) -> pb::ExecutionPhase {
    pb::ExecutionPhase::try_from(e.phase).unwrap()
}

pub fn job_status(e: &pb::Execution, position: usize) -> pb::Status {
    pb::Status::try_from(e.jobs[position - 1].status).unwrap()
}

pub fn job_phase(e: &pb::Execution, position: usize) -> pb::JobPhase {
    pb::JobPhase::try_from(e.jobs[position - 1].phase).unwrap()
}

pub fn finished(e: &pb::Execution) -> bool {
    status(e) != pb::Status::Pending
}

pub fn counts(e: &pb::Execution, position: usize) -> (u64, u64, u64, u64) {
    let c = e.jobs[position - 1].counts.unwrap();
    (c.total, c.pending, c.processed, c.error)
}
