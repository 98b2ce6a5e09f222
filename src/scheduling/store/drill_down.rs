//! The drill-down reads of a job: errors by code (from the counters) and
//! the errored work items of one code with their earlier attempts. Rows are
//! turned into the domain's drill-down types here.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use crate::scheduling::domain::drill_down::{ErrorCodeCount, ErroredWorkItem, WorkItemAttempt};

/// Errored items of one code, as the third drill-down level lists them.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct ErroredItemRow {
    /// Item seq (its id within the job).
    #[diesel(sql_type = Integer)]
    pub seq: i32,
    /// Account.
    #[diesel(sql_type = Text)]
    pub account_id: String,
    /// Batch of its latest attempt.
    #[diesel(sql_type = BigInt)]
    pub batch_id: i64,
    /// Code.
    #[diesel(sql_type = Text)]
    pub error_code: String,
    /// Reason.
    #[diesel(sql_type = Text)]
    pub reason: String,
    /// JSON input as text.
    #[diesel(sql_type = Text)]
    pub payload: String,
    /// Attempt number of the latest attempt.
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    /// Whether that failure is superseded and the item has no current
    /// error (a retry fixed it).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub resolved: bool,
}

/// Up to `limit` items of a job currently in ERROR with `code`, after seq
/// `after`; with `include_resolved`, also the items whose failure with
/// `code` a retry fixed (their last such failure).
pub async fn errored_items(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    code: &str,
    include_resolved: bool,
    after: i32,
    limit: i64,
) -> Result<Vec<ErroredWorkItem>, DbError> {
    // The current view keeps to the partial index on current errors (one
    // index range per page); only the view with resolved failures pays for
    // looking past it.
    let sql = if include_resolved {
        "SELECT DISTINCT ON (e.seq) e.seq, w.account_id, e.batch_id, e.error_code, e.reason, \
                    w.payload::text AS payload, e.attempt, NOT e.current AS resolved \
             FROM work_item_errors e \
             JOIN work_items w ON w.job_run_id = e.job_run_id AND w.seq = e.seq \
             WHERE e.job_run_id = $1 AND e.error_code = $2 AND e.seq > $3 \
               AND (e.current OR NOT EXISTS ( \
                    SELECT 1 FROM work_item_errors c \
                    WHERE c.job_run_id = e.job_run_id AND c.seq = e.seq AND c.current)) \
             ORDER BY e.seq, e.current DESC, e.attempt DESC LIMIT $4"
    } else {
        "SELECT e.seq, w.account_id, e.batch_id, e.error_code, e.reason, \
                    w.payload::text AS payload, e.attempt, false AS resolved \
             FROM work_item_errors e \
             JOIN work_items w ON w.job_run_id = e.job_run_id AND w.seq = e.seq \
             WHERE e.job_run_id = $1 AND e.error_code = $2 AND e.current AND e.seq > $3 \
             ORDER BY e.seq LIMIT $4"
    };
    let rows: Vec<ErroredItemRow> = diesel::sql_query(sql)
        .bind::<BigInt, _>(job_run_id)
        .bind::<Text, _>(code)
        .bind::<Integer, _>(after)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
    let seqs: Vec<i32> = rows
        .iter()
        .filter(|r| r.attempt > 1)
        .map(|r| r.seq)
        .collect();
    let history = if seqs.is_empty() {
        Vec::new()
    } else {
        earlier_attempts(conn, job_run_id, &seqs).await?
    };
    Ok(rows
        .into_iter()
        .map(|row| ErroredWorkItem {
            work_item_id: i64::from(row.seq),
            account_id: row.account_id,
            batch_id: row.batch_id,
            error_code: row.error_code,
            reason: row.reason,
            payload_json: row.payload,
            attempts: u32::try_from(row.attempt.max(1)).unwrap_or(1),
            resolved: row.resolved,
            history: history
                .iter()
                .filter(|h| h.seq == row.seq && h.attempt < row.attempt)
                .map(|h| WorkItemAttempt {
                    attempt: u32::try_from(h.attempt.max(1)).unwrap_or(1),
                    batch_id: h.batch_id,
                    error_code: h.error_code.clone(),
                    reason: h.reason.clone(),
                    time: h.settle_time,
                })
                .collect(),
        })
        .collect())
}

/// An earlier, superseded errored attempt.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct AttemptRow {
    /// Item seq.
    #[diesel(sql_type = Integer)]
    pub seq: i32,
    /// Attempt number.
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    /// Its batch.
    #[diesel(sql_type = BigInt)]
    pub batch_id: i64,
    /// Its code.
    #[diesel(sql_type = Text)]
    pub error_code: String,
    /// Its reason.
    #[diesel(sql_type = Text)]
    pub reason: String,
    /// When it settled.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub settle_time: DateTime<Utc>,
}

/// The superseded attempts of these items, oldest first.
async fn earlier_attempts(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
    seqs: &[i32],
) -> Result<Vec<AttemptRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT seq, attempt, batch_id, error_code, reason, settle_time FROM work_item_errors \
         WHERE job_run_id = $1 AND seq = ANY($2) AND NOT current ORDER BY seq, attempt",
    )
    .bind::<BigInt, _>(job_run_id)
    .bind::<Array<Integer>, _>(seqs)
    .load(conn)
    .await?)
}

/// Errors by code of a job, most frequent first.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct ErrorCountRow {
    /// Code.
    #[diesel(sql_type = Text)]
    pub error_code: String,
    /// Items in ERROR with it.
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// The second drill-down level, from the counters.
pub async fn error_counts(
    conn: &mut AsyncPgConnection,
    job_run_id: i64,
) -> Result<Vec<ErrorCodeCount>, DbError> {
    let rows: Vec<ErrorCountRow> = diesel::sql_query(
        "SELECT error_code, count FROM job_run_error_counts \
         WHERE job_run_id = $1 AND count > 0 ORDER BY count DESC, error_code",
    )
    .bind::<BigInt, _>(job_run_id)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ErrorCodeCount {
            error_code: r.error_code,
            count: u64::try_from(r.count).unwrap_or(0),
        })
        .collect())
}
