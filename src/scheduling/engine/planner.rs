//! Planning a job run: the job enumerates its work items, which are copied
//! in on a dedicated connection, then range batches are formed and the job
//! moves to RUNNING in one transaction. A plan that fails as a whole becomes
//! one errored work item.

use std::panic::AssertUnwindSafe;

use diesel_async::AsyncConnection;
use futures_util::{FutureExt, StreamExt};

use super::transition;
use super::Engine;
use crate::scheduling::job::{JobContext, JobError, PlannedItem};
use crate::scheduling::store::executions;
use crate::scheduling::store::planning::{self, PlanClaim};
use crate::scheduling::Error;

/// Plans larger than this refresh planner statistics afterwards.
const ANALYZE_AFTER: i32 = 20_000;

/// Why a plan did not commit.
enum PlanAbort {
    /// The job's own plan failed: record it as the job's error.
    Job(JobError),
    /// Someone else owns the plan now, or the execution was reset.
    Lost,
    /// Infrastructure trouble: the plan lease will expire and another
    /// worker retries.
    Failed(Error),
}

impl From<diesel::result::Error> for PlanAbort {
    fn from(e: diesel::result::Error) -> Self {
        PlanAbort::Failed(e.into())
    }
}

impl From<Error> for PlanAbort {
    fn from(e: Error) -> Self {
        PlanAbort::Failed(e)
    }
}

impl From<crate::db::DbError> for PlanAbort {
    fn from(e: crate::db::DbError) -> Self {
        PlanAbort::Failed(e.into())
    }
}

pub(super) async fn plan(engine: &Engine, claim: PlanClaim) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let ctx = JobContext {
        client_id: claim.client_id.clone(),
        business_date: claim.business_date,
        db: engine.db().clone(),
    };
    let job_type = claim.job_type.clone();
    let stream = match engine.registry().get(&job_type) {
        None => Err(JobError::new(
            "JOB_TYPE_NOT_REGISTERED",
            format!("this service cannot run job type {job_type}"),
        )),
        Some(job) => match AssertUnwindSafe(job.plan(&ctx)).catch_unwind().await {
            Ok(result) => result,
            Err(_) => Err(JobError::new("JOB_PANICKED", "planning panicked")),
        },
    };
    let batch_size = engine.settings().batch_size as i32;
    let owner = engine.worker_id();
    // Step 1: the items, copied in on their own connection and transaction.
    // Until step 2 forms the batches nothing claims them; a planner that
    // dies in between leaves items the next planner replaces.
    let copied = match stream {
        Err(e) => Err(PlanAbort::Job(e)),
        Ok(stream) => {
            let mut chunks = produce(stream);
            planning::copy_items(engine.db().url(), claim.job_run_id, &mut chunks)
                .await
                .map_err(|e| match e {
                    planning::CopyError::Source(job) => PlanAbort::Job(job),
                    planning::CopyError::Db(db) => {
                        PlanAbort::Failed(Error::internal(format!("copying planned items: {db}")))
                    }
                })
        }
    };
    let mut conn = engine.db().conn().await?;
    let result = match copied {
        Err(abort) => Err(abort),
        Ok(total) => {
            let now = engine.clock().now();
            conn.transaction::<_, PlanAbort, _>(async move |conn| {
                planning::delete_batches(conn, claim.job_run_id).await?;
                if total > 0 {
                    planning::insert_range_batches(conn, claim.job_run_id, total, batch_size)
                        .await?;
                }
                let loaded = executions::load_by_id(conn, claim.execution_id, true)
                    .await?
                    .ok_or(PlanAbort::Lost)?;
                if !planning::still_planning(conn, claim.job_run_id, owner).await? {
                    return Err(PlanAbort::Lost);
                }
                let mut after = loaded.state.clone();
                after
                    .planned(claim.position, total as i64)
                    .map_err(Error::from)?;
                // Planned inside an open exception window: the work waits,
                // and the execution says so at once.
                if super::window::holds(conn, &loaded, now).await? {
                    after.hold_for_window(true);
                }
                transition::save(conn, &loaded, &after).await?;
                Ok(total)
            })
            .await
        }
    };
    match result {
        Ok(total) => {
            tracing::info!(job_run = claim.job_run_id, job_type = %claim.job_type, total, "planned");
            engine.metrics().planned(
                &claim.job_type,
                &claim.client_id,
                total.max(0) as u64,
                started.elapsed(),
            );
            if total > ANALYZE_AFTER {
                planning::analyze(&mut conn).await?;
            }
            engine.wake();
            Ok(())
        }
        Err(PlanAbort::Lost) => Ok(()),
        Err(PlanAbort::Failed(e)) => Err(e),
        Err(PlanAbort::Job(job_error)) => {
            tracing::warn!(job_run = claim.job_run_id, error = %job_error, "plan failed");
            record_plan_failure(engine, &claim, job_error).await
        }
    }
}

/// Runs a job's plan stream on its own task, two chunks ahead of the
/// inserts; a panic in the job becomes its error.
fn produce(
    mut stream: crate::scheduling::job::PlanStream,
) -> tokio::sync::mpsc::Receiver<Result<Vec<PlannedItem>, JobError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            let next = AssertUnwindSafe(stream.next()).catch_unwind().await;
            let item = match next {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => Err(JobError::new("JOB_PANICKED", "planning panicked")),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// A plan that failed as a whole becomes one errored work item of the job,
/// so the drill-down shows its code and reason and Retry plans again.
async fn record_plan_failure(
    engine: &Engine,
    claim: &PlanClaim,
    error: JobError,
) -> Result<(), Error> {
    let owner = engine.worker_id();
    let claim = claim.clone();
    let mut conn = engine.db().conn().await?;
    conn.transaction::<_, Error, _>(async move |conn| {
        let Some(loaded) = executions::load_by_id(conn, claim.execution_id, true).await? else {
            return Ok(());
        };
        if !planning::still_planning(conn, claim.job_run_id, owner).await? {
            return Ok(());
        }
        let round = loaded.job_run(claim.position).map(|r| r.round).unwrap_or(1);
        let item = PlannedItem {
            account_id: String::new(),
            payload: serde_json::json!({
                "stage": "plan",
                "job_type": claim.job_type,
                "business_date": claim.business_date.to_string(),
            }),
        };
        let reason = format!("planning failed: {}", error.reason);
        planning::record_plan_failure(conn, claim.job_run_id, round, item, &error.code, &reason)
            .await?;
        let mut after = loaded.state.clone();
        after.plan_failed(claim.position)?;
        transition::save(conn, &loaded, &after).await?;
        Ok(())
    })
    .await
}
