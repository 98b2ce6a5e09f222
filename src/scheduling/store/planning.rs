//! Planning a job run: claiming it, copying its work items in, forming
//! range batches, or recording that the plan failed as a whole.

use std::sync::LazyLock;

use diesel::sql_types::{Array, BigInt, Double, Integer, Jsonb, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::work::{discard, write_errors, BatchErrors, Count};
use super::DbError;
use crate::scheduling::domain::execution::JobPhase;
use crate::scheduling::domain::work_item::PlannedItem;
use crate::scheduling::domain::JobPosition;

/// Inserts planned items numbered from `first_seq`, in one statement.
pub async fn insert_items(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    first_seq: i32,
    items: Vec<PlannedItem>,
) -> Result<(), DbError> {
    let n = items.len() as i32;
    let seqs: Vec<i32> = (first_seq..first_seq + n).collect();
    let (accounts, payloads): (Vec<String>, Vec<serde_json::Value>) =
        items.into_iter().map(|i| (i.account_id, i.payload)).unzip();
    diesel::sql_query(
        "INSERT INTO work_items (job_run_id, seq, account_id, payload) \
         SELECT $1, s, a, p FROM unnest($2::int4[], $3::text[], $4::jsonb[]) AS t(s, a, p)",
    )
    .bind::<BigInt, _>(job_run_id)
    .bind::<Array<Integer>, _>(seqs)
    .bind::<Array<Text>, _>(accounts)
    .bind::<Array<Jsonb>, _>(payloads)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forms the batches of a freshly planned job: contiguous ranges of
/// `batch_size` items.
pub async fn insert_range_batches(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    total: i32,
    batch_size: i32,
) -> Result<(), DbError> {
    diesel::sql_query(
        "INSERT INTO batches (job_run_id, first_seq, last_seq, round) \
         SELECT $1, s, LEAST(s + $3 - 1, $2), 1 FROM generate_series(1, $2, $3) AS s",
    )
    .bind::<BigInt, _>(job_run_id)
    .bind::<Integer, _>(total)
    .bind::<Integer, _>(batch_size)
    .execute(conn)
    .await?;
    Ok(())
}

/// A plan that failed as a whole: the job run's work becomes one errored item
/// (`item`, attempt `round`, batch 0) with the failure's code, and the run is
/// marked so that a retry plans again.
pub async fn record_plan_failure(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    round: i32,
    item: PlannedItem,
    code: &str,
    reason: &str,
) -> Result<(), DbError> {
    discard(conn, &[job_run_id]).await?;
    insert_items(conn, job_run_id, 1, vec![item]).await?;
    let errors = BatchErrors {
        seqs: vec![1],
        codes: vec![code.to_string()],
        reasons: vec![reason.to_string()],
    };
    write_errors(conn, job_run_id, round, 0, &errors).await?;
    diesel::sql_query("UPDATE job_runs SET plan_failed = true, round = $2 WHERE job_run_id = $1")
        .bind::<BigInt, _>(job_run_id)
        .bind::<Integer, _>(round)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether `owner` still holds the plan of a job run that is PLANNING.
pub async fn still_planning(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    owner: Uuid,
) -> Result<bool, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT count(*) AS n FROM job_runs \
             WHERE job_run_id = $1 AND phase = '{planning}' AND plan_owner = $2",
            planning = JobPhase::Planning.as_str(),
        )
    });
    let rows: Vec<Count> = diesel::sql_query(SQL.as_str())
        .bind::<BigInt, _>(job_run_id)
        .bind::<SqlUuid, _>(owner)
        .load(conn)
        .await?;
    Ok(rows.into_iter().next().map(|r| r.n) == Some(1))
}

