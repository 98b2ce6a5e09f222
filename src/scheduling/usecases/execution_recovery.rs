//! The actions that recover an execution from errors or start it over:
//! Retry job, Reprocess and Reset. Like every action, each runs in one
//! transaction on the locked execution and is recorded.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::FutureExt;

use chrono::{DateTime, Utc};

use super::execution_actions::{apply_window, ActionOutcome};
use super::UseCases;
use crate::scheduling::domain::event::ActionRecord;
use crate::scheduling::domain::execution::{ActionKind, Execution, ExecutionKey};
use crate::scheduling::domain::JobPosition;
use crate::scheduling::engine::transition::{self, Actor};
use crate::scheduling::store::{executions, work};
use crate::scheduling::Error;

impl UseCases {
    /// RetryJob: re-runs the errored items of an ERROR job; on success the
    /// rest of the execution continues.
    pub async fn retry_job(
        &self,
        actor: &Actor,
        key: &ExecutionKey,
        position: JobPosition,
        override_window: bool,
    ) -> Result<ActionOutcome, Error> {
        let actor = actor.clone();
        let batch_size = self.batch_size();
        let window = (self.engine.clock().now(), override_window);
        self.act(key, move |conn, loaded| {
            async move {
                let kind = ActionKind::RetryJob;
                let action =
                    retry(conn, &loaded, &actor, position, kind, batch_size, window).await?;
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
        key: &ExecutionKey,
        override_window: bool,
    ) -> Result<ActionOutcome, Error> {
        let actor = actor.clone();
        let batch_size = self.batch_size();
        let window = (self.engine.clock().now(), override_window);
        self.act(key, move |conn, loaded| {
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
                let kind = ActionKind::Reprocess;
                let action =
                    retry(conn, &loaded, &actor, position, kind, batch_size, window).await?;
                Ok((action, true))
            }
            .boxed()
        })
        .await
    }

    /// ResetExecution: back to freshly created (the job snapshot kept, job
    /// runs and work items discarded, the history kept). With
    /// `cancel_in_flight` a running execution first stops claiming and
    /// waits for its batches in flight to settle; without it a running
    /// execution is refused.
    pub async fn reset_execution(
        &self,
        actor: &Actor,
        key: &ExecutionKey,
        cancel_in_flight: bool,
    ) -> Result<ActionOutcome, Error> {
        let mut conn = self.conn().await?;
        let key2 = key.clone();
        // Step 1: reset at once, or stop the running work.
        let stopped: Option<Vec<i64>> = conn
            .transaction::<_, Error, _>(async move |conn| {
                let loaded = executions::load(conn, &key2, true)
                    .await?
                    .ok_or_else(|| transition::not_found(&key2))?;
                if !loaded.state.is_running() {
                    return Ok(None);
                }
                if !cancel_in_flight {
                    return Err(running(&loaded));
                }
                let mut after = loaded.state.clone();
                after.cancel();
                transition::save(conn, &loaded, &after).await?;
                Ok(Some(loaded.job_run_ids()))
            })
            .await?;
        // Step 2: let batches in flight settle (a dead worker's lease expires).
        if let Some(runs) = &stopped {
            let lease = self.engine.settings().lease;
            let deadline = Instant::now() + lease + Duration::from_secs(5);
            while work::in_flight(&mut conn, runs).await? > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        drop(conn);
        // Step 3: discard the work and reset.
        let actor = actor.clone();
        let cancelled = stopped.is_some();
        self.act(key, move |conn, loaded| {
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
                work::discard(conn, &loaded.job_run_ids()).await?;
                let mut after = loaded.state.clone();
                after.reset();
                transition::save(conn, &loaded, &after).await?;
                let mut text = if cancelled {
                    "cancelled work in flight and reset".to_string()
                } else {
                    "reset".to_string()
                };
                if !summary.is_empty() {
                    text.push_str(&format!("; discarded {}", summary.join("; ")));
                }
                let action =
                    transition::record(conn, &loaded, &actor, ActionKind::Reset, None, text)
                        .await?;
                Ok((action, true))
            }
            .boxed()
        })
        .await
    }

    fn batch_size(&self) -> i32 {
        i32::try_from(self.engine.settings().batch_size).unwrap_or(i32::MAX)
    }
}

/// FAILED_PRECONDITION for a reset of a running execution without
/// `cancel_in_flight`, naming what runs.
fn running(loaded: &Execution) -> Error {
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
    Error::precondition(
        "EXECUTION_RUNNING",
        format!(
            "the execution is running: {active}; pass cancel_in_flight to stop it and reset \
             once the batch in flight settles"
        ),
    )
}

/// Retry of one ERROR job, in the caller's transaction: its errored items
/// are re-queued as a new round (their history kept), or, when its plan
/// failed as a whole, it plans again.
async fn retry(
    conn: &mut AsyncPgConnection,
    loaded: &Execution,
    actor: &Actor,
    position: JobPosition,
    kind: ActionKind,
    batch_size: i32,
    (now, override_window): (DateTime<Utc>, bool),
) -> Result<ActionRecord, Error> {
    let run = loaded.job_run(position).cloned();
    let mut after = loaded.state.clone();
    let mut outcome = match run {
        Some(run) if run.plan_failed => {
            after.retry_plan(position)?;
            work::discard(conn, &[run.job_run_id]).await?;
            "planning again".to_string()
        }
        Some(run) => {
            after.retry(position)?;
            let n = work::requeue_errors(conn, run.job_run_id, run.round + 1, batch_size).await?;
            format!(
                "re-queued {n} errored work items (attempt {})",
                run.round + 1
            )
        }
        None => {
            // No such position: the domain names the field.
            after.retry(position)?;
            return Err(Error::internal("job state without a job run"));
        }
    };
    outcome.push_str(&apply_window(conn, loaded, &mut after, now, override_window).await?);
    transition::save(conn, loaded, &after).await?;
    transition::record(conn, loaded, actor, kind, Some(position), outcome).await
}
