//! The configurations screen: the list, and the drawer to add or modify a
//! configuration (name immutable once saved, DAILY or SCHEDULED, time,
//! exception window, recurrence rule with its next runs previewed as it is
//! typed, jobs from the catalogue in order). Validation errors show beside
//! their field, from the use cases' field violations.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::auth::{Fields, Flash, Posted, Session, Signed};
use super::failure::{page, Failure};
use super::{window_label, Console};
use crate::scheduling::domain;
use crate::scheduling::domain::config::{ConfigInput, Frequency, JobScheduleConfig, JobSpec};
use crate::scheduling::domain::time_of_day;
use crate::scheduling::usecases::configurations::ConfigUpdate;
use crate::scheduling::Error;

/// Most configurations the list shows (a client has a handful).
const LIST_LIMIT: usize = 200;

/// Runs the preview shows.
const PREVIEW_RUNS: usize = 5;

/// One row of the list.
pub struct ConfigRow {
    id: String,
    short_id: String,
    name: String,
    frequency: &'static str,
    time: String,
    time_zone: String,
    window: String,
    jobs: Vec<String>,
    paused: bool,
}

impl ConfigRow {
    fn of(config: &JobScheduleConfig) -> Self {
        let d = &config.draft;
        let id = config.config_id.to_string();
        Self {
            short_id: id[..8].to_string(),
            id,
            name: d.name.clone(),
            frequency: d.frequency.as_str(),
            time: d
                .scheduled_time
                .map(time_of_day::format)
                .unwrap_or_else(|| "—".into()),
            time_zone: d.time_zone.name().to_string(),
            window: window_label(d.exception_window, "—"),
            jobs: d.jobs.iter().map(|j| j.job_type.clone()).collect(),
            paused: d.automatic_runs_paused,
        }
    }
}

/// A job line of the drawer.
pub struct JobLine {
    job_type: String,
    manual: bool,
}

/// The drawer's form: what was typed, and what was refused beside which
/// field.
pub struct Drawer {
    config_id: Option<String>,
    etag: String,
    name: String,
    description: String,
    frequency: String,
    scheduled_time: String,
    exception_start_time: String,
    exception_end_time: String,
    time_zone: String,
    recurrence_rule: String,
    paused: bool,
    jobs: Vec<JobLine>,
    errors: BTreeMap<String, String>,
    catalogue: Vec<(String, String)>,
}

impl Drawer {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    fn general_errors(&self) -> Vec<&str> {
        self.errors
            .iter()
            .filter(|(k, _)| k.as_str() == "")
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Template)]
#[template(path = "configs.html")]
struct ConfigsPage {
    section: &'static str,
    session: std::sync::Arc<Session>,
    flash: Option<Flash>,
    rows: Vec<ConfigRow>,
    drawer: Option<Drawer>,
}

async fn rows(console: &Console, client: &str) -> Result<Vec<ConfigRow>, Failure> {
    let page = console
        .usecases
        .list_configs(client, None, LIST_LIMIT)
        .await?;
    Ok(page.items.iter().map(ConfigRow::of).collect())
}

fn catalogue(console: &Console) -> Vec<(String, String)> {
    let mut jobs: Vec<(String, String)> = console
        .usecases
        .engine()
        .registry()
        .all()
        .map(|j| (j.name().to_string(), j.description().to_string()))
        .collect();
    jobs.sort();
    jobs
}

async fn render(
    console: &Console,
    session: std::sync::Arc<Session>,
    drawer: Option<Drawer>,
) -> Result<Response, Failure> {
    let rows = rows(console, &session.client).await?;
    let flash = session.take_flash();
    Ok(page(&ConfigsPage {
        section: "configs",
        session,
        flash,
        rows,
        drawer,
    }))
}

/// The list.
pub async fn list(
    State(console): State<Console>,
    Signed(session): Signed,
) -> Result<Response, Failure> {
    render(&console, session, None).await
}

