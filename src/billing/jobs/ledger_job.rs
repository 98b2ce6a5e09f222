//! What the four ledger jobs share: turning store failures into batch
//! errors, reading work item payloads, and planning in keyset pages.

use std::future::Future;

use serde::de::DeserializeOwned;

use crate::db::{Conn, DbError};
use crate::scheduling::job::{
    ItemOutcome, JobContext, JobError, PlanStream, PlannedItem, WorkItem,
};

/// Work items planned per page (and so per chunk the engine inserts).
pub(crate) const PLAN_PAGE: i64 = 5000;

/// Work item error code of a payload that does not parse.
pub(crate) const INVALID_PAYLOAD: &str = "INVALID_PAYLOAD";

/// A store failure as a batch (or plan) failure: the engine retries it.
pub(crate) fn ledger_error(e: DbError) -> JobError {
    match e {
        DbError::Pool(reason) => JobError::new("LEDGER_UNAVAILABLE", reason),
        other => JobError::new("LEDGER_QUERY_FAILED", other.to_string()),
    }
}

/// A pooled connection, or the batch failure saying why there is none.
pub(crate) async fn ledger_conn(ctx: &JobContext) -> Result<Conn, JobError> {
    ctx.db.conn().await.map_err(ledger_error)
}

/// The item's payload as `T`, or the item's INVALID_PAYLOAD outcome.
pub(crate) fn payload<T: DeserializeOwned>(item: &WorkItem) -> Result<T, ItemOutcome> {
    serde_json::from_value(item.payload.clone()).map_err(|e| {
        ItemOutcome::error(
            INVALID_PAYLOAD,
            format!("payload of item {} does not parse: {e}", item.seq),
        )
    })
}

/// The item's payload as JSON, for planning.
// Invariant: payloads are plain structs of strings, numbers and dates,
// which always serialize.
#[allow(clippy::expect_used)]
pub(crate) fn to_payload<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("payloads serialize")
}

/// A plan read in keyset pages: `fetch(after)` returns the page after the
/// cursor `after` (`None`: the first page) and the cursor of its last row.
/// The stream ends after an empty or short page, so a job with no work
/// yields no chunk at all.
pub(crate) fn paged_plan<K, F, Fut>(fetch: F) -> PlanStream
where
    K: Send + 'static,
    F: FnMut(Option<K>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<PlannedItem>, Option<K>), JobError>> + Send + 'static,
{
    Box::pin(futures_util::stream::try_unfold(
        (fetch, None::<K>, false),
        |(mut fetch, cursor, done)| async move {
            if done {
                return Ok(None);
            }
            let (items, next) = fetch(cursor).await?;
            if items.is_empty() {
                return Ok(None);
            }
            let last = (items.len() as i64) < PLAN_PAGE || next.is_none();
            Ok(Some((items, (fetch, next, last))))
        },
    ))
}
