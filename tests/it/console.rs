//! The operator console in a real browser: a real server on a real
//! PostgreSQL, driven through headless Chromium. Sign in, create a
//! configuration and reorder its jobs, process a schedule and watch a job
//! turn red live, drill into its errors, fix and retry until the schedule
//! turns blue; a viewer sees no buttons; a POST without the CSRF token is
//! refused.

use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::domain::access::{ClientScope, Role};

use crate::browser::Browser;
use crate::support::*;
use crate::test_jobs;

const DATE: &str = "2026-11-24";
const LIVE: Duration = Duration::from_secs(60);

async fn server() -> (TestServer, test_jobs::Controls) {
    let url = fresh_database().await;
    let (registry, controls) = test_jobs::registry();
    let mut settings = test_settings(&url);
    // Small batches: the slow job takes a few seconds, so the page is
    // watched while it changes.
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
async fn an_operator_runs_a_schedule_from_the_console() {
    let (server, controls) = server().await;
    let console = server.server.console_addr.expect("console served");
    let key = issue_key(
        &server.database_url,
        "operator@acme",
        Role::Operator,
        "acme",
        ClientScope::one("acme"),
        None,
    )
    .await;
    let browser = Browser::open(console).await;

    // Signing in: a wrong key is refused beside the form.
    browser.goto("/configs").await;
    assert_eq!(
        browser.path().await,
        "/signin",
        "signed out: sent to sign in"
    );
    browser.type_into("#key", "ask_nope").await;
    browser.click("#signin").await;
    browser
        .until(
            "the refusal",
            "return !!document.querySelector('#signin-error')",
            LIVE,
        )
        .await;
    browser.type_into("#key", &key).await;
    browser.shot("01-sign-in").await;
    browser.click("#signin").await;
    browser
        .until(
            "the configurations page",
            "return location.pathname === '/configs'",
            LIVE,
        )
        .await;

    // A configuration from the drawer: the preview follows the rule, a
    // missing name is refused beside its field, jobs are reordered with
    // the keyboard alternative to dragging.
    browser.click("#new-config").await;
    browser
        .click("input[name=frequency][value=SCHEDULED]")
        .await;
    browser
        .js("document.querySelector('#scheduled_time').value = '18:30:00'")
        .await;
    browser
        .type_into("#recurrence_rule", "FREQ=WEEKLY;BYDAY=MO,WE")
        .await;
    browser
        .until(
            "the runs preview",
            "return document.querySelectorAll('#preview li').length === 5",
            LIVE,
        )
        .await;
    browser
        .js("document.querySelector('#catalogue').value = 'FLAKY'")
        .await;
    browser.click("#add-job").await;
    browser
        .js("document.querySelector('#catalogue').value = 'SLOW'")
        .await;
    browser.click("#add-job").await;
    browser.click("button[aria-label='Move SLOW up']").await;
    let order = browser
        .js("return [...document.querySelectorAll('#jobs li')].map(li => li.dataset.job).join(',')")
        .await;
    assert_eq!(order, "SLOW,FLAKY");
    browser.click("#save-config").await;
    browser
        .until(
            "the name's violation",
            "return !!document.querySelector('.field-error[data-field=name]')",
            LIVE,
        )
        .await;
    browser.type_into("#name", "month-end").await;
    browser.shot("02-configuration-drawer").await;
    browser
        .js("document.querySelector('.drawer-body').scrollTop = 10000")
        .await;
    browser.shot("02-configuration-drawer-jobs").await;
    browser.click("#save-config").await;
    browser
        .until(
            "the new row",
            "return !!document.querySelector('#configs tr[data-name=\"month-end\"]')",
            LIVE,
        )
        .await;
    browser.shot("03-configurations").await;
    let configs = server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .configs;
    let config = configs
        .iter()
        .find(|c| c.name == "month-end")
        .expect("saved");
    let jobs: Vec<&str> = config.jobs.iter().map(|j| j.job_type.as_str()).collect();
    assert_eq!(jobs, ["SLOW", "FLAKY"]);
    assert_eq!(config.scheduled_time, "18:30:00");
    assert_eq!(config.frequency, pb::Frequency::Scheduled as i32);

    // The schedule for a date: nothing yet, then Process; the page follows
    // the stream and the FLAKY tile turns red without a reload.
    browser
        .goto(&format!("/schedules/{}?date={DATE}", config.config_id))
        .await;
    browser
        .until(
            "the live stream",
            "return document.querySelector('#schedule-body').dataset.liveState === 'open'",
            LIVE,
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('#execution-status').dataset.status")
            .await,
        "NONE"
    );
    browser.js("window.notReloaded = true").await;
    browser
        .type_into("input[name=reason]", "month-end close")
        .await;
    browser.click("#process").await;
    browser
        .until(
            "a running execution",
            &format!("{} === 'PENDING'", tile_status("SLOW")),
            LIVE,
        )
        .await;
    browser
        .until(
            "the red tile",
            &format!("{} === 'ERROR'", tile_status("FLAKY")),
            LIVE,
        )
        .await;
    browser
        .until(
            "the red circle",
            "return document.querySelector('#execution-status').dataset.status === 'ERROR'",
            LIVE,
        )
        .await;
    assert_eq!(
        browser.js("return window.notReloaded === true").await,
        true,
        "no reload"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('#execution-status').textContent")
            .await,
        "ERROR",
        "the status is written, not only coloured"
    );
    browser.shot("04-schedule-error").await;

    // A POST without the CSRF token is refused, with the session cookie.
    let refused = browser
        .js(&format!(
            "return fetch('/schedules/{}/{DATE}/reset', {{method: 'POST', \
             headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: 'reason=x'}}) \
             .then(r => r.status)",
            config.config_id
        ))
        .await;
    assert_eq!(refused, 403);

    // Stats: counts, an error code, an item's payload.
    browser.click(".tile[data-job=FLAKY] summary").await;
    browser
        .click(".tile[data-job=FLAKY] a[data-action=stats]")
        .await;
    browser
        .until(
            "the stats drawer",
            "return !!document.querySelector('#stats')",
            LIVE,
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('#stat-total').textContent")
            .await,
        "200"
    );
    browser.click("#codes a[data-code=ACCOUNT_INACTIVE]").await;
    browser
        .until(
            "the code's items",
            "return location.search.includes('code=ACCOUNT_INACTIVE') && document.querySelectorAll('#items details').length > 0",
            LIVE,
        )
        .await;
    browser.click("#items details.payload summary").await;
    let payload = browser
        .js("return document.querySelector('#items details[open] pre').textContent")
        .await;
    let payload: serde_json::Value =
        serde_json::from_str(payload.as_str().expect("text")).expect("the payload is JSON");
    assert_eq!(payload["business_date"], DATE);
    assert_eq!(payload["index"].as_u64().unwrap() % 7, 0);
    browser.shot("05-stats-drawer").await;

    // Fix the cause, Retry from the menu, and the schedule turns blue.
    browser.click("#close-stats").await;
    browser
        .until(
            "the live stream again",
            "return document.querySelector('#schedule-body')?.dataset.liveState === 'open'",
            LIVE,
        )
        .await;
    browser.js("window.notReloaded = true").await;
    controls.flaky.apply();
    browser.click(".tile[data-job=FLAKY] summary").await;
    browser
        .click(".tile[data-job=FLAKY] button[data-action=retry]")
        .await;
    browser
        .until(
            "the blue circle",
            "return document.querySelector('#execution-status').dataset.status === 'COMPLETED'",
            LIVE,
        )
        .await;
    assert_eq!(
        browser.js("return window.notReloaded === true").await,
        true,
        "no reload"
    );
    let history = browser
        .js("return document.querySelector('#history').textContent")
        .await;
    let history = history.as_str().unwrap();
    assert!(history.contains("operator@acme"), "{history}");
    assert!(
        history.contains("RETRY_JOB") && history.contains("PROCESS"),
        "{history}"
    );
    assert!(history.contains("month-end close"), "{history}");
    browser.shot("06-schedule-completed").await;

    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_viewer_sees_no_buttons_and_cannot_act() {
    let (server, _) = server().await;
    let console = server.server.console_addr.expect("console served");
    let config_id = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "acme".into(),
            config: Some(daily("eod", &["ITEMS_75", "EMPTY"])),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
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

/// A minimal HTTP client of the console (no browser): the session cookie
/// and the raw answers.
mod http {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    pub type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>;

    pub fn client() -> Http {
        Client::builder(TokioExecutor::new()).build_http()
    }

    /// Signs in; returns the cookie header value.
    pub async fn sign_in(http: &Http, base: &str, key: &str) -> String {
        let request = ::http::Request::post(format!("{base}/signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::from(format!("key={key}&client=acme")))
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status(), 303);
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        cookie.split(';').next().unwrap().to_string()
    }

    /// The first `n` events of `/live`, resuming after `last` when given.
    pub async fn events(
        http: &Http,
        url: &str,
        cookie: &str,
        last: Option<i64>,
        n: usize,
    ) -> Vec<(Option<i64>, serde_json::Value)> {
        let mut request = ::http::Request::get(url).header("cookie", cookie);
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = http
            .request(request.body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut text = String::new();
        let mut events = Vec::new();
        while events.len() < n {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
            while let Some((event, rest)) = text.split_once("\n\n") {
                let (mut id, mut data) = (None, None);
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = serde_json::from_str(v.trim()).ok();
                    }
                }
                if let Some(data) = data {
                    events.push((id, data));
                }
                text = rest.to_string();
            }
        }
        events.truncate(n);
        events
    }
}

#[tokio::test]
async fn the_live_stream_resumes_after_the_last_event_and_needs_a_session() {
    let (server, _) = server().await;
    let console = server.server.console_addr.expect("console served");
    let base = format!("http://{console}");
    let config_id = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "acme".into(),
            config: Some(daily("eod", &["ITEMS_75"])),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
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
    // Until it completes.
    let get = pb::GetExecutionRequest {
        client_id: "acme".into(),
        config_id: config_id.clone(),
        business_date: DATE.into(),
    };
    let deadline = std::time::Instant::now() + LIVE;
    while server
        .executions()
        .get_execution(get.clone())
        .await
        .unwrap()
        .into_inner()
        .status
        != pb::Status::Completed as i32
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the execution completes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = http::client();
    let url = format!("{base}/live?config={config_id}&date={DATE}");

    // Without a session: refused.
    let anonymous = http
        .request(
            ::http::Request::get(&url)
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let key = issue_key(
        &server.database_url,
        "operator@acme",
        Role::Operator,
        "acme",
        ClientScope::one("acme"),
        None,
    )
    .await;
    let cookie = http::sign_in(&http, &base, &key).await;

    // A fresh page opens with a snapshot, as of the last sequence.
    let opening = http::events(&http, &url, &cookie, None, 1).await;
    assert_eq!(opening[0].1["kind"], "snapshot");
    let last = opening[0].0.expect("the snapshot's sequence");
    assert!(last > 2, "the run wrote events");

    // A reconnect after an earlier event gets the changes after it, in
    // order, and no snapshot.
    let resumed = http::events(&http, &url, &cookie, Some(last - 2), 2).await;
    let ids: Vec<i64> = resumed.iter().map(|(id, _)| id.unwrap()).collect();
    assert_eq!(ids, [last - 1, last]);
    assert!(resumed.iter().all(|(_, data)| data["kind"] == "change"));

    // An action without the CSRF token is refused even with the cookie.
    let request = ::http::Request::post(format!("{base}/schedules/{config_id}/{DATE}/reset"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::from("reason=x"))
        .unwrap();
    assert_eq!(http.request(request).await.unwrap().status(), 403);
    server.stop().await;
}
