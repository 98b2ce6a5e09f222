//! The worker loop: plan a job ([`super::planner`]), or claim a batch,
//! process it and settle it; advance executions whose job just settled.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use diesel_async::AsyncConnection;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::planner::plan;
use super::transition;
use super::{Engine, JobRunIdentity};
use crate::scheduling::domain::event::EventBody;
use crate::scheduling::domain::execution::Counts;
use crate::scheduling::job::{ItemOutcome, JobContext, JobError};
use crate::scheduling::store::events;
use crate::scheduling::store::executions;
use crate::scheduling::store::planning;
use crate::scheduling::store::work::{self, BatchErrors, ClaimedBatch};
use crate::scheduling::Error;

/// A whole-batch failure is retried this many times before its items are
/// errored with the failure's code.
const MAX_BATCH_ATTEMPTS: i32 = 3;

/// A settle is tried this many times (about 10 s with backoff) before the
/// batch is released.
const SETTLE_ATTEMPTS: u32 = 8;

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
    if let Some(claim) = planning::claim_plan(&mut conn, engine.worker_id(), lease).await? {
        drop(conn);
        let _busy = engine.busy();
        let span = tracing::info_span!(
            "plan",
            client = %claim.client_id,
            execution = %claim.execution_id,
            position = claim.position.get(),
            job_run = claim.job_run_id,
        );
        plan(engine, claim).instrument(span).await?;
        return Ok(true);
    }
    let claiming = Instant::now();
    let claimed =
        work::claim_batch(&mut conn, engine.worker_id(), lease, engine.clock().now()).await?;
    engine
        .metrics()
        .claim(claiming.elapsed(), claimed.is_some());
    if let Some(batch) = claimed {
        drop(conn);
        let _busy = engine.busy();
        if batch.taken_over {
            engine.metrics().lease_taken_over();
        }
        let span = tracing::info_span!(
            "batch",
            batch = batch.batch_id,
            job_run = batch.job_run_id,
            client = tracing::field::Empty,
            execution = tracing::field::Empty,
            position = tracing::field::Empty,
        );
        process(engine, batch).instrument(span).await?;
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
    let started = Instant::now();
    let Some(run) = identity(engine, batch.job_run_id).await? else {
        return Ok(());
    };
    let span = tracing::Span::current();
    span.record("client", run.target.client_id.as_str());
    span.record(
        "execution",
        tracing::field::display(run.target.execution_id),
    );
    span.record("position", run.position.get());
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
            engine
                .metrics()
                .batch_ended(&run.job_type, "retried", started.elapsed());
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
    let errored = errors.seqs.len() as u64;
    let settled = match settle_retrying(engine, &batch, &run, processed, &errors).await {
        Ok(settled) => settled,
        Err(e) => {
            // The database stayed away: give the batch back rather than
            // leave it to its lease (best effort; the reaper and the lease
            // cover a failure here too).
            tracing::warn!(batch = batch.batch_id, error = %e, "settle failed; releasing the batch");
            if let Ok(mut conn) = engine.db().conn().await {
                let _ =
                    work::release_batch(&mut conn, batch.batch_id, engine.worker_id(), 0.0).await;
            }
            return Err(e);
        }
    };
    let metrics = engine.metrics();
    if settled.is_some() {
        metrics.items_settled(
            &run.job_type,
            &run.target.client_id,
            processed as u64,
            errored,
        );
    }
    let outcome = if settled.is_some() { "settled" } else { "lost" };
    metrics.batch_ended(&run.job_type, outcome, started.elapsed());
    match settled {
        Some(counts) if counts.processed + counts.errored >= counts.total => {
            advance(engine, counts.execution_id).await
        }
        Some(_) => Ok(()),
        None => {
            tracing::info!("batch was taken over or discarded; results dropped");
            Ok(())
        }
    }
}

/// Settles a batch (its outcome and counters, with their event) in one
/// transaction, retrying with backoff while the database is away (a
/// restart mid-batch): settling twice is harmless, since only the lease
/// holder's first settle matches. `None` when the batch was no longer ours.
async fn settle_retrying(
    engine: &Engine,
    batch: &ClaimedBatch,
    run: &JobRunIdentity,
    processed: i32,
    errors: &BatchErrors,
) -> Result<Option<work::SettledCounts>, Error> {
    let mut backoff = std::time::Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match settle_once(engine, batch, run, processed, errors).await {
            Ok(settled) => return Ok(settled),
            Err(e) if attempt < SETTLE_ATTEMPTS => {
                tracing::warn!(batch = batch.batch_id, attempt, error = %e, "settle failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn settle_once(
    engine: &Engine,
    batch: &ClaimedBatch,
    run: &JobRunIdentity,
    processed: i32,
    errors: &BatchErrors,
) -> Result<Option<work::SettledCounts>, Error> {
    let owner = engine.worker_id();
    let target = run.target.clone();
    let position = run.position;
    let (batch, errors) = (batch.clone(), errors.clone());
    let mut conn = engine.db().conn().await?;
    conn.transaction::<_, Error, _>(async move |conn| {
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
    .await
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