/// Deletes the batches of a job run (before a fresh plan forms its own).
pub async fn delete_batches(conn: &mut AsyncPgConnection, job_run_id: i64) -> Result<(), DbError> {
    diesel::sql_query("DELETE FROM batches WHERE job_run_id = $1")
        .bind::<BigInt, _>(job_run_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A job run handed to this process for planning.
#[derive(Debug, Clone)]
pub struct PlanClaim {
    /// The job run.
    pub job_run_id: i64,
    /// Its execution.
    pub execution_id: Uuid,
    /// Its position.
    pub position: JobPosition,
    /// Its job type.
    pub job_type: String,
    /// The client.
    pub client_id: String,
    /// The business date.
    pub business_date: chrono::NaiveDate,
}

/// A [`PlanClaim`] as the claim statement returns it.
#[derive(QueryableByName)]
struct PlanClaimRow {
    #[diesel(sql_type = BigInt)]
    job_run_id: i64,
    #[diesel(sql_type = SqlUuid)]
    execution_id: Uuid,
    #[diesel(sql_type = Integer)]
    position: i32,
    #[diesel(sql_type = Text)]
    job_type: String,
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = diesel::sql_types::Date)]
    business_date: chrono::NaiveDate,
}

/// Claims a job run waiting to be planned (or whose planner died).
pub async fn claim_plan(
    conn: &mut AsyncPgConnection,
    owner: Uuid,
    lease_secs: f64,
) -> Result<Option<PlanClaim>, DbError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE job_runs j SET plan_owner = $1, \
                 plan_lease_until = now() + make_interval(secs => $2) \
             FROM (SELECT job_run_id FROM job_runs \
                   WHERE phase = '{planning}' \
                     AND (plan_owner IS NULL OR plan_lease_until < now()) \
                   ORDER BY job_run_id LIMIT 1 FOR UPDATE SKIP LOCKED) c, executions e \
             WHERE j.job_run_id = c.job_run_id AND e.execution_id = j.execution_id \
             RETURNING j.job_run_id, j.execution_id, j.position, j.job_type, e.client_id, \
                 e.business_date",
            planning = JobPhase::Planning.as_str(),
        )
    });
    let mut rows: Vec<PlanClaimRow> = diesel::sql_query(SQL.as_str())
        .bind::<SqlUuid, _>(owner)
        .bind::<Double, _>(lease_secs)
        .load(conn)
        .await?;
    rows.pop()
        .map(|r| {
            Ok(PlanClaim {
                job_run_id: r.job_run_id,
                execution_id: r.execution_id,
                position: super::stored_position(r.position)?,
                job_type: r.job_type,
                client_id: r.client_id,
                business_date: r.business_date,
            })
        })
        .transpose()
}

/// Refreshes planner statistics after a large plan, so the claim query keeps
/// its index plans.
pub async fn analyze(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    diesel::sql_query("ANALYZE batches, work_items")
        .execute(conn)
        .await?;
    Ok(())
}

/// Why copying a plan's items in failed.
#[derive(Debug)]
pub enum CopyError<E> {
    /// The item source failed (the job's own error).
    Source(E),
    /// The database failed.
    Db(tokio_postgres::Error),
}

/// Replaces the work items of a job run with `chunks`, numbered from 1, by
/// binary COPY on a dedicated connection in one transaction (several times
/// faster than INSERT for large plans). Returns how many items were copied.
/// Nothing is visible to the engine until the caller forms the batches.
pub async fn copy_items<E>(
    url: &str,
    job_run_id: i64,
    chunks: &mut tokio::sync::mpsc::Receiver<Result<Vec<PlannedItem>, E>>,
) -> Result<i32, CopyError<E>> {
    use futures_util::pin_mut;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;

    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(CopyError::Db)?;
    let driver = tokio::spawn(connection);
    let result = async {
        let tx = client.transaction().await.map_err(CopyError::Db)?;
        tokio_postgres::Transaction::execute(
            &tx,
            "DELETE FROM work_items WHERE job_run_id = $1",
            &[&job_run_id],
        )
        .await
        .map_err(CopyError::Db)?;
        let sink = tx
            .copy_in("COPY work_items (job_run_id, seq, account_id, payload) FROM STDIN BINARY")
            .await
            .map_err(CopyError::Db)?;
        let writer =
            BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT4, Type::TEXT, Type::JSONB]);
        pin_mut!(writer);
        let mut seq: i32 = 0;
        while let Some(chunk) = chunks.recv().await {
            for item in chunk.map_err(CopyError::Source)? {
                seq += 1;
                writer
                    .as_mut()
                    .write(&[&job_run_id, &seq, &item.account_id, &item.payload])
                    .await
                    .map_err(CopyError::Db)?;
            }
        }
        writer.as_mut().finish().await.map_err(CopyError::Db)?;
        tx.commit().await.map_err(CopyError::Db)?;
        Ok(seq)
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}
