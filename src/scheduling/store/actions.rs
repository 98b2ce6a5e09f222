//! The action history of executions: who did what, when and why, numbered
//! per client.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::executions::bad;
use super::schema::execution_actions;
use super::DbError;
use crate::scheduling::domain::event::ActionRecord;
use crate::scheduling::domain::execution::ActionKind;
use crate::scheduling::domain::JobPosition;

/// A row of `execution_actions`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = execution_actions, check_for_backend(diesel::pg::Pg))]
pub struct ActionRow {
    /// Identifier.
    pub action_id: i64,
    /// Kind name.
    pub kind: String,
    /// Actor.
    pub actor: String,
    /// Reason.
    pub reason: String,
    /// Job position or 0.
    pub job_position: i32,
    /// Outcome text.
    pub outcome: String,
    /// When.
    pub time: DateTime<Utc>,
    /// Whom the key said it acted for.
    pub on_behalf_of: Option<String>,
    /// Its number among the client's actions (the API's `action_id`).
    pub client_number: i64,
}

impl TryFrom<ActionRow> for ActionRecord {
    type Error = DbError;

    fn try_from(r: ActionRow) -> Result<Self, DbError> {
        Ok(ActionRecord {
            action_id: r.client_number,
            kind: ActionKind::parse(&r.kind).ok_or_else(|| bad("action kind", &r.kind))?,
            actor: r.actor,
            reason: r.reason,
            job_position: super::stored_position_or_none(r.job_position)?,
            outcome: r.outcome,
            time: r.time,
            on_behalf_of: r.on_behalf_of,
        })
    }
}

/// What an action record says.
#[derive(Debug, Clone)]
pub struct NewAction<'a> {
    /// What was done.
    pub kind: ActionKind,
    /// Who: the key's name, or `scheduler`.
    pub actor: &'a str,
    /// Whom the key said it acted for.
    pub on_behalf_of: Option<&'a str>,
    /// Why.
    pub reason: &'a str,
    /// The job acted on, if any (stored as 0 when none).
    pub job_position: Option<JobPosition>,
    /// What it did.
    pub outcome: String,
}

/// Records an action.
pub async fn record_action(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
    action: &NewAction<'_>,
) -> Result<ActionRecord, DbError> {
    let number = next_action_number(conn, execution_id).await?;
    let row = diesel::insert_into(execution_actions::table)
        .values((
            execution_actions::client_number.eq(number),
            execution_actions::execution_id.eq(execution_id),
            execution_actions::kind.eq(action.kind.as_str()),
            execution_actions::actor.eq(action.actor),
            execution_actions::reason.eq(action.reason),
            execution_actions::job_position.eq(action.job_position.map_or(0, i32::from)),
            execution_actions::outcome.eq(&action.outcome),
            execution_actions::on_behalf_of.eq(action.on_behalf_of),
        ))
        .returning(ActionRow::as_returning())
        .get_result(conn)
        .await?;
    row.try_into()
}

#[derive(QueryableByName)]
struct ActionNumber {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    last_number: i64,
}

/// The next number of the actions of the client that owns `execution_id`
/// (actions are numbered per client, so one client's ids say nothing of
/// another's activity). The counter row is locked until the transaction
/// ends.
async fn next_action_number(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
) -> Result<i64, DbError> {
    let row: ActionNumber = diesel::sql_query(
        "INSERT INTO client_action_sequences AS s (client_id, last_number) \
         SELECT client_id, 1 FROM executions WHERE execution_id = $1 \
         ON CONFLICT (client_id) DO UPDATE SET last_number = s.last_number + 1 \
         RETURNING s.last_number",
    )
    .bind::<diesel::sql_types::Uuid, _>(execution_id)
    .get_result(conn)
    .await?;
    Ok(row.last_number)
}

/// Every action on an execution, oldest first.
pub async fn actions(
    conn: &mut AsyncPgConnection,
    execution_id: Uuid,
) -> Result<Vec<ActionRecord>, DbError> {
    let rows = execution_actions::table
        .filter(execution_actions::execution_id.eq(execution_id))
        .order(execution_actions::action_id)
        .select(ActionRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter().map(ActionRecord::try_from).collect()
}
