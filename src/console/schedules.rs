//! The schedules screen: each configuration by name, a date picker, and
//! for the date either Create and Process or the execution: its status
//! circle, a tile per job (status, phase, progress), the actions the
//! product allows now, the action history, and the statistics drawer of a
//! job (counts, errors by code, errored items with their payload, paged).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Flash, Session, Signed};
use super::failure::{page, Failure};
use super::{window_label, Console};
use crate::scheduling::api;
use crate::scheduling::domain;
use crate::scheduling::domain::available_actions::{
    available_actions, AvailableActions, ExecutionActions, JobActions,
};
use crate::scheduling::domain::config::JobScheduleConfig;
use crate::scheduling::domain::drill_down::ErroredWorkItem;
use crate::scheduling::domain::event::ActionRecord;
use crate::scheduling::domain::execution::{Execution, JobState, Status};
use crate::scheduling::domain::time_of_day;
use crate::scheduling::domain::JobPosition;
use crate::scheduling::usecases::ExecutionKey;
use crate::scheduling::Error;

pub use super::schedule_actions::{act, act_on_job};

/// Errored items per page of the stats drawer.
const ITEMS_PAGE: usize = 20;

/// One job tile.
pub struct Tile {
    position: u32,
    job_type: String,
    manual: bool,
    status: &'static str,
    phase: &'static str,
    total: i64,
    processed: i64,
    errored: i64,
    pending: i64,
    processed_pct: i64,
    errored_pct: i64,
    /// The job's menu, as the domain allows it now.
    actions: JobActions,
}

impl Tile {
    fn of(job: &JobState, available: &AvailableActions) -> Self {
        let c = job.counts;
        let pct = |n: i64| if c.total > 0 { n * 100 / c.total } else { 0 };
        Self {
            position: job.position.get(),
            job_type: job.job_type.clone(),
            manual: job.manual,
            status: job.status.as_str(),
            phase: job.phase.as_str(),
            total: c.total,
            processed: c.processed,
            errored: c.errored,
            pending: c.pending(),
            processed_pct: if c.total == 0 && job.status == Status::Completed {
                100
            } else {
                pct(c.processed)
            },
            errored_pct: pct(c.errored),
            actions: available.job_or_none(job.position),
        }
    }
}

/// A recorded action, as the history shows it.
pub struct HistoryRow {
    time: String,
    actor: String,
    kind: &'static str,
    job: String,
    reason: String,
    outcome: String,
}

impl HistoryRow {
    fn of(a: &ActionRecord) -> Self {
        Self {
            time: a.time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: match &a.on_behalf_of {
                Some(other) => format!("{} for {other}", a.actor),
                None => a.actor.clone(),
            },
            kind: a.kind.as_str(),
            job: a.job_position.map(|p| p.to_string()).unwrap_or_default(),
            reason: a.reason.clone(),
            outcome: a.outcome.clone(),
        }
    }
}

/// The execution part of the page.
pub struct ExecutionView {
    status: &'static str,
    phase: &'static str,
    automatic: bool,
    tiles: Vec<Tile>,
    history: Vec<HistoryRow>,
}

impl ExecutionView {
    fn of(e: &Execution, available: &AvailableActions, actions: &[ActionRecord]) -> Self {
        Self {
            status: e.state.status.as_str(),
            phase: e.state.phase.as_str(),
            automatic: e.automatic,
            tiles: e
                .state
                .jobs
                .iter()
                .map(|job| Tile::of(job, available))
                .collect(),
            history: actions.iter().rev().map(HistoryRow::of).collect(),
        }
    }
}

/// What a schedule's body shows: the configuration's attributes and the
/// execution of the date, if any.
pub struct Body {
    config_id: String,
    date: String,
    frequency: &'static str,
    time: String,
    time_zone: String,
    window: String,
    jobs: Vec<(u32, String, bool)>,
    execution: Option<ExecutionView>,
    /// The buttons the domain allows now (shown to operators only).
    actions: ExecutionActions,
    may_act: bool,
    csrf: String,
}

/// The stats drawer of one job.
pub struct Stats {
    position: u32,
    job_type: String,
    status: &'static str,
    total: i64,
    pending: i64,
    processed: i64,
    errored: i64,
    codes: Vec<(String, u64)>,
    code: String,
    items: Vec<ItemRow>,
    next: Option<i32>,
}

/// An errored item of the drawer.
pub struct ItemRow {
    account: String,
    batch: i64,
    code: String,
    reason: String,
    attempts: u32,
    payload: String,
}

impl ItemRow {
    fn of(item: ErroredWorkItem) -> Self {
        let payload = serde_json::from_str::<serde_json::Value>(&item.payload_json)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(item.payload_json);
        Self {
            account: item.account_id,
            batch: item.batch_id,
            code: item.error_code,
            reason: item.reason,
            attempts: item.attempts,
            payload,
        }
    }
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    section: &'static str,
    session: Arc<Session>,
    flash: Option<Flash>,
    configs: Vec<NavItem>,
    selected: String,
    name: String,
    date: String,
    body: Option<Body>,
    stats: Option<Stats>,
}

/// A schedule in the side list.
pub struct NavItem {
    id: String,
    name: String,
    selected: bool,
}

fn nav(configs: Vec<(String, String)>, selected: &str) -> Vec<NavItem> {
    configs
        .into_iter()
        .map(|(id, name)| NavItem {
            selected: id == selected,
            id,
            name,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "schedule_body.html")]
struct BodyFragment {
    body: Body,
}

/// The query of a schedule page.
#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    date: Option<String>,
    stats: Option<u32>,
    code: Option<String>,
    after: Option<i32>,
}

