//! The operator console: the product document's screens in a browser, on
//! their own HTTP listener (`--console-listen`). Server-rendered pages
//! (askama templates under `templates/`), a few lines of embedded
//! JavaScript for live updates and actions without reloads, and no rule of
//! its own: every read and action calls [`UseCases`], as the gRPC handlers
//! do.
//!
//! - [`auth`]: sign-in with an API key, the session cookie, CSRF tokens;
//! - [`configs`]: the configuration list and drawer, the runs preview;
//! - [`schedules`]: a schedule for a date, its actions, the stats drawer;
//! - [`live`]: server-sent events from the status stream;
//! - [`failure`]: how use-case errors become pages and statuses.

pub mod auth;
pub mod configs;
pub mod failure;
pub mod live;
pub mod schedule_actions;
pub mod schedules;

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::scheduling::domain::config::ExceptionWindow;
use crate::scheduling::domain::time_of_day;
use crate::scheduling::usecases::access::KeyDirectory;
use crate::scheduling::usecases::UseCases;

/// What every console handler holds: the use cases, the key directory for
/// sign-in, and the signed-in sessions. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    usecases: UseCases,
    keys: KeyDirectory,
    sessions: Arc<auth::Sessions>,
}

impl Console {
    /// A console on these use cases, authenticating against `keys`.
    pub fn new(usecases: UseCases, keys: KeyDirectory) -> Self {
        Self {
            usecases,
            keys,
            sessions: Arc::new(auth::Sessions::default()),
        }
    }

    /// The console's routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/configs") }))
            .route("/signin", get(auth::signin_page).post(auth::signin))
            .route("/signout", post(auth::signout))
            .route("/configs", get(configs::list).post(configs::create))
            .route("/configs/new", get(configs::new_drawer))
            .route("/configs/preview", post(configs::preview))
            .route(
                "/configs/{id}",
                get(configs::edit_drawer).post(configs::update),
            )
            .route("/schedules", get(schedules::index))
            .route("/schedules/{id}", get(schedules::show))
            .route("/schedules/{id}/{date}/body", get(schedules::body))
            .route("/schedules/{id}/{date}/{action}", post(schedules::act))
            .route(
                "/schedules/{id}/{date}/jobs/{position}/{action}",
                post(schedules::act_on_job),
            )
            .route("/live", get(live::events))
            .route("/assets/console.css", get(stylesheet))
            .route("/assets/console.js", get(script))
            .with_state(self)
    }
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/console.js"),
    )
        .into_response()
}

/// Serves the console on `listener` until `shutdown` (open event streams
/// end with it).
pub async fn serve(
    listener: TcpListener,
    console: Console,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = console
        .router()
        .layer(axum::middleware::from_fn(security_headers));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Headers every console answer carries: no framing by other sites, no
/// content sniffing, scripts and styles from the console only.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "content-security-policy",
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        "referrer-policy",
        header::HeaderValue::from_static("same-origin"),
    );
    response
}

/// An exception window as the screens show it (`22:00 – 02:00`), or `none`
/// when the configuration has none.
fn window_label(window: Option<ExceptionWindow>, none: &str) -> String {
    window.map_or_else(
        || none.to_string(),
        |w| {
            format!(
                "{} – {}",
                time_of_day::format(w.start),
                time_of_day::format(w.end)
            )
        },
    )
}
