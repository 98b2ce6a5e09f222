//! The schedule page's actions: Create, Recreate, Process, Reprocess,
//! Reset and the per-job Process Action and Retry, through the same use
//! cases as the gRPC API.

use super::auth::Posted;
use super::failure::Failure;
use super::schedules::parse_key;
use super::Console;
use crate::scheduling::domain::JobPosition;
use crate::scheduling::usecases::{ActionOutcome, Actor};
use crate::scheduling::Error;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

fn actor(posted: &Posted) -> Result<Actor, Failure> {
    let reason = posted.fields.get("reason").trim();
    if reason.chars().count() > 1000 {
        return Err(Failure::bad_request("reason: at most 1000 characters"));
    }
    Ok(Actor {
        actor: posted.session.caller.name.clone(),
        on_behalf_of: None,
        reason: reason.to_string(),
    })
}

/// The form's manual designations, checked by the same rule as the API's
/// `manual_job_positions` (how many, and each a possible position).
fn manual_positions(posted: &Posted) -> Result<Vec<JobPosition>, Failure> {
    let numbers = posted
        .fields
        .all("manual")
        .map(|p| {
            p.parse::<u32>().map_err(|_| {
                Failure::bad_request(format!("manual_job_positions: {p:?} is not a position"))
            })
        })
        .collect::<Result<Vec<u32>, Failure>>()?;
    Ok(crate::scheduling::api::manual_positions(&numbers)?)
}

/// Answers an action: a short text to the console's script, or back to the
/// page with the outcome shown once.
fn answer(posted: &Posted, back: String, result: Result<ActionOutcome, Error>) -> Response {
    let (error, text, status) = match result {
        Ok(outcome) => {
            let text = if outcome.changed {
                format!(
                    "{}: {}",
                    outcome.action.kind.as_str(),
                    outcome.action.outcome
                )
            } else {
                format!(
                    "{}: nothing to do ({})",
                    outcome.action.kind.as_str(),
                    outcome.action.outcome
                )
            };
            (false, text, axum::http::StatusCode::OK)
        }
        Err(e) => {
            let failure = Failure::from(e);
            (true, failure.message, failure.status)
        }
    };
    if posted.fetched {
        return (status, text).into_response();
    }
    posted.session.set_flash(error, text);
    Redirect::to(&back).into_response()
}

/// Create, Recreate, Process, Reprocess or Reset the execution of a date.
pub async fn act(
    State(console): State<Console>,
    Path((id, date, action)): Path<(String, String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    posted.session.require_operator()?;
    let key = parse_key(&posted.session.client, &id, &date)?;
    let actor = actor(&posted)?;
    let manual = manual_positions(&posted)?;
    let u = &console.usecases;
    let result = match action.as_str() {
        "create" => u.create_execution(&actor, &key, &manual).await,
        "recreate" => u.recreate_execution(&actor, &key, &manual).await,
        "process" => u.process_execution(&actor, &key, &manual, false).await,
        "reprocess" => u.reprocess_execution(&actor, &key, false).await,
        "reset" => {
            let cancel = posted.fields.get("cancel_in_flight") == "on";
            u.reset_execution(&actor, &key, cancel).await
        }
        other => {
            return Err(Failure::bad_request(format!(
                "action: {other:?} is not an action"
            )))
        }
    };
    Ok(answer(
        &posted,
        format!("/schedules/{id}?date={date}"),
        result,
    ))
}

/// Process Action (trigger) or Retry one job.
pub async fn act_on_job(
    State(console): State<Console>,
    Path((id, date, position, action)): Path<(String, String, u32, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    posted.session.require_operator()?;
    let key = parse_key(&posted.session.client, &id, &date)?;
    let actor = actor(&posted)?;
    let position = crate::scheduling::api::position(position)?;
    let u = &console.usecases;
    let result = match action.as_str() {
        "trigger" => u.trigger_job(&actor, &key, position, false).await,
        "retry" => u.retry_job(&actor, &key, position, false).await,
        other => {
            return Err(Failure::bad_request(format!(
                "action: {other:?} is not a job action"
            )))
        }
    };
    Ok(answer(
        &posted,
        format!("/schedules/{id}?date={date}"),
        result,
    ))
}
