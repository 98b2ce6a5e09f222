//! Batches and item outcomes: claiming under a lease, settling, retry
//! rounds, discarding. The engine's hot path: set-based statements only,
//! never a round trip per item. Batch states are [`BatchState`] names; the
//! SQL is built once with them (literals, so partial indexes keep matching).

use diesel::sql_types::{
    Array, BigInt, Double, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use std::sync::LazyLock;

use super::DbError;
use crate::scheduling::domain::execution::JobPhase;
use crate::scheduling::domain::work_item::BatchState;
use crate::scheduling::domain::work_item::WorkItem;

/// A batch claimed by this process.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedBatch {
    /// Identifier.
    #[diesel(sql_type = BigInt)]
    pub batch_id: i64,
    /// Its job run.
    #[diesel(sql_type = BigInt)]
    pub job_run_id: i64,
    /// First item.
    #[diesel(sql_type = Integer)]
    pub first_seq: i32,
    /// Last item.
    #[diesel(sql_type = Integer)]
    pub last_seq: i32,
    /// For a retry batch: exactly these items.
    #[diesel(sql_type = Nullable<Array<Integer>>)]
    pub seqs: Option<Vec<i32>>,
    /// Retry round: the attempt number of its items.
    #[diesel(sql_type = Integer)]
    pub round: i32,
    /// How many times it was claimed.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    /// Claimed from another worker whose lease had expired (a takeover),
    /// not from the ready queue or after a release.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub taken_over: bool,
}

/// Whether the exception window of configuration `c` is open at `$3`: the
/// local time of day in the configuration's zone against the window's start
/// and end (inclusive start, exclusive end; a window crossing midnight is
/// open after its start or before its end), as
/// [`crate::scheduling::domain::config::ExceptionWindow::contains`] reads it.
const WINDOW_OPEN_SQL: &str = "(CASE WHEN c.exception_start_time <= c.exception_end_time \
     THEN ($3 AT TIME ZONE c.time_zone)::time >= c.exception_start_time \
          AND ($3 AT TIME ZONE c.time_zone)::time < c.exception_end_time \
     ELSE ($3 AT TIME ZONE c.time_zone)::time >= c.exception_start_time \
          OR ($3 AT TIME ZONE c.time_zone)::time < c.exception_end_time END)";

/// Claims the oldest claimable batch of a RUNNING job: READY, or CLAIMED
/// with an expired lease (its worker died). `FOR UPDATE SKIP LOCKED` lets
/// every worker of every process claim a different one.
///
/// No batch is handed out while the exception window of its execution's
/// configuration is open at `now` (read in the configuration's zone, the
/// window may cross midnight), unless an operator overrode the window for
/// that execution: the claim itself holds the window, so nothing slips
/// through between two scheduler ticks.
pub async fn claim_batch(
    conn: &mut AsyncPgConnection,
    owner: Uuid,
    lease_secs: f64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<ClaimedBatch>, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE batches b SET state = '{claimed}', lease_owner = $1, \
                 lease_until = now() + make_interval(secs => $2), attempts = b.attempts + 1 \
             FROM (SELECT b2.batch_id, \
                         (b2.state = '{claimed}' AND b2.lease_owner IS NOT NULL) AS taken_over \
                   FROM batches b2 \
                   JOIN job_runs jr ON jr.job_run_id = b2.job_run_id \
                   JOIN executions e ON e.execution_id = jr.execution_id \
                   JOIN job_schedule_configs c ON c.config_id = e.config_id \
                   WHERE b2.state <> '{done}' \
                     AND (b2.state = '{ready}' OR b2.lease_until < now()) \
                     AND jr.phase = '{running}' \
                     AND (c.exception_start_time IS NULL OR e.window_override \
                          OR NOT {window_open}) \
                   ORDER BY b2.batch_id LIMIT 1 \
                   FOR UPDATE OF b2 SKIP LOCKED) c \
             WHERE b.batch_id = c.batch_id \
             RETURNING b.batch_id, b.job_run_id, b.first_seq, b.last_seq, b.seqs, b.round, \
                 b.attempts, c.taken_over",
            claimed = BatchState::Claimed.as_str(),
            done = BatchState::Done.as_str(),
            ready = BatchState::Ready.as_str(),
            running = JobPhase::Running.as_str(),
            window_open = WINDOW_OPEN_SQL,
        )
    });
    let mut rows: Vec<ClaimedBatch> = diesel::sql_query(SQL.as_str())
        .bind::<SqlUuid, _>(owner)
        .bind::<Double, _>(lease_secs)
        .bind::<Timestamptz, _>(now)
        .load(conn)
        .await?;
    Ok(rows.pop())
}

