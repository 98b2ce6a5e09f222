//! The worker loop: plan a job, or claim a batch, process it and settle it;
//! advance executions whose job just settled.

use std::panic::AssertUnwindSafe;

use diesel_async::AsyncConnection;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::transition;
use super::{Engine, JobRunIdentity};
use crate::scheduling::domain::event::EventBody;
use crate::scheduling::domain::execution::Counts;
use crate::scheduling::job::{ItemOutcome, JobContext, JobError, PlannedItem};
use crate::scheduling::store::events;
use crate::scheduling::store::executions;
use crate::scheduling::store::work::{self, BatchErrors, ClaimedBatch, PlanClaim};
use crate::scheduling::Error;

/// A whole-batch failure is retried this many times before its items are
/// errored with the failure's code.
const MAX_BATCH_ATTEMPTS: i32 = 3;
/// Plans larger than this refresh planner statistics afterwards.
const ANALYZE_AFTER: i32 = 20_000;

/// One worker task: loops until `shutdown`, finishing the batch in hand.
pub(super) async fn run(engine: Engine, shutdown: CancellationToken, index: usize) {
    let mut idle_rounds = 0u32;
    while !shutdown.is_cancelled() {
        match work_once(&engine).await {
            Ok(true) => {
                idle_rounds = 0;
                continue;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(worker = index, error = %e, "worker step failed"),
        }
        idle_rounds += 1;
        // One worker per process sweeps for executions a dead settler left
        // un-advanced, every few idle rounds.
        if index == 0 && idle_rounds % 5 == 1 {
            if let Err(e) = reconcile(&engine).await {
                tracing::warn!(error = %e, "reconcile failed");
            }
        }
        engine.idle(&shutdown).await;
    }
    tracing::debug!(worker = index, "worker stopped");
}

/// Plans one job or processes one batch; whether there was work.
async fn work_once(engine: &Engine) -> Result<bool, Error> {
    let lease = engine.settings().lease.as_secs_f64();
    let mut conn = engine.db().conn().await?;
    if let Some(claim) = work::claim_plan(&mut conn, engine.worker_id(), lease).await? {
        drop(conn);
        plan(engine, claim).await?;
        return Ok(true);
    }
    if let Some(batch) = work::claim_batch(&mut conn, engine.worker_id(), lease).await? {
        drop(conn);
        process(engine, batch).await?;
        return Ok(true);
    }
    Ok(false)
}

async fn reconcile(engine: &Engine) -> Result<(), Error> {
    let ids = {
        let mut conn = engine.db().conn().await?;
        work::executions_to_advance(&mut conn).await?
    };
    for id in ids {
        advance(engine, id).await?;
    }
    Ok(())
}

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

async fn plan(engine: &Engine, claim: PlanClaim) -> Result<(), Error> {
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
            work::copy_items(engine.db().url(), claim.job_run_id, &mut chunks)
                .await
                .map_err(|e| match e {
                    work::CopyError::Source(job) => PlanAbort::Job(job),
                    work::CopyError::Db(db) => {
                        PlanAbort::Failed(Error::internal(format!("copying planned items: {db}")))
                    }
                })
        }
    };
    let mut conn = engine.db().conn().await?;
    let result = match copied {
        Err(abort) => Err(abort),
        Ok(total) => {
            conn.transaction::<_, PlanAbort, _>(async move |conn| {
                work::delete_batches(conn, claim.job_run_id).await?;
                if total > 0 {
                    work::insert_range_batches(conn, claim.job_run_id, total, batch_size).await?;
                }
                let loaded = executions::load_by_id(conn, claim.execution_id, true)
                    .await?
                    .ok_or(PlanAbort::Lost)?;
                if !work::still_planning(conn, claim.job_run_id, owner).await? {
                    return Err(PlanAbort::Lost);
                }
                let mut after = loaded.state.clone();
                after
                    .planned(claim.position as u32, total as i64)
                    .map_err(Error::from)?;
                transition::save(conn, &loaded, &after).await?;
                Ok(total)
            })
            .await
        }
    };
    match result {
        Ok(total) => {
            tracing::info!(job_run = claim.job_run_id, job_type = %claim.job_type, total, "planned");
            if total > ANALYZE_AFTER {
                work::analyze(&mut conn).await?;
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
        if !work::still_planning(conn, claim.job_run_id, owner).await? {
            return Ok(());
        }
        let round = loaded
            .job_run(claim.position as u32)
            .map(|r| r.round)
            .unwrap_or(1);
        let item = PlannedItem {
            account_id: String::new(),
            payload: serde_json::json!({
                "stage": "plan",
                "job_type": claim.job_type,
                "business_date": claim.business_date.to_string(),
            }),
        };
        let reason = format!("planning failed: {}", error.reason);
        work::record_plan_failure(conn, claim.job_run_id, round, item, &error.code, &reason)
            .await?;
        let mut after = loaded.state.clone();
        after.plan_failed(claim.position as u32)?;
        transition::save(conn, &loaded, &after).await?;
        Ok(())
    })
    .await
}