/// The list with an empty drawer.
pub async fn new_drawer(
    State(console): State<Console>,
    Signed(session): Signed,
) -> Result<Response, Failure> {
    session.require_operator()?;
    let drawer = Drawer {
        config_id: None,
        etag: String::new(),
        name: String::new(),
        description: String::new(),
        frequency: "SCHEDULED".into(),
        scheduled_time: String::new(),
        exception_start_time: String::new(),
        exception_end_time: String::new(),
        time_zone: "UTC".into(),
        recurrence_rule: String::new(),
        paused: false,
        jobs: Vec::new(),
        errors: BTreeMap::new(),
        catalogue: catalogue(&console),
    };
    render(&console, session, Some(drawer)).await
}

/// The list with the drawer of one configuration.
pub async fn edit_drawer(
    State(console): State<Console>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let config_id = parse_id(&id)?;
    let config = console
        .usecases
        .get_config(&session.client, config_id)
        .await?;
    let input = config.to_input();
    let mut drawer = drawer_of(&console, &input, BTreeMap::new());
    drawer.config_id = Some(config.config_id.to_string());
    drawer.etag = config.etag();
    render(&console, session, Some(drawer)).await
}

/// Creates a configuration from the drawer.
pub async fn create(State(console): State<Console>, posted: Posted) -> Result<Response, Failure> {
    posted.session.require_operator()?;
    let input = input_of(&posted.fields);
    match console
        .usecases
        .create_config(&posted.session.client, input.clone())
        .await
    {
        Ok(stored) => {
            posted.session.set_flash(
                false,
                format!("Configuration {} created.", stored.draft.name),
            );
            Ok(Redirect::to("/configs").into_response())
        }
        Err(error) => refused(&console, posted.session, &input, None, "", error).await,
    }
}

/// Saves the drawer of an existing configuration (its name stays).
pub async fn update(
    State(console): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    posted.session.require_operator()?;
    let config_id = parse_id(&id)?;
    let mut values = input_of(&posted.fields);
    let name = posted.fields.get("current_name").to_string();
    values.name = String::new();
    let etag = posted.fields.get("etag").to_string();
    let update = ConfigUpdate {
        config_id,
        etag: etag.clone(),
        mask: Vec::new(),
        values: values.clone(),
    };
    match console
        .usecases
        .update_config(&posted.session.client, update)
        .await
    {
        Ok(stored) => {
            posted
                .session
                .set_flash(false, format!("Configuration {} saved.", stored.draft.name));
            Ok(Redirect::to("/configs").into_response())
        }
        Err(error) => {
            values.name = name;
            refused(
                &console,
                posted.session,
                &values,
                Some(config_id),
                &etag,
                error,
            )
            .await
        }
    }
}

/// The drawer again with the refusal beside its fields (400), or the
/// failure page when it is not about the form.
async fn refused(
    console: &Console,
    session: std::sync::Arc<Session>,
    input: &ConfigInput,
    config_id: Option<Uuid>,
    etag: &str,
    error: Error,
) -> Result<Response, Failure> {
    let errors = match &error {
        Error::Domain(domain::Error::InvalidArgument(violations)) => violations
            .iter()
            .map(|v| (form_field(&v.field), v.description.clone()))
            .collect(),
        Error::Domain(domain::Error::AlreadyExists { field, message, .. }) => {
            BTreeMap::from([(form_field(field), message.clone())])
        }
        Error::Domain(domain::Error::Aborted { message, .. })
        | Error::Domain(domain::Error::FailedPrecondition { message, .. }) => {
            BTreeMap::from([(String::new(), message.clone())])
        }
        _ => return Err(error.into()),
    };
    let status = Failure::from(error).status;
    let mut drawer = drawer_of(console, input, errors);
    drawer.config_id = config_id.map(|id| id.to_string());
    drawer.etag = etag.to_string();
    let mut response = render(console, session, Some(drawer)).await?;
    *response.status_mut() = status;
    Ok(response)
}

