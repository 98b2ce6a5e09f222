//! The exception window as it applies to one execution: whether it is open
//! now and whether it holds the execution's work (an operator may override
//! it for an execution). The batch claim enforces the same rule in SQL.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use crate::scheduling::domain::calendar;
use crate::scheduling::domain::execution::{Execution, ExecutionKey};
use crate::scheduling::store::{configs, executions};
use crate::scheduling::Error;

/// When the exception window of the execution's configuration, open at
/// `now`, ends; `None` when it is closed (or the configuration is gone).
pub async fn open_until(
    conn: &mut AsyncPgConnection,
    key: &ExecutionKey,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Error> {
    let Some(config) = configs::load(conn, &key.client_id, key.config_id).await? else {
        return Ok(None);
    };
    Ok(calendar::exception_window_end(&config.draft, now))
}

/// Whether the window holds `execution`'s work at `now`: open, and not
/// overridden for it.
pub async fn holds(
    conn: &mut AsyncPgConnection,
    execution: &Execution,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    if open_until(conn, &execution.key, now).await?.is_none() {
        return Ok(false);
    }
    Ok(!executions::window_override(conn, execution.execution_id).await?)
}
