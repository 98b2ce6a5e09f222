//! Writing a change of an execution: the new state, the events that
//! describe it, and the action that caused it, all in the caller's
//! transaction. Every state change of an execution goes through here.

use diesel_async::AsyncPgConnection;

use crate::scheduling::domain::event::{changes, ActionRecord, EventBody};
use crate::scheduling::domain::execution::{ActionKind, Execution, ExecutionState};
use crate::scheduling::domain::JobPosition;
use crate::scheduling::store::events::{self, EventTarget};
use crate::scheduling::store::executions::{self, NewAction};
use crate::scheduling::Error;

/// Who acts and why; recorded with every action.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Who acts: the calling key's name, or `scheduler`.
    pub actor: String,
    /// Whom the calling key said it acts for (`x-on-behalf-of`), recorded
    /// beside its name.
    pub on_behalf_of: Option<String>,
    /// The reason given.
    pub reason: String,
}

/// The event target of an execution.
pub fn target_of(execution: &Execution) -> EventTarget {
    EventTarget {
        client_id: execution.key.client_id.clone(),
        execution_id: execution.execution_id,
        config_id: execution.key.config_id,
        business_date: execution.key.business_date,
    }
}

/// Saves the move from `loaded.state` to `after` and writes its events.
pub async fn save(
    conn: &mut AsyncPgConnection,
    loaded: &Execution,
    after: &ExecutionState,
) -> Result<(), Error> {
    executions::save(conn, loaded, after).await?;
    events::append(conn, &target_of(loaded), &changes(&loaded.state, after)).await?;
    Ok(())
}

/// Records an action on `execution` and its event.
pub async fn record(
    conn: &mut AsyncPgConnection,
    execution: &Execution,
    actor: &Actor,
    kind: ActionKind,
    job_position: Option<JobPosition>,
    outcome: String,
) -> Result<ActionRecord, Error> {
    let action = executions::record_action(
        conn,
        execution.execution_id,
        &NewAction {
            kind,
            actor: &actor.actor,
            on_behalf_of: actor.on_behalf_of.as_deref(),
            reason: &actor.reason,
            job_position,
            outcome,
        },
    )
    .await?;
    events::append(
        conn,
        &target_of(execution),
        &[EventBody::ActionTaken {
            action: action.clone(),
        }],
    )
    .await?;
    Ok(action)
}

/// NOT_FOUND for the execution of a configuration and date.
pub fn not_found(key: &crate::scheduling::domain::execution::ExecutionKey) -> Error {
    Error::not_found(
        "execution",
        format!("of config {} for {}", key.config_id, key.business_date),
    )
}