/// The next runs of the draft being typed, as an HTML fragment; a refusal
/// shows the violations instead.
pub async fn preview(State(console): State<Console>, posted: Posted) -> Response {
    let mut input = input_of(&posted.fields);
    if input.name.is_empty() {
        // The preview is about dates; the name is checked on save.
        input.name = "preview".into();
    }
    if input.jobs.is_empty() {
        input.jobs.push(JobSpec {
            job_type: catalogue(&console)
                .first()
                .map(|(n, _)| n.clone())
                .unwrap_or_default(),
            manual: false,
        });
    }
    let zone = input.time_zone.clone();
    let html = match console.usecases.preview_runs(input, PREVIEW_RUNS) {
        Ok(runs) if runs.is_empty() => {
            "<p class=\"muted\">No automatic runs: runs of this configuration start by hand.</p>"
                .to_string()
        }
        Ok(runs) => {
            let zone: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
            let items: String = runs
                .iter()
                .map(|r| {
                    format!(
                        "<li><strong>{}</strong> <span class=\"muted\">starts {}</span></li>",
                        r.business_date,
                        r.start.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z")
                    )
                })
                .collect();
            format!("<ol class=\"runs\">{items}</ol>")
        }
        Err(Error::Domain(domain::Error::InvalidArgument(violations))) => {
            let items: String = violations
                .iter()
                .map(|v| {
                    format!(
                        "<li>{}</li>",
                        escape(&format!("{}: {}", v.field, v.description))
                    )
                })
                .collect();
            format!("<ul class=\"field-error\">{items}</ul>")
        }
        Err(error) => return Failure::from(error).into_response(),
    };
    Html(html).into_response()
}

fn escape(text: &str) -> String {
    askama::filters::escape(text, askama::filters::Html)
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// The drawer's field of a violation's field path (`config.jobs[2].job_type`
/// is shown beside the job list).
fn form_field(path: &str) -> String {
    let path = path.strip_prefix("config.").unwrap_or(path);
    if path.starts_with("jobs") {
        return "jobs".into();
    }
    match path {
        "name"
        | "description"
        | "frequency"
        | "scheduled_time"
        | "exception_start_time"
        | "exception_end_time"
        | "time_zone"
        | "recurrence_rule" => path.to_string(),
        _ => String::new(),
    }
}

fn parse_id(id: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(id)
        .map_err(|_| Failure::bad_request(format!("config_id: {id:?} is not an identifier")))
}

/// A browser's `HH:MM` (a time input drops zero seconds) as `HH:MM:SS`.
fn time_text(value: &str) -> String {
    let value = value.trim();
    if value.len() == 5 && value.as_bytes()[2] == b':' {
        format!("{value}:00")
    } else {
        value.to_string()
    }
}

/// The raw input of the drawer's form; the use case validates it.
fn input_of(fields: &Fields) -> ConfigInput {
    let jobs = fields
        .all("job")
        .zip(fields.all("job_mode"))
        .map(|(job_type, mode)| JobSpec {
            job_type: job_type.to_string(),
            manual: mode == "manual",
        })
        .collect();
    ConfigInput {
        name: fields.get("name").to_string(),
        description: fields.get("description").to_string(),
        frequency: Frequency::parse(fields.get("frequency")),
        scheduled_time: time_text(fields.get("scheduled_time")),
        exception_start_time: time_text(fields.get("exception_start_time")),
        exception_end_time: time_text(fields.get("exception_end_time")),
        time_zone: fields.get("time_zone").trim().to_string(),
        recurrence_rule: fields.get("recurrence_rule").trim().to_string(),
        jobs,
        automatic_runs_paused: fields.get("paused") == "on",
        rule_start_date: fields.get("rule_start_date").trim().to_string(),
    }
}

fn drawer_of(console: &Console, input: &ConfigInput, errors: BTreeMap<String, String>) -> Drawer {
    Drawer {
        config_id: None,
        etag: String::new(),
        name: input.name.clone(),
        description: input.description.clone(),
        frequency: input
            .frequency
            .map(|f| f.as_str().to_string())
            .unwrap_or_default(),
        scheduled_time: input.scheduled_time.clone(),
        exception_start_time: input.exception_start_time.clone(),
        exception_end_time: input.exception_end_time.clone(),
        time_zone: input.time_zone.clone(),
        recurrence_rule: input.recurrence_rule.clone(),
        paused: input.automatic_runs_paused,
        jobs: input
            .jobs
            .iter()
            .map(|j| JobLine {
                job_type: j.job_type.clone(),
                manual: j.manual,
            })
            .collect(),
        errors,
        catalogue: catalogue(console),
    }
}
