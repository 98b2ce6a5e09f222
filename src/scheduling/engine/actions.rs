//! The actions of the product on executions: Create, Recreate, Process,
//! Reprocess, Reset, Trigger job and Retry job. Each runs in one
//! transaction that locks the execution, applies the domain transition,
//! writes what changed with its events, and records the action.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::{BoxFuture, FutureExt};
use uuid::Uuid;

use super::{not_found, save_transition, target_of, Engine};
use crate::scheduling::domain::config::JobScheduleConfig;
use crate::scheduling::domain::event::{ActionRecord, EventBody};
use crate::scheduling::domain::execution::{ExecutionState, JobPhase, JobState};
use crate::scheduling::domain::Error;
use crate::scheduling::store::events;
use crate::scheduling::store::executions::{self, LoadedExecution, NewAction};
use crate::scheduling::store::{configs, work};

/// Who acts and why; recorded with every action.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The client the request names.
    pub client_id: String,
    /// Who acts (request metadata `x-actor`, or `scheduler`).
    pub actor: String,
    /// The reason given.
    pub reason: String,
}

/// What an action did.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    /// The execution after the action.
    pub execution: LoadedExecution,
    /// The recorded action.
    pub action: ActionRecord,
    /// False when the action changed nothing.
    pub changed: bool,
}

/// Which execution an action is about.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionKey {
    /// The configuration.
    pub config_id: Uuid,
    /// The business date.
    pub business_date: NaiveDate,
}

/// The job list of a configuration as an execution snapshots it, with
/// per-execution manual designations (positions from 1).
pub(super) fn snapshot(
    config: &JobScheduleConfig,
    manual_positions: &[u32],
) -> Result<Vec<JobState>, Error> {
    let count = config.draft.jobs.len() as u32;
    let mut violations = crate::scheduling::domain::error::Violations::default();
    for (i, p) in manual_positions.iter().enumerate() {
        if *p == 0 || *p > count {
            violations.add(
                format!("manual_job_positions[{i}]"),
                format!("no job at position {p}; the configuration has jobs 1 to {count}"),
            );
        }
    }
    violations.into_result(())?;
    Ok(config
        .draft
        .jobs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let position = i as u32 + 1;
            JobState::new(
                position,
                spec.job_type.clone(),
                spec.manual || manual_positions.contains(&position),
            )
        })
        .collect())
}

async fn load_config(
    conn: &mut AsyncPgConnection,
    client: &str,
    config_id: Uuid,
) -> Result<JobScheduleConfig, Error> {
    configs::load(conn, client, config_id).await
}

/// Records the action and its event.
pub(super) async fn record(
    conn: &mut AsyncPgConnection,
    loaded: &LoadedExecution,
    actor: &Actor,
    kind: &str,
    job_position: u32,
    outcome: String,
) -> Result<ActionRecord, Error> {
    let action = executions::record_action(
        conn,
        loaded.row.execution_id,
        &NewAction {
            kind,
            actor: &actor.actor,
            reason: &actor.reason,
            job_position,
            outcome,
        },
    )
    .await?;
    events::append(
        conn,
        &target_of(loaded),
        &[EventBody::ActionTaken {
            action: action.clone(),
        }],
    )
    .await?;
    Ok(action)
}

/// Creates the execution and its events in the caller's transaction.
async fn insert_execution(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    config: &JobScheduleConfig,
    date: NaiveDate,
    jobs: &[JobState],
    automatic: bool,
) -> Result<LoadedExecution, Error> {
    let id = executions::insert(
        conn,
        &actor.client_id,
        config.config_id,
        &config.draft.name,
        date,
        automatic,
        jobs,
    )
    .await
    .map_err(|e| {
        if e.unique_violation() == Some(executions::UNIQUE_DATE) {
            Error::AlreadyExists {
                reason: "EXECUTION_EXISTS",
                field: "business_date",
                message: format!(
                    "business_date: the execution of {} for {date} already exists; use \
                     RecreateExecution or ResetExecution",
                    config.draft.name
                ),
            }
        } else {
            e.into()
        }
    })?;
    let loaded = executions::load_by_id(conn, id, true)
        .await?
        .ok_or_else(|| Error::Internal("execution vanished after insert".into()))?;
    events::append(
        conn,
        &target_of(&loaded),
        &[EventBody::ExecutionChanged {
            status: loaded.state.status.as_str().to_string(),
            phase: loaded.state.phase.as_str().to_string(),
        }],
    )
    .await?;
    Ok(loaded)
}