#[derive(QueryableByName)]
struct ItemRow {
    #[diesel(sql_type = Integer)]
    seq: i32,
    #[diesel(sql_type = Text)]
    account_id: String,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
}

/// The work items of a claimed batch, in order.
pub async fn load_items(
    conn: &mut AsyncPgConnection,
    batch: &ClaimedBatch,
) -> Result<Vec<WorkItem>, DbError> {
    let rows: Vec<ItemRow> = match &batch.seqs {
        None => {
            diesel::sql_query(
                "SELECT seq, account_id, payload FROM work_items \
                 WHERE job_run_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            )
            .bind::<BigInt, _>(batch.job_run_id)
            .bind::<Integer, _>(batch.first_seq)
            .bind::<Integer, _>(batch.last_seq)
            .load(conn)
            .await?
        }
        Some(seqs) => {
            diesel::sql_query(
                "SELECT seq, account_id, payload FROM work_items \
                 WHERE job_run_id = $1 AND seq = ANY($2) ORDER BY seq",
            )
            .bind::<BigInt, _>(batch.job_run_id)
            .bind::<Array<Integer>, _>(seqs)
            .load(conn)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|r| WorkItem {
            seq: r.seq,
            account_id: r.account_id,
            payload: r.payload,
        })
        .collect())
}

/// Counters of a job run right after a batch settled.
#[derive(Debug, Clone, QueryableByName)]
pub struct SettledCounts {
    /// The execution of the job run.
    #[diesel(sql_type = SqlUuid)]
    pub execution_id: Uuid,
    /// The job's position.
    #[diesel(sql_type = Integer)]
    pub position: i32,
    /// Planned items.
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    /// Processed items.
    #[diesel(sql_type = BigInt)]
    pub processed: i64,
    /// Errored items.
    #[diesel(sql_type = BigInt)]
    pub errored: i64,
}

/// The errored items of a batch: parallel vectors of seq, code, reason.
#[derive(Debug, Default, Clone)]
pub struct BatchErrors {
    /// Item seqs.
    pub seqs: Vec<i32>,
    /// Their error codes.
    pub codes: Vec<String>,
    /// Their reasons.
    pub reasons: Vec<String>,
}

/// Settles a claimed batch in the caller's transaction: marks it DONE, writes
/// its errored items and bumps the job's counters. `None` when this process
/// no longer holds the batch (its lease was taken over, or the execution was
/// reset): the caller must roll back and drop its results.
pub async fn settle_batch(
    conn: &mut AsyncPgConnection,
    batch: &ClaimedBatch,
    owner: Uuid,
    processed: i32,
    errors: &BatchErrors,
) -> Result<Option<SettledCounts>, DbError> {
    let errored = errors.seqs.len() as i32;
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH done AS ( \
                 UPDATE batches SET state = '{done}', processed = $2, errored = $3, \
                     settle_time = now(), lease_owner = NULL, lease_until = NULL \
                 WHERE batch_id = $1 AND state = '{claimed}' AND lease_owner = $4 \
                 RETURNING job_run_id) \
             UPDATE job_runs j SET processed = j.processed + $2, errored = j.errored + $3 \
             FROM done WHERE j.job_run_id = done.job_run_id \
             RETURNING j.execution_id, j.position, j.total, j.processed, j.errored",
            done = BatchState::Done.as_str(),
            claimed = BatchState::Claimed.as_str(),
        )
    });
    let mut settled: Vec<SettledCounts> = diesel::sql_query(SQL.as_str())
        .bind::<BigInt, _>(batch.batch_id)
        .bind::<Integer, _>(processed)
        .bind::<Integer, _>(errored)
        .bind::<SqlUuid, _>(owner)
        .load(conn)
        .await?;
    let Some(counts) = settled.pop() else {
        return Ok(None);
    };
    if errored > 0 {
        write_errors(conn, batch.job_run_id, batch.round, batch.batch_id, errors).await?;
    }
    Ok(Some(counts))
}

