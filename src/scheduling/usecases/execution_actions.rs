//! The actions of the product on executions: Create, Recreate, Process and
//! Trigger job (Retry, Reprocess and Reset are in
//! [`super::execution_recovery`]). Each runs in one transaction that locks
//! the execution, applies the domain transition, writes what changed with
//! its events, and records the action.

use chrono::{DateTime, NaiveDate, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::{BoxFuture, FutureExt};
use uuid::Uuid;

use super::{load_config, UseCases};
use crate::scheduling::domain::config::JobScheduleConfig;
use crate::scheduling::domain::event::{ActionRecord, EventBody};
use crate::scheduling::domain::execution::{
    snapshot, ActionKind, Execution, ExecutionKey, ExecutionState, JobState,
};
use crate::scheduling::domain::JobPosition;
use crate::scheduling::engine::transition::{self, target_of, Actor};
use crate::scheduling::engine::window;
use crate::scheduling::store::events;
use crate::scheduling::store::executions;
use crate::scheduling::Error;

/// What an action did.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    /// The execution after the action.
    pub execution: Execution,
    /// The recorded action.
    pub action: ActionRecord,
    /// False when the action changed nothing.
    pub changed: bool,
}

/// Applies the exception window to an action that sets work going, in the
/// action's transaction: records whether the operator overrides the window
/// for this execution, and, while the window is open, holds the work
/// (PAUSED_BY_WINDOW until it closes) or releases it (override). The note
/// to add to the action's outcome (empty when the window is closed).
pub(super) async fn apply_window(
    conn: &mut AsyncPgConnection,
    loaded: &Execution,
    after: &mut ExecutionState,
    now: DateTime<Utc>,
    override_window: bool,
) -> Result<String, Error> {
    executions::set_window_override(conn, loaded.execution_id, override_window).await?;
    let Some(end) = window::open_until(conn, &loaded.key, now).await? else {
        return Ok(String::new());
    };
    after.hold_for_window(!override_window);
    Ok(if override_window {
        format!("; runs inside the exception window (open until {end}): override_exception_window")
    } else {
        format!("; held by the exception window until {end}, then runs by itself")
    })
}

/// Creates the execution and its events in the caller's transaction.
async fn insert_execution(
    conn: &mut AsyncPgConnection,
    config: &JobScheduleConfig,
    date: NaiveDate,
    jobs: &[JobState],
) -> Result<Execution, Error> {
    let id = executions::insert(
        conn,
        &config.client_id,
        config.config_id,
        &config.draft.name,
        date,
        false,
        jobs,
    )
    .await
    .map_err(|e| {
        if e.unique_violation() == Some(executions::UNIQUE_DATE) {
            crate::scheduling::domain::Error::AlreadyExists {
                reason: "EXECUTION_EXISTS",
                field: "business_date",
                message: format!(
                    "business_date: the execution of {} for {date} already exists; use \
                     RecreateExecution or ResetExecution",
                    config.draft.name
                ),
            }
            .into()
        } else {
            Error::from(e)
        }
    })?;
    let loaded = executions::load_by_id(conn, id, true)
        .await?
        .ok_or_else(|| Error::internal("execution vanished after insert"))?;
    events::append(
        conn,
        &target_of(&loaded),
        &[EventBody::ExecutionChanged {
            status: loaded.state.status,
            phase: loaded.state.phase,
        }],
    )
    .await?;
    Ok(loaded)
}

impl UseCases {
    pub(super) async fn finish(
        &self,
        conn: &mut AsyncPgConnection,
        execution_id: Uuid,
        action: ActionRecord,
        changed: bool,
    ) -> Result<ActionOutcome, Error> {
        let execution = executions::load_by_id(conn, execution_id, false)
            .await?
            .ok_or_else(|| Error::internal("execution vanished"))?;
        Ok(ActionOutcome {
            execution,
            action,
            changed,
        })
    }

