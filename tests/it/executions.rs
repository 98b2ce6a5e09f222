//! Executions through gRPC: every action and status transition, the
//! drill-down, and bad inputs.

use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use tonic::{Code, Request};

use crate::support::*;
use crate::test_jobs::{self, Controls};

const DATE: &str = "2026-11-24";

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
    let config_id = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "acme".into(),
            config: Some(config),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
    Fixture {
        server,
        controls,
        config_id,
    }
}

pub async fn setup(jobs: &[(&str, bool)]) -> Fixture {
    setup_with(jobs, 50).await
}

fn with_actor<T>(message: T, actor: &str) -> Request<T> {
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
                    client_id: "acme".into(),
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
                client_id: "acme".into(),
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
                client_id: "acme".into(),
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
                client_id: "acme".into(),
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
                    client_id: "acme".into(),
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
                client_id: "acme".into(),
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

#[tokio::test]
async fn a_daily_schedule_with_no_work_items_completes() {
    let fx = setup(&[("EMPTY", false), ("EMPTY", false)]).await;
    let started = fx.process(DATE, vec![]).await;
    assert!(started.changed);
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(phase(&e), pb::ExecutionPhase::Done);
    for p in 1..=2 {
        assert_eq!(job_status(&e, p), pb::Status::Completed);
        assert_eq!(counts(&e, p), (0, 0, 0, 0));
    }
    assert!(e.end_time.is_some());
    fx.server.stop().await;
}

#[tokio::test]
async fn jobs_run_in_order_and_counts_match_the_items() {
    let fx = setup(&[("ITEMS_120", false), ("ITEMS_75", false)]).await;
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (120, 0, 120, 0));
    assert_eq!(counts(&e, 2), (75, 0, 75, 0));
    let end_1 = e.jobs[0].end_time.unwrap();
    let start_2 = e.jobs[1].start_time.unwrap();
    assert!(
        (end_1.seconds, end_1.nanos) <= (start_2.seconds, start_2.nanos),
        "job 2 starts after job 1 settles"
    );
    let stats = fx.stats(DATE, 1).await;
    assert_eq!(stats.job_type, "ITEMS_120");
    assert_eq!(stats.counts.unwrap().processed, 120);

    // Processing again is idempotent and says so.
    let again = fx.process(DATE, vec![]).await;
    assert!(!again.changed);
    assert!(again.action.unwrap().outcome.contains("nothing done"));
    fx.server.stop().await;
}