/// Writes errored items as the `current` outcome of attempt `round` and adds
/// them to the job's per-code counters.
pub(super) async fn write_errors(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    round: i32,
    batch_id: i64,
    errors: &BatchErrors,
) -> Result<(), DbError> {
    diesel::sql_query(
        "INSERT INTO work_item_errors (job_run_id, seq, attempt, batch_id, error_code, reason) \
         SELECT $1, s, $2, $3, c, r FROM unnest($4::int4[], $5::text[], $6::text[]) AS t(s, c, r)",
    )
    .bind::<BigInt, _>(job_run_id)
    .bind::<Integer, _>(round)
    .bind::<BigInt, _>(batch_id)
    .bind::<Array<Integer>, _>(&errors.seqs)
    .bind::<Array<Text>, _>(&errors.codes)
    .bind::<Array<Text>, _>(&errors.reasons)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO job_run_error_counts (job_run_id, error_code, count) \
         SELECT $1, c, count(*) FROM unnest($2::text[]) AS c GROUP BY c \
         ON CONFLICT (job_run_id, error_code) \
         DO UPDATE SET count = job_run_error_counts.count + EXCLUDED.count",
    )
    .bind::<BigInt, _>(job_run_id)
    .bind::<Array<Text>, _>(&errors.codes)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a batch back after a whole-batch failure: claimable again after
/// `backoff_secs`. Whether this process still held it.
pub async fn release_batch(
    conn: &mut AsyncPgConnection,
    batch_id: i64,
    owner: Uuid,
    backoff_secs: f64,
) -> Result<bool, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE batches SET lease_owner = NULL, \
                 lease_until = now() + make_interval(secs => $3) \
             WHERE batch_id = $1 AND state = '{claimed}' AND lease_owner = $2",
            claimed = BatchState::Claimed.as_str(),
        )
    });
    let n = diesel::sql_query(SQL.as_str())
        .bind::<BigInt, _>(batch_id)
        .bind::<SqlUuid, _>(owner)
        .bind::<Double, _>(backoff_secs)
        .execute(conn)
        .await?;
    Ok(n > 0)
}

#[derive(QueryableByName)]
pub(super) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(super) n: i64,
}

/// Retry: the job's errored items go back to pending in new batches of
/// `batch_size` for round `round`; their error rows stay as history. Returns
/// how many items were re-queued.
pub async fn requeue_errors(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    round: i32,
    batch_size: i32,
) -> Result<i64, DbError> {
    let rows: Vec<Count> = diesel::sql_query(
        "WITH e AS ( \
             UPDATE work_item_errors SET current = false \
             WHERE job_run_id = $1 AND current RETURNING seq), \
         g AS (SELECT seq, (row_number() OVER (ORDER BY seq) - 1) / $3 AS grp FROM e), \
         b AS ( \
             INSERT INTO batches (job_run_id, first_seq, last_seq, seqs, round) \
             SELECT $1, min(seq), max(seq), array_agg(seq ORDER BY seq), $2 \
             FROM g GROUP BY grp RETURNING array_length(seqs, 1) AS n) \
         SELECT COALESCE(sum(n), 0)::int8 AS n FROM b",
    )
    .bind::<BigInt, _>(job_run_id)
    .bind::<Integer, _>(round)
    .bind::<Integer, _>(batch_size)
    .load(conn)
    .await?;
    diesel::sql_query("DELETE FROM job_run_error_counts WHERE job_run_id = $1")
        .bind::<BigInt, _>(job_run_id)
        .execute(conn)
        .await?;
    diesel::sql_query("UPDATE job_runs SET round = $2 WHERE job_run_id = $1")
        .bind::<BigInt, _>(job_run_id)
        .bind::<Integer, _>(round)
        .execute(conn)
        .await?;
    Ok(rows.into_iter().next().map(|r| r.n).unwrap_or(0))
}