impl Engine {
    async fn finish(
        &self,
        conn: &mut AsyncPgConnection,
        execution_id: Uuid,
        action: ActionRecord,
        changed: bool,
    ) -> Result<ActionOutcome, Error> {
        let execution = executions::load_by_id(conn, execution_id, false)
            .await?
            .ok_or_else(|| Error::Internal("execution vanished".into()))?;
        Ok(ActionOutcome {
            execution,
            action,
            changed,
        })
    }

    /// Runs `step` on the locked execution in one transaction, then wakes
    /// the workers.
    async fn act<F>(
        &self,
        actor: &Actor,
        key: ExecutionKey,
        step: F,
    ) -> Result<ActionOutcome, Error>
    where
        F: for<'c> FnOnce(
                &'c mut AsyncPgConnection,
                LoadedExecution,
            ) -> BoxFuture<'c, Result<(ActionRecord, bool), Error>>
            + Send
            + 'static,
    {
        let mut conn = self.db().conn().await?;
        let client = actor.client_id.clone();
        let (action, changed, id) = conn
            .transaction::<_, Error, _>(async move |conn| {
                let loaded =
                    executions::load(conn, &client, key.config_id, key.business_date, true)
                        .await?
                        .ok_or_else(|| not_found(key.config_id, key.business_date))?;
                let id = loaded.row.execution_id;
                let (action, changed) = step(conn, loaded).await?;
                Ok((action, changed, id))
            })
            .await?;
        self.wake();
        self.finish(&mut conn, id, action, changed).await
    }

    /// CreateExecution: materialises the execution of a date without
    /// starting it.
    pub async fn create_execution(
        &self,
        actor: &Actor,
        key: ExecutionKey,
        manual_positions: &[u32],
        automatic: bool,
    ) -> Result<ActionOutcome, Error> {
        let mut conn = self.db().conn().await?;
        let config = load_config(&mut conn, &actor.client_id, key.config_id).await?;
        let jobs = snapshot(&config, manual_positions)?;
        let actor2 = actor.clone();
        let (id, action) = conn
            .transaction::<_, Error, _>(async move |conn| {
                let loaded =
                    insert_execution(conn, &actor2, &config, key.business_date, &jobs, automatic)
                        .await?;
                let action = record(
                    conn,
                    &loaded,
                    &actor2,
                    "CREATE",
                    0,
                    format!("created with {} jobs", jobs.len()),
                )
                .await?;
                Ok((loaded.row.execution_id, action))
            })
            .await?;
        self.finish(&mut conn, id, action, true).await
    }

    /// RecreateExecution: re-snapshots a fresh execution from the
    /// configuration as it is now.
    pub async fn recreate_execution(
        &self,
        actor: &Actor,
        key: ExecutionKey,
        manual_positions: Vec<u32>,
    ) -> Result<ActionOutcome, Error> {
        let actor2 = actor.clone();
        self.act(actor, key, move |conn, loaded| {
            async move {
                if !loaded.state.is_fresh() {
                    return Err(Error::precondition(
                        "EXECUTION_STARTED",
                        format!(
                            "the execution is {} ({}); only a PENDING execution that has not \
                             started can be recreated (ResetExecution first)",
                            loaded.state.status.as_str(),
                            loaded.state.phase.as_str()
                        ),
                    ));
                }
                let config = load_config(conn, &actor2.client_id, key.config_id).await?;
                let jobs = snapshot(&config, &manual_positions)?;
                executions::replace_jobs(conn, loaded.row.execution_id, &jobs).await?;
                let reloaded = executions::load_by_id(conn, loaded.row.execution_id, true)
                    .await?
                    .ok_or_else(|| Error::Internal("execution vanished".into()))?;
                let types: Vec<&str> = jobs.iter().map(|j| j.job_type.as_str()).collect();
                let action = record(
                    conn,
                    &reloaded,
                    &actor2,
                    "RECREATE",
                    0,
                    format!("re-snapshotted jobs: {}", types.join(", ")),
                )
                .await?;
                Ok((action, true))
            }
            .boxed()
        })
        .await
    }

    /// ProcessExecution: starts the execution, creating it first if needed.
    /// Idempotent.
    pub async fn process_execution(
        &self,
        actor: &Actor,
        key: ExecutionKey,
        manual_positions: &[u32],
        automatic: bool,
    ) -> Result<ActionOutcome, Error> {
        let mut conn = self.db().conn().await?;
        let config = load_config(&mut conn, &actor.client_id, key.config_id).await?;
        let jobs = snapshot(&config, manual_positions)?;
        let designated = manual_positions.to_vec();
        let actor2 = actor.clone();
        let result = conn
            .transaction::<_, Error, _>(async move |conn| {
                let existing = executions::load(
                    conn,
                    &actor2.client_id,
                    key.config_id,
                    key.business_date,
                    true,
                )
                .await?;
                let (loaded, created) = match existing {
                    Some(l) => (l, false),
                    None => (
                        insert_execution(
                            conn,
                            &actor2,
                            &config,
                            key.business_date,
                            &jobs,
                            automatic,
                        )
                        .await?,
                        true,
                    ),
                };
                let mut after = loaded.state.clone();
                // Designations for this execution; `save` below writes them.
                if !created && after.is_fresh() {
                    for job in &mut after.jobs {
                        job.manual |= designated.contains(&job.position);
                    }
                }
                let started = after.start();
                let outcome = if started {
                    if created {
                        "created and started".to_string()
                    } else {
                        "started".to_string()
                    }
                } else {
                    format!(
                        "already {} ({}); nothing done",
                        after.status.as_str(),
                        after.phase.as_str()
                    )
                };
                if started {
                    save_transition(conn, &loaded, &after, Vec::new()).await?;
                }
                let action = record(conn, &loaded, &actor2, "PROCESS", 0, outcome).await?;
                Ok((loaded.row.execution_id, action, started))
            })
            .await;
        let (id, action, changed) = match result {
            // Two Process calls racing to create the same date: the loser
            // processes what the winner created.
            Err(Error::AlreadyExists { .. }) => {
                return Box::pin(self.process_execution(actor, key, manual_positions, automatic))
                    .await
            }
            other => other?,
        };
        self.wake();
        self.finish(&mut conn, id, action, changed).await
    }

    /// TriggerJob: releases a manual job.
    pub async fn trigger_job(
        &self,
        actor: &Actor,
        key: ExecutionKey,
        position: u32,
    ) -> Result<ActionOutcome, Error> {
        let actor2 = actor.clone();
        self.act(actor, key, move |conn, loaded| {
            async move {
                let mut after = loaded.state.clone();
                let changed = after.trigger(position)?;
                let outcome = if changed {
                    save_transition(conn, &loaded, &after, Vec::new()).await?;
                    "released".to_string()
                } else {
                    "job is not awaiting a trigger; nothing done".to_string()
                };
                let action =
                    record(conn, &loaded, &actor2, "TRIGGER_JOB", position, outcome).await?;
                Ok((action, changed))
            }
            .boxed()
        })
        .await
    }

    /// RetryJob: re-runs the errored items of an ERROR job.
    pub async fn retry_job(
        &self,
        actor: &Actor,
        key: ExecutionKey,
        position: u32,
    ) -> Result<ActionOutcome, Error> {
        let actor2 = actor.clone();
        let batch_size = self.settings().batch_size as i32;
        self.act(actor, key, move |conn, loaded| {
            async move {
                let action =
                    retry_in_tx(conn, &loaded, &actor2, position, "RETRY_JOB", batch_size).await?;
                Ok((action, true))
            }
            .boxed()
        })
        .await
    }

    /// ReprocessExecution: Retry of the first job with errored items.
    pub async fn reprocess_execution(
        &self,
        actor: &Actor,
        key: ExecutionKey,
    ) -> Result<ActionOutcome, Error> {
        let actor2 = actor.clone();
        let batch_size = self.settings().batch_size as i32;
        self.act(actor, key, move |conn, loaded| {
            async move {
                let position = loaded.state.first_errored_job().ok_or_else(|| {
                    Error::precondition(
                        "EXECUTION_NOT_IN_ERROR",
                        format!(
                            "the execution is {} and no job is in ERROR; nothing to reprocess",
                            loaded.state.status.as_str()
                        ),
                    )
                })?;
                let action =
                    retry_in_tx(conn, &loaded, &actor2, position, "REPROCESS", batch_size).await?;
                Ok((action, true))
            }
            .boxed()
        })
        .await
    }

    /// ResetExecution: back to freshly created. With `cancel_in_flight` a
    /// running execution first stops claiming and waits for its batches in
    /// flight to settle.
    pub async fn reset_execution(
        &self,
        actor: &Actor,
        key: ExecutionKey,
        cancel_in_flight: bool,
    ) -> Result<ActionOutcome, Error> {
        let mut conn = self.db().conn().await?;
        let client = actor.client_id.clone();
        // Step 1: reset at once, or stop the running work.
        let stopped: Option<Vec<i64>> = conn
            .transaction::<_, Error, _>(async move |conn| {
                let loaded =
                    executions::load(conn, &client, key.config_id, key.business_date, true)
                        .await?
                        .ok_or_else(|| not_found(key.config_id, key.business_date))?;
                if !loaded.state.is_running() {
                    return Ok(None);
                }
                if !cancel_in_flight {
                    let active = loaded
                        .state
                        .jobs
                        .iter()
                        .find(|j| j.is_active())
                        .map(|j| {
                            format!(
                                "job {} ({}) is {}",
                                j.position,
                                j.job_type,
                                j.phase.as_str()
                            )
                        })
                        .unwrap_or_else(|| "work is in flight".into());
                    return Err(Error::precondition(
                        "EXECUTION_RUNNING",
                        format!(
                            "the execution is running: {active}; pass cancel_in_flight to stop \
                                 it and reset once the batch in flight settles"
                        ),
                    ));
                }
                let mut after = loaded.state.clone();
                after.cancel();
                save_transition(conn, &loaded, &after, Vec::new()).await?;
                Ok(Some(loaded.jobs.iter().map(|j| j.job_run_id).collect()))
            })
            .await?;
        // Step 2: let batches in flight settle (a dead worker's lease expires).
        if let Some(runs) = &stopped {
            let deadline = Instant::now() + self.settings().lease + Duration::from_secs(5);
            while work::in_flight(&mut conn, runs).await? > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Step 3: discard the work and reset.
        let actor2 = actor.clone();
        let cancelled = stopped.is_some();
        let outcome = self
            .act(actor, key, move |conn, loaded| {
                async move {
                    let summary: Vec<String> = loaded
                        .state
                        .jobs
                        .iter()
                        .filter(|j| j.counts.total > 0)
                        .map(|j| {
                            format!(
                                "job {} {}: {} items, {} processed, {} errored",
                                j.position,
                                j.job_type,
                                j.counts.total,
                                j.counts.processed,
                                j.counts.errored
                            )
                        })
                        .collect();
                    let runs: Vec<i64> = loaded.jobs.iter().map(|j| j.job_run_id).collect();
                    work::discard(conn, &runs).await?;
                    let mut after = loaded.state.clone();
                    after.reset();
                    save_transition(conn, &loaded, &after, Vec::new()).await?;
                    let mut text = if cancelled {
                        "cancelled work in flight and reset".to_string()
                    } else {
                        "reset".to_string()
                    };
                    if !summary.is_empty() {
                        text.push_str(&format!("; discarded {}", summary.join("; ")));
                    }
                    let action = record(conn, &loaded, &actor2, "RESET", 0, text).await?;
                    Ok((action, true))
                }
                .boxed()
            })
            .await?;
        Ok(outcome)
    }
}

/// Retry of one ERROR job, in the caller's transaction.
async fn retry_in_tx(
    conn: &mut AsyncPgConnection,
    loaded: &LoadedExecution,
    actor: &Actor,
    position: u32,
    kind: &str,
    batch_size: i32,
) -> Result<ActionRecord, Error> {
    let mut after: ExecutionState = loaded.state.clone();
    after.retry(position)?;
    let run = loaded
        .job_run(position)
        .ok_or_else(|| Error::Internal("job run missing".into()))?;
    let outcome = if run.plan_failed {
        // The plan itself failed: plan again from scratch.
        work::discard(conn, &[run.job_run_id]).await?;
        let job = after
            .jobs
            .iter_mut()
            .find(|j| j.position == position)
            .ok_or_else(|| Error::Internal("retried job missing from the state".into()))?;
        job.counts = Default::default();
        job.phase = JobPhase::Planning;
        "planning again".to_string()
    } else {
        let n = work::requeue_errors(conn, run.job_run_id, run.round + 1, batch_size).await?;
        format!(
            "re-queued {n} errored work items (attempt {})",
            run.round + 1
        )
    };
    save_transition(conn, loaded, &after, Vec::new()).await?;
    record(conn, loaded, actor, kind, position, outcome).await
}