async fn names(console: &Console, client: &str) -> Result<Vec<(String, String)>, Failure> {
    let page = console.usecases.list_configs(client, None, 200).await?;
    Ok(page
        .items
        .iter()
        .map(|c| (c.config_id.to_string(), c.draft.name.clone()))
        .collect())
}

/// The list of schedules: the first one opens.
pub async fn index(
    State(console): State<Console>,
    Signed(session): Signed,
) -> Result<Response, Failure> {
    let configs = names(&console, &session.client).await?;
    if let Some((id, _)) = configs.first() {
        return Ok(Redirect::to(&format!("/schedules/{id}")).into_response());
    }
    let flash = session.take_flash();
    Ok(page(&SchedulesPage {
        section: "schedules",
        session,
        flash,
        configs: nav(configs, ""),
        selected: String::new(),
        name: String::new(),
        date: String::new(),
        body: None,
        stats: None,
    }))
}

pub(super) fn parse_key(client: &str, id: &str, date: &str) -> Result<ExecutionKey, Failure> {
    Ok(ExecutionKey {
        client_id: client.to_string(),
        config_id: Uuid::parse_str(id)
            .map_err(|_| Failure::bad_request(format!("config_id: {id:?} is not an identifier")))?,
        business_date: api::date("business_date", date).map_err(Failure::from)?,
    })
}

async fn body_of(
    console: &Console,
    session: &Session,
    key: &ExecutionKey,
) -> Result<(JobScheduleConfig, Body), Failure> {
    let config = console
        .usecases
        .get_config(&key.client_id, key.config_id)
        .await?;
    let (execution, available) = match console.usecases.get_execution(key).await {
        Ok(e) => {
            let history = console.usecases.execution_actions(key).await?;
            let available = available_actions(Some(&e.state));
            (Some(ExecutionView::of(&e, &available, &history)), available)
        }
        Err(Error::Domain(domain::Error::NotFound { .. })) => (None, available_actions(None)),
        Err(e) => return Err(e.into()),
    };
    let d = &config.draft;
    let body = Body {
        config_id: config.config_id.to_string(),
        date: key.business_date.to_string(),
        frequency: d.frequency.as_str(),
        time: d
            .scheduled_time
            .map(time_of_day::format)
            .unwrap_or_else(|| "by hand".into()),
        time_zone: d.time_zone.name().to_string(),
        window: window_label(d.exception_window, "none"),
        jobs: d
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (i as u32 + 1, j.job_type.clone(), j.manual))
            .collect(),
        execution,
        actions: available.execution,
        may_act: session.may_act(),
        csrf: session.csrf.clone(),
    };
    Ok((config, body))
}

async fn stats_of(
    console: &Console,
    key: &ExecutionKey,
    position: u32,
    query: &PageQuery,
) -> Result<Stats, Failure> {
    let position = JobPosition::parse("stats", position).map_err(Error::from)?;
    let job = console.usecases.job_stats(key, position).await?;
    let codes = console.usecases.job_error_codes(key, position).await?;
    let code = query
        .code
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| codes.first().map(|c| c.error_code.clone()))
        .unwrap_or_default();
    let (items, next) = if code.is_empty() {
        (Vec::new(), None)
    } else {
        let page = console
            .usecases
            .errored_work_items(key, position, &code, query.after, ITEMS_PAGE)
            .await?;
        (page.items.into_iter().map(ItemRow::of).collect(), page.next)
    };
    Ok(Stats {
        position: position.get(),
        job_type: job.job_type.clone(),
        status: job.status.as_str(),
        total: job.counts.total,
        pending: job.counts.pending(),
        processed: job.counts.processed,
        errored: job.counts.errored,
        codes: codes
            .iter()
            .map(|c| (c.error_code.clone(), c.count))
            .collect(),
        code,
        items,
        next,
    })
}

/// A schedule for a date (today by default), with the stats drawer of a
/// job when asked.
pub async fn page_handler(
    console: &Console,
    session: Arc<Session>,
    id: &str,
    query: PageQuery,
) -> Result<Response, Failure> {
    let date = query
        .date
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            console
                .usecases
                .engine()
                .clock()
                .now()
                .date_naive()
                .to_string()
        });
    let key = parse_key(&session.client, id, &date)?;
    let (config, body) = body_of(console, &session, &key).await?;
    let stats = match query.stats {
        Some(position) => Some(stats_of(console, &key, position, &query).await?),
        None => None,
    };
    let configs = names(console, &session.client).await?;
    let flash = session.take_flash();
    let selected = config.config_id.to_string();
    Ok(page(&SchedulesPage {
        section: "schedules",
        session,
        flash,
        configs: nav(configs, &selected),
        selected,
        name: config.draft.name.clone(),
        date: key.business_date.to_string(),
        body: Some(body),
        stats,
    }))
}

/// The schedule page.
pub async fn show(
    State(console): State<Console>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Failure> {
    page_handler(&console, session, &id, query).await
}

/// The body alone, for the live page to swap in.
pub async fn body(
    State(console): State<Console>,
    Signed(session): Signed,
    Path((id, date)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let key = parse_key(&session.client, &id, &date)?;
    let (_, body) = body_of(&console, &session, &key).await?;
    Ok(super::failure::page(&BodyFragment { body }))
}

/// Parses a date of a path or query (the live stream's too).
pub fn parse_date(text: &str) -> Result<NaiveDate, Failure> {
    api::date("business_date", text).map_err(Failure::from)
}