/// Deletes every work item, batch and error of these job runs and returns
/// them to round 1 (Reset, re-planning, deleting a configuration). The plan
/// lease is left alone: a planner discards before it plans.
pub async fn discard(conn: &mut AsyncPgConnection, job_run_ids: &[i64]) -> Result<(), DbError> {
    for table in [
        "work_items",
        "batches",
        "work_item_errors",
        "job_run_error_counts",
    ] {
        diesel::sql_query(format!("DELETE FROM {table} WHERE job_run_id = ANY($1)"))
            .bind::<Array<BigInt>, _>(job_run_ids)
            .execute(conn)
            .await?;
    }
    diesel::sql_query(
        "UPDATE job_runs SET round = 1, plan_failed = false WHERE job_run_id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(job_run_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many batches of these job runs are held by a live worker.
pub async fn in_flight(conn: &mut AsyncPgConnection, job_run_ids: &[i64]) -> Result<i64, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT count(*) AS n FROM batches WHERE job_run_id = ANY($1) \
             AND state = '{claimed}' AND lease_owner IS NOT NULL AND lease_until > now()",
            claimed = BatchState::Claimed.as_str(),
        )
    });
    let rows: Vec<Count> = diesel::sql_query(SQL.as_str())
        .bind::<Array<BigInt>, _>(job_run_ids)
        .load(conn)
        .await?;
    Ok(rows.into_iter().next().map(|r| r.n).unwrap_or(0))
}

#[derive(QueryableByName)]
struct ExecutionIdRow {
    #[diesel(sql_type = SqlUuid)]
    execution_id: Uuid,
}

/// Executions with a RUNNING job whose items are all settled but which was
/// not advanced (its settler died between the two transactions). The
/// `phase IN (...)` repeats the predicate of the partial index
/// `job_runs_active_idx` so the planner uses it; `phase = RUNNING` is the
/// condition itself.
pub async fn executions_to_advance(conn: &mut AsyncPgConnection) -> Result<Vec<Uuid>, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT DISTINCT execution_id FROM job_runs \
             WHERE phase IN ('{planning}', '{running}', '{paused}') \
               AND phase = '{running}' AND processed + errored >= total",
            planning = JobPhase::Planning.as_str(),
            running = JobPhase::Running.as_str(),
            paused = JobPhase::PausedByWindow.as_str(),
        )
    });
    let rows: Vec<ExecutionIdRow> = diesel::sql_query(SQL.as_str()).load(conn).await?;
    Ok(rows.into_iter().map(|r| r.execution_id).collect())
}

/// SQL: whether the process owning leases as `{owner}` holds its liveness
/// lock (see `engine::liveness`): a granted session advisory lock, in this
/// database, on the bigint made of the first eight bytes of its id.
fn owner_alive(owner: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks l \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND (l.classid::int8 << 32) | l.objid::int8 \
                   = ('x' || substr(replace({owner}::text, '-', ''), 1, 16))::bit(64)::int8)"
    )
}

/// Ends now the leases of batches and plans whose owner process is dead
/// (its liveness lock is free), so they are claimed again at once rather
/// than when their lease runs out. Leases of `me` are never touched. How
/// many leases it ended.
pub async fn end_leases_of_dead_owners(
    conn: &mut AsyncPgConnection,
    me: Uuid,
) -> Result<i64, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH owners AS ( \
                 SELECT DISTINCT lease_owner AS owner FROM batches \
                 WHERE state = '{claimed}' AND lease_owner IS NOT NULL \
                   AND lease_owner <> $1 AND lease_until > now()), \
             dead AS (SELECT owner FROM owners WHERE NOT {owner_alive}), \
             b AS ( \
                 UPDATE batches SET lease_until = now() - interval '1 millisecond' \
                 WHERE state = '{claimed}' AND lease_owner IN (SELECT owner FROM dead) \
                 RETURNING 1), \
             p AS ( \
                 UPDATE job_runs SET plan_lease_until = now() - interval '1 millisecond' \
                 WHERE phase IN ('{planning}', '{running}', '{paused}') \
                   AND phase = '{planning}' AND plan_owner IS NOT NULL \
                   AND plan_owner <> $1 AND plan_lease_until > now() \
                   AND NOT {plan_owner_alive} \
                 RETURNING 1) \
             SELECT ((SELECT count(*) FROM b) + (SELECT count(*) FROM p))::int8 AS n",
            claimed = BatchState::Claimed.as_str(),
            planning = JobPhase::Planning.as_str(),
            running = JobPhase::Running.as_str(),
            paused = JobPhase::PausedByWindow.as_str(),
            owner_alive = owner_alive("owner"),
            plan_owner_alive = owner_alive("plan_owner"),
        )
    });
    let rows: Vec<Count> = diesel::sql_query(SQL.as_str())
        .bind::<SqlUuid, _>(me)
        .load(conn)
        .await?;
    Ok(rows.into_iter().next().map(|r| r.n).unwrap_or(0))
}