#[tokio::test]
async fn a_manual_job_waits_for_its_trigger() {
    let fx = setup(&[("ITEMS_75", false), ("ITEMS_120", true)]).await;
    fx.process(DATE, vec![]).await;
    let e = fx
        .wait_for(DATE, |e| phase(e) == pb::ExecutionPhase::AwaitingTrigger)
        .await;
    assert_eq!(status(&e), pb::Status::Pending);
    assert_eq!(job_status(&e, 1), pb::Status::Completed);
    assert_eq!(job_status(&e, 2), pb::Status::Pending);
    assert_eq!(job_phase(&e, 2), pb::JobPhase::AwaitingTrigger);
    assert_eq!(
        counts(&e, 2),
        (0, 0, 0, 0),
        "nothing planned before the trigger"
    );

    let triggered = fx
        .server
        .executions()
        .trigger_job(with_actor(
            pb::TriggerJobRequest {
                client_id: "acme".into(),
                config_id: fx.config_id.clone(),
                business_date: DATE.into(),
                position: 2,
                reason: "reviewed".into(),
            },
            "reviewer",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(triggered.changed);
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 2), (120, 0, 120, 0));

    let again = fx
        .server
        .executions()
        .trigger_job(pb::TriggerJobRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 2,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(reason(&again), "JOB_COMPLETED");
    fx.server.stop().await;
}

#[tokio::test]
async fn jobs_can_be_designated_manual_for_one_execution() {
    let fx = setup(&[("ITEMS_75", false), ("EMPTY", false)]).await;
    fx.process(DATE, vec![1]).await;
    let e = fx
        .wait_for(DATE, |e| phase(e) == pb::ExecutionPhase::AwaitingTrigger)
        .await;
    assert!(e.jobs[0].manual);
    assert_eq!(job_phase(&e, 1), pb::JobPhase::AwaitingTrigger);
    // Another date of the same configuration is not affected.
    fx.process("2026-11-25", vec![]).await;
    let other = fx.wait_for("2026-11-25", finished).await;
    assert_eq!(status(&other), pb::Status::Completed);
    assert!(!other.jobs[0].manual);
    fx.server.stop().await;
}

#[tokio::test]
async fn an_errored_job_pauses_the_schedule_and_the_drill_down_matches_the_items() {
    let fx = setup(&[("FLAKY", false), ("ITEMS_75", false)]).await;
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Error);
    assert_eq!(phase(&e), pb::ExecutionPhase::StoppedOnError);
    assert_eq!(job_status(&e, 1), pb::Status::Error);
    assert_eq!(job_status(&e, 2), pb::Status::Pending);
    assert_eq!(job_phase(&e, 2), pb::JobPhase::Waiting);

    // FLAKY: 200 items; multiples of 50 fail with TIER_GAP (4), other
    // multiples of 7 with ACCOUNT_INACTIVE.
    let tier_gap: Vec<usize> = (1..=200).filter(|i| i % 50 == 0).collect();
    let inactive: Vec<usize> = (1..=200).filter(|i| i % 50 != 0 && i % 7 == 0).collect();
    let errors = (tier_gap.len() + inactive.len()) as u64;
    assert_eq!(counts(&e, 1), (200, 0, 200 - errors, errors));
    assert_eq!(
        fx.error_codes(1).await,
        [
            ("ACCOUNT_INACTIVE".to_string(), inactive.len() as u64),
            ("TIER_GAP".to_string(), tier_gap.len() as u64)
        ]
    );
    let items = fx.errored_items(1, "ACCOUNT_INACTIVE", 10).await;
    let accounts: Vec<String> = items.iter().map(|i| i.account_id.clone()).collect();
    let expected: Vec<String> = inactive.iter().map(|i| test_jobs::account(*i)).collect();
    assert_eq!(accounts, expected);
    let first = &items[0];
    assert_eq!(first.status, pb::WorkItemStatus::Error as i32);
    assert_eq!(first.error_code, "ACCOUNT_INACTIVE");
    assert!(first.reason.contains("ACC-00007"));
    assert!(first.batch_id > 0);
    assert_eq!(first.attempts, 1);
    let payload: serde_json::Value = serde_json::from_str(&first.payload_json).unwrap();
    assert_eq!(payload["index"], 7);
    assert_eq!(payload["business_date"], DATE);
    assert!(fx.errored_items(1, "NO_SUCH_CODE", 10).await.is_empty());

    // Retrying before fixing: the same items fail again, with history.
    let retried = fx
        .server
        .executions()
        .retry_job(pb::RetryJobRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 1,
            reason: "first try".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retried
        .action
        .unwrap()
        .outcome
        .contains(&format!("re-queued {errors}")));
    let e = fx
        .wait_for(DATE, |e| finished(e) && counts(e, 1).3 == errors)
        .await;
    assert_eq!(status(&e), pb::Status::Error);
    assert_eq!(
        counts(&e, 1),
        (200, 0, 200 - errors, errors),
        "processed items are not re-run"
    );
    let again = fx.errored_items(1, "TIER_GAP", 100).await;
    assert_eq!(again.len(), tier_gap.len());
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].history.len(), 1);
    assert_eq!(again[0].history[0].attempt, 1);
    assert_eq!(again[0].history[0].error_code, "TIER_GAP");

    // Resolve the underlying error, Retry: the job completes and the
    // schedule continues with job 2.
    fx.controls.flaky.apply();
    fx.server
        .executions()
        .retry_job(pb::RetryJobRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 1,
            reason: "fixed accounts".into(),
        })
        .await
        .unwrap();
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (200, 0, 200, 0));
    assert_eq!(counts(&e, 2), (75, 0, 75, 0));
    assert!(fx.error_codes(1).await.is_empty());
    fx.server.stop().await;
}