    /// Runs `step` on the locked execution in one transaction, then wakes
    /// the workers.
    pub(super) async fn act<F>(&self, key: &ExecutionKey, step: F) -> Result<ActionOutcome, Error>
    where
        F: for<'c> FnOnce(
                &'c mut AsyncPgConnection,
                Execution,
            ) -> BoxFuture<'c, Result<(ActionRecord, bool), Error>>
            + Send
            + 'static,
    {
        let mut conn = self.conn().await?;
        let key = key.clone();
        let (action, changed, id) = conn
            .transaction::<_, Error, _>(async move |conn| {
                let loaded = executions::load(conn, &key, true)
                    .await?
                    .ok_or_else(|| transition::not_found(&key))?;
                let id = loaded.execution_id;
                let (action, changed) = step(conn, loaded).await?;
                Ok((action, changed, id))
            })
            .await?;
        self.engine.wake();
        self.finish(&mut conn, id, action, changed).await
    }

    /// CreateExecution: materialises the execution of a date without
    /// starting it.
    pub async fn create_execution(
        &self,
        actor: &Actor,
        key: &ExecutionKey,
        manual_positions: &[JobPosition],
    ) -> Result<ActionOutcome, Error> {
        let mut conn = self.conn().await?;
        let config = load_config(&mut conn, &key.client_id, key.config_id).await?;
        let jobs = snapshot(&config.draft.jobs, manual_positions)?;
        let (actor, date) = (actor.clone(), key.business_date);
        let (id, action) = conn
            .transaction::<_, Error, _>(async move |conn| {
                let loaded = insert_execution(conn, &config, date, &jobs).await?;
                let outcome = format!("created with {} jobs", jobs.len());
                let action =
                    transition::record(conn, &loaded, &actor, ActionKind::Create, None, outcome)
                        .await?;
                Ok((loaded.execution_id, action))
            })
            .await?;
        self.finish(&mut conn, id, action, true).await
    }

    /// RecreateExecution: re-snapshots a fresh execution from the
    /// configuration as it is now.
    pub async fn recreate_execution(
        &self,
        actor: &Actor,
        key: &ExecutionKey,
        manual_positions: &[JobPosition],
    ) -> Result<ActionOutcome, Error> {
        let (actor, key2) = (actor.clone(), key.clone());
        let manual_positions = manual_positions.to_vec();
        self.act(key, move |conn, loaded| {
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
                let config = load_config(conn, &key2.client_id, key2.config_id).await?;
                let jobs = snapshot(&config.draft.jobs, &manual_positions)?;
                executions::replace_jobs(conn, loaded.execution_id, &jobs).await?;
                let reloaded = executions::load_by_id(conn, loaded.execution_id, true)
                    .await?
                    .ok_or_else(|| Error::internal("execution vanished"))?;
                let types: Vec<&str> = jobs.iter().map(|j| j.job_type.as_str()).collect();
                let outcome = format!("re-snapshotted jobs: {}", types.join(", "));
                let action = transition::record(
                    conn,
                    &reloaded,
                    &actor,
                    ActionKind::Recreate,
                    None,
                    outcome,
                )
                .await?;
                Ok((action, true))
            }
            .boxed()
        })
        .await
    }

    /// ProcessExecution: starts the execution, creating it first if needed.
    /// Idempotent: an execution already started is left as it is, and the
    /// answer says so.
    ///
    /// Inside the exception window the execution waits in PAUSED_BY_WINDOW
    /// and starts by itself when the window closes, unless
    /// `override_window`.
    pub async fn process_execution(
        &self,
        actor: &Actor,
        key: &ExecutionKey,
        manual_positions: &[JobPosition],
        override_window: bool,
    ) -> Result<ActionOutcome, Error> {
        let now = self.engine.clock().now();
        let mut conn = self.conn().await?;
        let config = load_config(&mut conn, &key.client_id, key.config_id).await?;
        let jobs = snapshot(&config.draft.jobs, manual_positions)?;
        let designated = manual_positions.to_vec();
        let (actor2, key2) = (actor.clone(), key.clone());
        let result = conn
            .transaction::<_, Error, _>(async move |conn| {
                let (loaded, created) = match executions::load(conn, &key2, true).await? {
                    Some(existing) => (existing, false),
                    None => (
                        insert_execution(conn, &config, key2.business_date, &jobs).await?,
                        true,
                    ),
                };
                let mut after = loaded.state.clone();
                if !created {
                    after.designate_manual(&designated);
                }
                let started = after.start();
                let mut outcome = match (started, created) {
                    (true, true) => "created and started".to_string(),
                    (true, false) => "started".to_string(),
                    (false, _) => format!(
                        "already {} ({}); nothing done",
                        after.status.as_str(),
                        after.phase.as_str()
                    ),
                };
                outcome.push_str(
                    &apply_window(conn, &loaded, &mut after, now, override_window).await?,
                );
                let started = started || after != loaded.state;
                if started {
                    transition::save(conn, &loaded, &after).await?;
                }
                let action =
                    transition::record(conn, &loaded, &actor2, ActionKind::Process, None, outcome)
                        .await?;
                Ok((loaded.execution_id, action, started))
            })
            .await;
        let (id, action, changed) = match result {
            // Two Process calls racing to create the same date: the loser
            // processes what the winner created.
            Err(e) if e.is_already_exists() => {
                return Box::pin(self.process_execution(
                    actor,
                    key,
                    manual_positions,
                    override_window,
                ))
                .await
            }
            other => other?,
        };
        self.engine.wake();
        self.finish(&mut conn, id, action, changed).await
    }

    /// TriggerJob: releases a manual job.
    /// Inside the exception window the job waits for it to close, unless
    /// `override_window`.
    pub async fn trigger_job(
        &self,
        actor: &Actor,
        key: &ExecutionKey,
        position: JobPosition,
        override_window: bool,
    ) -> Result<ActionOutcome, Error> {
        let actor = actor.clone();
        let now = self.engine.clock().now();
        self.act(key, move |conn, loaded| {
            async move {
                let mut after = loaded.state.clone();
                let changed = after.trigger(position)?;
                let mut outcome = if changed {
                    "released".to_string()
                } else {
                    "job is not awaiting a trigger; nothing done".to_string()
                };
                outcome.push_str(
                    &apply_window(conn, &loaded, &mut after, now, override_window).await?,
                );
                let changed = after != loaded.state;
                if changed {
                    transition::save(conn, &loaded, &after).await?;
                }
                let action = transition::record(
                    conn,
                    &loaded,
                    &actor,
                    ActionKind::TriggerJob,
                    Some(position),
                    outcome,
                )
                .await?;
                Ok((action, changed))
            }
            .boxed()
        })
        .await
    }
}
