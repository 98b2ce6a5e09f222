//! Live updates: a schedule page follows the status stream of its
//! execution as server-sent events, fed by the same use case as
//! `WatchExecutions`. Each event carries its sequence as the event id, so
//! a browser that reconnects (sending `Last-Event-ID`) resumes after the
//! last change it saw; the page then fetches its body again.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Signed;
use super::failure::Failure;
use super::schedules::parse_date;
use super::Console;
use crate::scheduling::watch::{WatchMessage, WatchScope};

/// Which execution to follow.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    config: String,
    date: String,
}

/// The event stream of one execution (a configuration and a date).
pub async fn events(
    State(console): State<Console>,
    Signed(session): Signed,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Failure> {
    let config_id = Uuid::parse_str(&query.config)
        .map_err(|_| Failure::bad_request("config: not an identifier"))?;
    let after_sequence = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => 0,
        Some(Ok(text)) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Failure::bad_request("last-event-id: not a sequence"))?,
        Some(Err(_)) => return Err(Failure::bad_request("last-event-id: not a sequence")),
    };
    let scope = WatchScope {
        client_id: session.client.clone(),
        config_id: Some(config_id),
        business_date: Some(parse_date(&query.date)?),
        after_sequence,
    };
    let rx = console.usecases.watch_executions(scope).await?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|message| Ok(event(&message)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The browser needs only to know that something changed, and where the
/// stream is: the page renders the new state itself.
fn event(message: &WatchMessage) -> Event {
    match message {
        WatchMessage::Snapshot { sequence, .. } => Event::default()
            .id(sequence.to_string())
            .data(format!("{{\"kind\":\"snapshot\",\"sequence\":{sequence}}}")),
        WatchMessage::Event { sequence, .. } => Event::default()
            .id(sequence.to_string())
            .data(format!("{{\"kind\":\"change\",\"sequence\":{sequence}}}")),
        WatchMessage::ResyncRequired { oldest } => {
            Event::default().data(format!("{{\"kind\":\"resync\",\"oldest\":{oldest}}}"))
        }
        // The browser reconnects by itself and resumes from the last id.
        WatchMessage::ShuttingDown => Event::default().data("{\"kind\":\"shutting_down\"}"),
    }
}