/// What a worker needs to know about a batch's job run (cached); `None` when
/// the run is gone (its execution was deleted under us).
async fn identity(engine: &Engine, job_run_id: i64) -> Result<Option<JobRunIdentity>, Error> {
    if let Some(f) = engine.identity(job_run_id) {
        return Ok(Some(f));
    }
    let mut conn = engine.db().conn().await?;
    let Some((position, job_type, target)) =
        executions::job_run_identity(&mut conn, job_run_id).await?
    else {
        return Ok(None);
    };
    let f = JobRunIdentity {
        position,
        job_type,
        target,
    };
    engine.remember(job_run_id, f.clone());
    Ok(Some(f))
}

async fn process(engine: &Engine, batch: ClaimedBatch) -> Result<(), Error> {
    let Some(run) = identity(engine, batch.job_run_id).await? else {
        return Ok(());
    };
    let items = {
        let mut conn = engine.db().conn().await?;
        work::load_items(&mut conn, &batch).await?
    };
    let ctx = JobContext {
        client_id: run.target.client_id.clone(),
        business_date: run.target.business_date,
        db: engine.db().clone(),
    };
    let outcome = match engine.registry().get(&run.job_type) {
        None => Err(JobError::new(
            "JOB_TYPE_NOT_REGISTERED",
            format!("this service cannot run job type {}", run.job_type),
        )),
        Some(job) => match AssertUnwindSafe(job.process(&ctx, &items))
            .catch_unwind()
            .await
        {
            Ok(Ok(outcomes)) if outcomes.len() == items.len() => Ok(outcomes),
            Ok(Ok(outcomes)) => Err(JobError::new(
                "JOB_OUTCOME_MISMATCH",
                format!("{} outcomes for {} items", outcomes.len(), items.len()),
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(JobError::new("JOB_PANICKED", "processing panicked")),
        },
    };
    let outcomes = match outcome {
        Ok(outcomes) => outcomes,
        Err(e) if batch.attempts < MAX_BATCH_ATTEMPTS => {
            let backoff = f64::from(1u32 << batch.attempts.clamp(0, 6));
            tracing::warn!(batch = batch.batch_id, attempt = batch.attempts, error = %e, "batch failed; will retry");
            let mut conn = engine.db().conn().await?;
            work::release_batch(&mut conn, batch.batch_id, engine.worker_id(), backoff).await?;
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(batch = batch.batch_id, error = %e, "batch failed for good; erroring its items");
            vec![ItemOutcome::error(e.code, e.reason); items.len()]
        }
    };
    let mut errors = BatchErrors::default();
    let mut processed = 0;
    for (item, outcome) in items.iter().zip(outcomes) {
        match outcome {
            ItemOutcome::Processed => processed += 1,
            ItemOutcome::Error { code, reason } => {
                errors.seqs.push(item.seq);
                errors.codes.push(code);
                errors.reasons.push(reason);
            }
        }
    }
    let owner = engine.worker_id();
    let target = run.target.clone();
    let position = run.position;
    let mut conn = engine.db().conn().await?;
    let settled = conn
        .transaction::<_, Error, _>(async move |conn| {
            let Some(counts) = work::settle_batch(conn, &batch, owner, processed, &errors).await?
            else {
                return Ok(None);
            };
            events::append(
                conn,
                &target,
                &[EventBody::CountsChanged {
                    position,
                    counts: Counts {
                        total: counts.total,
                        processed: counts.processed,
                        errored: counts.errored,
                    }
                    .into(),
                }],
            )
            .await?;
            Ok(Some(counts))
        })
        .await?;
    match settled {
        Some(counts) if counts.processed + counts.errored >= counts.total => {
            drop(conn);
            advance(engine, counts.execution_id).await
        }
        Some(_) => Ok(()),
        None => {
            tracing::info!("batch was taken over or discarded; results dropped");
            Ok(())
        }
    }
}

/// Advances an execution whose running job may have settled.
pub(super) async fn advance(engine: &Engine, execution_id: Uuid) -> Result<(), Error> {
    let mut conn = engine.db().conn().await?;
    let moved = conn
        .transaction::<_, Error, _>(async move |conn| {
            let Some(loaded) = executions::load_by_id(conn, execution_id, true).await? else {
                return Ok(false);
            };
            let mut after = loaded.state.clone();
            after.advance();
            if after == loaded.state {
                return Ok(false);
            }
            transition::save(conn, &loaded, &after).await?;
            tracing::info!(
                execution = %execution_id,
                status = after.status.as_str(),
                phase = after.phase.as_str(),
                "execution advanced"
            );
            Ok(true)
        })
        .await?;
    if moved {
        engine.wake();
    }
    Ok(())
}
