//! The operator console: a real server on a real PostgreSQL, driven
//! through headless Chromium (one browser for the whole test binary, see
//! [`crate::browser`]) and over plain HTTP.
//!
//! - [`demo`]: on the demo as the embedded default starts it, sign in with
//!   the demo key, create a configuration and reorder its jobs by dragging
//!   and with the keyboard; process the demo schedule for a date while core
//!   Aria rejects some calls and watch the sync job turn red live, drill
//!   into its errors, make core Aria accept again, Retry, and watch the
//!   schedule turn blue; a POST without the CSRF token is refused.
//! - here: a viewer sees no buttons and cannot act.
//! - [`plain_http`]: the session and CSRF checks, the live stream's
//!   resumption, and the buttons the domain allows.

use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::domain::access::{ClientScope, Role};

use crate::browser::Browser;
use crate::support::*;
use crate::test_jobs;

mod demo;
mod plain_http;

const DATE: &str = "2026-11-24";
const LIVE: Duration = Duration::from_secs(60);

async fn server() -> (TestServer, test_jobs::Controls) {
    let url = fresh_database().await;
    let (registry, controls) = test_jobs::registry();
    let mut settings = test_settings(&url);
    settings.batch_size = 10;
    let mut server = TestServer::start_with(settings, registry).await;
    server.owns_database = true;
    (server, controls)
}

async fn sign_in(browser: &Browser, key: &str, client: &str) {
    browser.goto("/signin").await;
    browser.type_into("#key", key).await;
    browser.type_into("#client", client).await;
    browser.click("#signin").await;
    browser
        .until(
            "the configurations page",
            "return location.pathname === '/configs'",
            LIVE,
        )
        .await;
}

/// The status of the job tile of `job`.
fn tile_status(job: &str) -> String {
    format!("return document.querySelector('.tile[data-job=\"{job}\"]')?.dataset.status")
}

#[tokio::test]
async fn a_viewer_sees_no_buttons_and_cannot_act() {
    let (server, _) = server().await;
    let console = server.server.console_addr.expect("console served");
    let config_id = server
        .create_config("acme", daily("eod", &["ITEMS_75", "EMPTY"]))
        .await;
    server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id: config_id.clone(),
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = issue_key(
        &server.database_url,
        "auditor@acme",
        Role::Viewer,
        "acme",
        ClientScope::one("acme"),
        None,
    )
    .await;
    let browser = Browser::open(console).await;
    sign_in(&browser, &key, "").await;
    assert_eq!(
        browser
            .js("return !!document.querySelector('#new-config')")
            .await,
        false
    );
    browser.goto("/configs/new").await;
    assert!(
        browser
            .js("return document.querySelector('#failure-message')?.textContent ?? ''")
            .await
            .as_str()
            .unwrap()
            .contains("operator"),
        "a viewer may not open the drawer"
    );
    browser
        .goto(&format!("/schedules/{config_id}?date={DATE}"))
        .await;
    browser
        .until(
            "the completed schedule",
            "return document.querySelector('#execution-status').dataset.status === 'COMPLETED'",
            LIVE,
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('#schedule-body button').length")
            .await,
        0,
        "no action buttons"
    );
    // Stats stay readable.
    assert_eq!(
        browser
            .js("return document.querySelectorAll('#schedule-body a[data-action=stats]').length")
            .await,
        2
    );
    browser.shot("07-viewer").await;
    // Its POSTs are refused even with the token.
    let status = browser
        .js(&format!(
            "return fetch('/schedules/{config_id}/{DATE}/reset', {{method: 'POST', \
             headers: {{'content-type': 'application/x-www-form-urlencoded', \
             'x-csrf-token': document.querySelector('meta[name=csrf]').content}}, body: 'reason=x'}}) \
             .then(r => r.status)"
        ))
        .await;
    assert_eq!(status, 403);
    browser.close().await;
    server.stop().await;
}