#[tokio::test]
async fn reprocess_retries_the_first_errored_job() {
    let fx = setup(&[("EMPTY", false), ("FLAKY", false), ("EMPTY", false)]).await;
    let not_yet = fx
        .server
        .executions()
        .reprocess_execution(pb::ReprocessExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_yet.code(), Code::NotFound);
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(job_status(&e, 2), pb::Status::Error);
    fx.controls.flaky.apply();
    let reprocessed = fx
        .server
        .executions()
        .reprocess_execution(pb::ReprocessExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            reason: "resolved".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reprocessed.action.as_ref().unwrap().job_position, 2);
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(job_status(&e, 3), pb::Status::Completed);
    let nothing = fx
        .server
        .executions()
        .reprocess_execution(pb::ReprocessExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(nothing.code(), Code::FailedPrecondition);
    assert_eq!(reason(&nothing), "EXECUTION_NOT_IN_ERROR");
    fx.server.stop().await;
}

#[tokio::test]
async fn a_failed_plan_shows_in_the_drill_down_and_retry_plans_again() {
    let fx = setup(&[("PLAN_FAILS", false)]).await;
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Error);
    assert_eq!(counts(&e, 1), (1, 0, 0, 1));
    assert_eq!(
        fx.error_codes(1).await,
        [("RATE_SCHEDULE_NOT_FOUND".to_string(), 1)]
    );
    let items = fx.errored_items(1, "RATE_SCHEDULE_NOT_FOUND", 10).await;
    assert!(items[0].reason.contains("planning failed"));
    fx.controls.plan.apply();
    fx.server
        .executions()
        .retry_job(pb::RetryJobRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 1,
            reason: String::new(),
        })
        .await
        .unwrap();
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (10, 0, 10, 0));
    fx.server.stop().await;
}

#[tokio::test]
async fn recreate_picks_up_config_changes_while_older_executions_keep_their_snapshot() {
    let fx = setup(&[("ITEMS_75", false)]).await;
    fx.process("2026-11-23", vec![]).await;
    fx.wait_for("2026-11-23", finished).await;
    let created = fx
        .server
        .executions()
        .create_execution(pb::CreateExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            manual_job_positions: vec![],
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        phase(created.execution.as_ref().unwrap()),
        pb::ExecutionPhase::NotStarted
    );
    let twice = fx
        .server
        .executions()
        .create_execution(pb::CreateExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            manual_job_positions: vec![],
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists);

    // Change the job list.
    fx.server
        .configs()
        .update_job_schedule_config(pb::UpdateJobScheduleConfigRequest {
            client_id: "acme".into(),
            config: Some(pb::JobScheduleConfig {
                config_id: fx.config_id.clone(),
                jobs: vec![
                    pb::JobSpec {
                        job_type: "EMPTY".into(),
                        manual: false,
                    },
                    pb::JobSpec {
                        job_type: "ITEMS_120".into(),
                        manual: false,
                    },
                ],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["jobs".into()],
            }),
        })
        .await
        .unwrap();
    let before = fx.get(DATE).await.unwrap();
    assert_eq!(
        before.jobs.len(),
        1,
        "created executions keep their snapshot until recreated"
    );
    let recreated = fx
        .server
        .executions()
        .recreate_execution(pb::RecreateExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            manual_job_positions: vec![],
            reason: "new job list".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let types: Vec<_> = recreated
        .execution
        .unwrap()
        .jobs
        .iter()
        .map(|j| j.job_type.clone())
        .collect();
    assert_eq!(types, ["EMPTY", "ITEMS_120"]);
    let old = fx.get("2026-11-23").await.unwrap();
    assert_eq!(old.jobs.len(), 1);
    assert_eq!(old.jobs[0].job_type, "ITEMS_75");

    fx.process(DATE, vec![]).await;
    fx.wait_for(DATE, finished).await;
    let late = fx
        .server
        .executions()
        .recreate_execution(pb::RecreateExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            manual_job_positions: vec![],
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(reason(&late), "EXECUTION_STARTED");

    let listed = fx
        .server
        .executions()
        .list_executions(pb::ListExecutionsRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            start_date: "2026-11-01".into(),
            end_date: "2026-11-30".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.executions[0].business_date, DATE);
    let next = fx
        .server
        .executions()
        .list_executions(pb::ListExecutionsRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            start_date: "2026-11-01".into(),
            end_date: "2026-11-30".into(),
            page_size: 1,
            page_token: listed.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.executions[0].business_date, "2026-11-23");
    assert!(next.next_page_token.is_empty());
    fx.server.stop().await;
}

#[tokio::test]
async fn reset_then_process_again_and_every_action_is_recorded() {
    let fx = setup(&[("FLAKY", false)]).await;
    fx.process(DATE, vec![]).await;
    fx.wait_for(DATE, finished).await;
    let reset = fx
        .server
        .executions()
        .reset_execution(with_actor(
            pb::ResetExecutionRequest {
                client_id: "acme".into(),
                config_id: fx.config_id.clone(),
                business_date: DATE.into(),
                cancel_in_flight: false,
                reason: "start over".into(),
            },
            "ops@aria",
        ))
        .await
        .unwrap()
        .into_inner();
    let e = reset.execution.unwrap();
    assert_eq!(phase(&e), pb::ExecutionPhase::NotStarted);
    assert_eq!(counts(&e, 1), (0, 0, 0, 0));
    assert!(fx.error_codes(1).await.is_empty());
    assert!(reset.action.unwrap().outcome.contains("200 items"));

    fx.controls.flaky.apply();
    fx.process(DATE, vec![]).await;
    let e = fx.wait_for(DATE, finished).await;
    assert_eq!(status(&e), pb::Status::Completed);
    assert_eq!(counts(&e, 1), (200, 0, 200, 0));

    let actions = fx.actions(DATE).await;
    let kinds: Vec<_> = actions
        .iter()
        .map(|a| pb::ActionKind::try_from(a.kind).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            pb::ActionKind::ActionProcess,
            pb::ActionKind::ActionReset,
            pb::ActionKind::ActionProcess
        ]
    );
    assert!(actions
        .iter()
        .all(|a| a.actor == "ops@aria" && a.time.is_some()));
    assert_eq!(actions[1].reason, "start over");
    fx.server.stop().await;
}

#[tokio::test]
async fn reset_refuses_a_running_execution_unless_asked_to_cancel() {
    let fx = setup_with(&[("SLOW", false)], 5).await;
    fx.process(DATE, vec![]).await;
    fx.wait_for(DATE, |e| counts(e, 1).2 > 0).await;
    let refused = fx
        .server
        .executions()
        .reset_execution(pb::ResetExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            cancel_in_flight: false,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "EXECUTION_RUNNING");
    let deleted = fx
        .server
        .configs()
        .delete_job_schedule_config(pb::DeleteJobScheduleConfigRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        deleted.code(),
        Code::FailedPrecondition,
        "no delete while running"
    );

    let reset = fx
        .server
        .executions()
        .reset_execution(pb::ResetExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            cancel_in_flight: true,
            reason: "cancel".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reset.action.unwrap().outcome.starts_with("cancelled"));
    let e = reset.execution.unwrap();
    assert_eq!(phase(&e), pb::ExecutionPhase::NotStarted);
    // Nothing settles after the reset: no batch was left half-written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = fx.get(DATE).await.unwrap();
    assert_eq!(counts(&later, 1), (0, 0, 0, 0));
    assert_eq!(phase(&later), pb::ExecutionPhase::NotStarted);
    let (db, conn) = tokio_postgres::connect(&fx.server.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let left: i64 = db
        .query_one("SELECT count(*) FROM batches", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // And the configuration can be deleted now.
    fx.server
        .configs()
        .delete_job_schedule_config(pb::DeleteJobScheduleConfigRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let gone: i64 = db
        .query_one("SELECT count(*) FROM work_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, 0);
    fx.server.stop().await;
}

#[tokio::test]
async fn bad_execution_requests_get_the_right_codes() {
    let fx = setup(&[("ITEMS_75", false)]).await;
    let mut client = fx.server.executions();
    let bad_date = client
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: "2026-02-30".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_date), ["business_date"]);
    let no_config = client
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id: uuid::Uuid::new_v4().to_string(),
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_config.code(), Code::NotFound);
    let other_client = client
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "globex".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        other_client.code(),
        Code::NotFound,
        "no access across clients"
    );
    let bad_manual = client
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            manual_job_positions: vec![3],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_manual), ["manual_job_positions[0]"]);
    let missing = client
        .get_execution(pb::GetExecutionRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    fx.process(DATE, vec![]).await;
    fx.wait_for(DATE, finished).await;
    let retry_ok_job = client
        .retry_job(pb::RetryJobRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 1,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(retry_ok_job.code(), Code::FailedPrecondition);
    assert_eq!(reason(&retry_ok_job), "JOB_NOT_IN_ERROR");
    let no_position = client
        .get_job_stats(pb::GetJobStatsRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_position), ["position"]);
    let zero = client
        .trigger_job(pb::TriggerJobRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 0,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&zero), ["position"]);
    let no_code = client
        .list_errored_work_items(pb::ListErroredWorkItemsRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            position: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_code), ["error_code"]);
    let backwards = client
        .list_executions(pb::ListExecutionsRequest {
            client_id: "acme".into(),
            config_id: fx.config_id.clone(),
            start_date: "2026-12-01".into(),
            end_date: "2026-11-01".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&backwards), ["end_date"]);
    fx.server.stop().await;
}
