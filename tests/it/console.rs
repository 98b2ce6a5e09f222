//! The operator console in a real browser: a real server on a real
//! PostgreSQL, driven through headless Chromium (one browser for the whole
//! test binary, see [`crate::browser`]). On the demo as the embedded
//! default starts it: sign in with the demo key, create a configuration
//! and reorder its jobs by dragging and with the keyboard; process the demo
//! schedule for a date while core Aria rejects some calls and watch the
//! sync job turn red live, drill into its errors, make core Aria accept
//! again, Retry, and watch the schedule turn blue. A viewer sees no
//! buttons; a POST without the CSRF token is refused.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use allegro_scheduler::billing::core_aria::{serve_standin, CoreAriaClient};
use allegro_scheduler::billing::demo::load_demo_ledger;
use allegro_scheduler::billing::jobs::catalogue::CATALOGUE;
use allegro_scheduler::db::Db;
use allegro_scheduler::proto::core_v1::core_stand_in_control_client::CoreStandInControlClient;
use allegro_scheduler::proto::core_v1::SetFaultsRequest;
use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::domain::access::{ClientScope, Role};
use fantoccini::key::Key;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::browser::Browser;
use crate::support::*;
use crate::test_jobs;

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

/// The demo schedule's name, as the demo loader creates it.
const DEMO_SCHEDULE: &str = "end-of-day";
/// The demo operator key's name, as the embedded default issues it.
const DEMO_KEY_NAME: &str = "demo-operator";
/// Accounts of the demo ledger here: a few hundred give every job of the
/// recommended sequence real work.
const DEMO_ACCOUNTS: usize = 400;
/// The code core Aria rejects with.
const REJECTED: &str = "CORE_ACCOUNT_LOCKED";

/// The demo as the embedded default starts it: the demo ledger of
/// [`CLIENT`] for the business date, the stand-in core Aria in-process with
/// its control service on, the DAILY schedule of the catalogue's
/// recommended sequence, and the client's operator key.
struct Demo {
    server: TestServer,
    config_id: String,
    key: String,
    core: CoreStandInControlClient<Channel>,
    stop_core: CancellationToken,
    ledger: tokio_postgres::Client,
}

impl Demo {
    async fn start() -> Self {
        let url = fresh_database().await;
        let db = Db::new(&url, 4).unwrap();
        let date = chrono::NaiveDate::parse_from_str(DATE, "%Y-%m-%d").unwrap();
        load_demo_ledger(&db, CLIENT, DEMO_ACCOUNTS, date)
            .await
            .unwrap();
        let (ledger, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // These tests are about core Aria's rejections: the demo's broken
        // accounts, which BILLING reports on every date, are mended first
        // (suspended ones reactivated, those whose subscription was
        // cancelled closed), so that a retry of the sync completes the
        // schedule.
        ledger
            .batch_execute(
                "UPDATE ledger.accounts SET status = 'ACTIVE' WHERE client_id = 'acme' AND status = 'SUSPENDED'; \
                 UPDATE ledger.accounts a SET status = 'CLOSED' FROM ledger.subscriptions s \
                 WHERE s.client_id = a.client_id AND s.account_id = a.account_id AND s.status = 'CANCELLED' \
                   AND a.client_id = 'acme';",
            )
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let core_url = format!("http://{}", listener.local_addr().unwrap());
        let stop_core = CancellationToken::new();
        tokio::spawn(serve_standin(db, listener, true, stop_core.clone()));
        let registry = allegro_scheduler::billing::catalogue_registry(
            CoreAriaClient::lazy(&core_url).unwrap(),
        );
        let mut settings = test_settings(&url);
        // Small batches: the page is watched while the jobs move.
        settings.batch_size = 20;
        let mut server = TestServer::start_with(settings, registry).await;
        server.owns_database = true;
        let mut schedule = daily(
            DEMO_SCHEDULE,
            &CATALOGUE.iter().map(|entry| entry.name).collect::<Vec<_>>(),
        );
        schedule.description = "Demo daily schedule: the recommended sequence".into();
        let config_id = server
            .configs()
            .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                client_id: CLIENT.into(),
                config: Some(schedule),
            })
            .await
            .unwrap()
            .into_inner()
            .config_id;
        let key = issue_key(
            &server.database_url,
            DEMO_KEY_NAME,
            Role::Operator,
            CLIENT,
            ClientScope::one(CLIENT),
            None,
        )
        .await;
        let core = CoreStandInControlClient::connect(core_url).await.unwrap();
        Self {
            server,
            config_id,
            key,
            core,
            stop_core,
            ledger,
        }
    }

    /// Makes core Aria reject the calls for `accounts` (none: accept all).
    async fn reject(&self, accounts: &[String]) {
        self.core
            .clone()
            .set_faults(SetFaultsRequest {
                client_id: CLIENT.into(),
                unavailable: false,
                reject_accounts: accounts
                    .iter()
                    .map(|a| (a.clone(), REJECTED.to_string()))
                    .collect::<HashMap<_, _>>(),
            })
            .await
            .unwrap();
    }

    /// Accounts with usage waiting to be synchronized, the first `n`.
    async fn accounts_to_sync(&self, n: i64) -> Vec<String> {
        self.ledger
            .query(
                "SELECT DISTINCT account_id FROM ledger.transactions \
                 WHERE client_id = 'acme' AND sync_status = 'PENDING' ORDER BY account_id LIMIT $1",
                &[&n],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn stop(self) {
        self.stop_core.cancel();
        self.server.stop().await;
    }
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

/// Whether the `part` (`done` or `failed`) of the progress bar of `job` is
/// drawn with a width on the page.
fn bar_share(job: &str, part: &str) -> String {
    format!(
        "return document.querySelector('.tile[data-job=\"{job}\"] .progress .{part}')\
         .getBoundingClientRect().width > 0"
    )
}

/// The order of the drawer's jobs.
const JOB_ORDER: &str =
    "return [...document.querySelectorAll('#jobs li')].map(li => li.dataset.job).join(',')";

#[tokio::test]
async fn the_demo_operator_signs_in_and_builds_a_configuration() {
    let demo = Demo::start().await;
    let console = demo.server.server.console_addr.expect("console served");
    let browser = Browser::open(console).await;

    // Signing in: a wrong key is refused beside the form, the demo key
    // signs in.
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
    browser.type_into("#key", &demo.key).await;
    browser.shot("01-sign-in").await;
    browser.click("#signin").await;
    browser
        .until(
            "the configurations page",
            "return location.pathname === '/configs'",
            LIVE,
        )
        .await;
    browser
        .until(
            "the demo schedule in the list",
            &format!(
                "return !!document.querySelector('#configs tr[data-name=\"{DEMO_SCHEDULE}\"]')"
            ),
            LIVE,
        )
        .await;

    // A configuration from the drawer: the preview follows the rule, a
    // missing name is refused beside its field.
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
    for job in ["BILLTIME_USAGE_RATING", "SYNC_TRANSACTION", "BILLING"] {
        browser
            .js(&format!(
                "document.querySelector('#catalogue').value = '{job}'"
            ))
            .await;
        browser.click("#add-job").await;
    }
    assert_eq!(
        browser.js(JOB_ORDER).await,
        "BILLTIME_USAGE_RATING,SYNC_TRANSACTION,BILLING"
    );

    // Reordered by dragging: BILLING onto the first job.
    browser
        .drag(
            "#jobs li[data-job=BILLING] .grip",
            "#jobs li[data-job=BILLTIME_USAGE_RATING]",
        )
        .await;
    assert_eq!(
        browser.js(JOB_ORDER).await,
        "BILLING,BILLTIME_USAGE_RATING,SYNC_TRANSACTION",
        "dragged to the top"
    );
    // And with the keyboard: Enter on SYNC_TRANSACTION's "up" button, twice
    // (the button keeps the focus as its job moves).
    browser
        .js("document.querySelector(\"button[aria-label='Move SYNC_TRANSACTION up']\").focus()")
        .await;
    browser.press(Key::Enter).await;
    browser.press(Key::Enter).await;
    assert_eq!(
        browser.js(JOB_ORDER).await,
        "SYNC_TRANSACTION,BILLING,BILLTIME_USAGE_RATING",
        "moved up twice with the keyboard"
    );

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

    // Saved as shown.
    let configs = demo
        .server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: CLIENT.into(),
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
    assert_eq!(
        jobs,
        ["SYNC_TRANSACTION", "BILLING", "BILLTIME_USAGE_RATING"]
    );
    assert_eq!(config.scheduled_time, "18:30:00");
    assert_eq!(config.frequency, pb::Frequency::Scheduled as i32);

    browser.close().await;
    demo.stop().await;
}

#[tokio::test]
async fn the_demo_schedule_turns_red_live_and_blue_after_a_retry() {
    let demo = Demo::start().await;
    let console = demo.server.server.console_addr.expect("console served");
    // Core Aria rejects the calls of five accounts that have usage to sync.
    let rejected = demo.accounts_to_sync(5).await;
    assert_eq!(rejected.len(), 5);
    demo.reject(&rejected).await;

    let browser = Browser::open(console).await;
    sign_in(&browser, &demo.key, "").await;

    // The demo schedule from the side list, then the date from the picker.
    browser.click("nav a[href='/schedules']").await;
    browser
        .until(
            "the demo schedule",
            &format!(
                "return document.querySelector('#schedule-name')?.textContent === '{DEMO_SCHEDULE}'"
            ),
            LIVE,
        )
        .await;
    assert_eq!(
        browser.path().await,
        format!("/schedules/{}", demo.config_id)
    );
    browser
        .js(&format!("document.querySelector('#date').value = '{DATE}'"))
        .await;
    browser.click(".date-picker button").await;
    browser
        .until(
            "the date's live stream",
            &format!(
                "return location.search === '?date={DATE}' && \
                 document.querySelector('#schedule-body')?.dataset.liveState === 'open'"
            ),
            LIVE,
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('#execution-status').dataset.status")
            .await,
        "NONE"
    );

    // Process: the page follows the stream and the sync job's tile turns
    // red without a reload.
    browser.js("window.notReloaded = true").await;
    browser.type_into("input[name=reason]", "end of day").await;
    browser.click("#process").await;
    browser
        .until(
            "the red tile",
            &format!("{} === 'ERROR'", tile_status("SYNC_TRANSACTION")),
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
    assert_eq!(
        browser.js(&tile_status("BILLTIME_USAGE_RATING")).await,
        "COMPLETED"
    );
    assert_eq!(
        browser.js(&tile_status("BILLING")).await,
        "PENDING",
        "BILLING waits behind the errored sync"
    );
    // The buttons of an errored schedule: Reprocess, not Process; Retry on
    // the errored job only.
    let enabled = |css: &str| format!("return !document.querySelector(\"{css}\").disabled");
    assert_eq!(browser.js(&enabled("#reprocess")).await, true);
    assert_eq!(browser.js(&enabled("#process")).await, false);
    assert_eq!(browser.js(&enabled("#create")).await, false);
    assert_eq!(
        browser
            .js(&enabled(
                ".tile[data-job=SYNC_TRANSACTION] button[data-action=retry]"
            ))
            .await,
        true
    );
    assert_eq!(
        browser
            .js(&enabled(
                ".tile[data-job=BILLTIME_USAGE_RATING] button[data-action=retry]"
            ))
            .await,
        false
    );
    // The progress bar shows the errors (a bar the page's content
    // security policy would blank shows nothing).
    assert_eq!(
        browser.js(&bar_share("SYNC_TRANSACTION", "failed")).await,
        true,
        "the errored share of the bar is drawn"
    );
    browser.shot("04-schedule-error").await;

    // A POST without the CSRF token is refused, with the session cookie.
    let refused = browser
        .js(&format!(
            "return fetch('/schedules/{}/{DATE}/reset', {{method: 'POST', \
             headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: 'reason=x'}}) \
             .then(r => r.status)",
            demo.config_id
        ))
        .await;
    assert_eq!(refused, 403);

    // Stats: counts, core Aria's code, an item's payload.
    browser
        .click(".tile[data-job=SYNC_TRANSACTION] summary")
        .await;
    browser
        .click(".tile[data-job=SYNC_TRANSACTION] a[data-action=stats]")
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
            .js("return document.querySelector('#stat-errors').textContent")
            .await,
        "5"
    );
    browser
        .click(&format!("#codes a[data-code={REJECTED}]"))
        .await;
    browser
        .until(
            "the code's items",
            &format!(
                "return location.search.includes('code={REJECTED}') && \
                 document.querySelectorAll('#items details').length === 5"
            ),
            LIVE,
        )
        .await;
    browser.click("#items details.payload summary").await;
    let payload = browser
        .js("return document.querySelector('#items details[open] pre').textContent")
        .await;
    let payload: serde_json::Value =
        serde_json::from_str(payload.as_str().expect("text")).expect("the payload is JSON");
    let account = payload["account_id"]
        .as_str()
        .expect("the payload's account");
    assert!(rejected.iter().any(|a| a == account), "{payload}");
    assert!(
        !payload["transaction_ids"].as_array().unwrap().is_empty(),
        "{payload}"
    );
    let shown: BTreeSet<String> = serde_json::from_value(
        browser
            .js("return [...document.querySelectorAll('#items tbody tr:not(.payload-row) td:first-child')].map(td => td.textContent)")
            .await,
    )
    .unwrap();
    assert_eq!(shown, rejected.iter().cloned().collect::<BTreeSet<_>>());
    browser.shot("05-stats-drawer").await;

    // Core Aria accepts again; Retry from the menu, and the schedule runs
    // on to the end and turns blue.
    browser.click("#close-stats").await;
    browser
        .until(
            "the live stream again",
            "return document.querySelector('#schedule-body')?.dataset.liveState === 'open'",
            LIVE,
        )
        .await;
    browser.js("window.notReloaded = true").await;
    demo.reject(&[]).await;
    browser
        .click(".tile[data-job=SYNC_TRANSACTION] summary")
        .await;
    browser
        .click(".tile[data-job=SYNC_TRANSACTION] button[data-action=retry]")
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
    assert_eq!(
        browser
            .js("return [...document.querySelectorAll('.tile')].map(t => t.dataset.status).join(',')")
            .await,
        "COMPLETED,COMPLETED,COMPLETED,COMPLETED"
    );
    let history = browser
        .js("return document.querySelector('#history').textContent")
        .await;
    let history = history.as_str().unwrap();
    assert!(history.contains(DEMO_KEY_NAME), "{history}");
    assert!(
        history.contains("RETRY_JOB") && history.contains("PROCESS"),
        "{history}"
    );
    assert!(history.contains("end of day"), "{history}");
    assert_eq!(
        browser.js(&bar_share("SYNC_TRANSACTION", "done")).await,
        true,
        "the processed share of the bar is drawn"
    );
    assert_eq!(
        browser
            .js("const bar = document.querySelector('.tile[data-job=SYNC_TRANSACTION] .progress'); \
                 return Math.round(bar.querySelector('.done').getBoundingClientRect().width) \
                 === Math.round(bar.getBoundingClientRect().width)")
            .await,
        true,
        "all processed: the whole bar"
    );
    browser.shot("06-schedule-completed").await;

    browser.close().await;
    demo.stop().await;
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

/// The text of a GET of the console with the session cookie.
async fn get_text(http: &http::Http, url: &str, cookie: &str) -> String {
    use http_body_util::BodyExt;
    let response = http
        .request(
            ::http::Request::get(url)
                .header("cookie", cookie)
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The opening tag of the element `id` in `html`.
fn tag<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {html}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

#[tokio::test]
async fn the_buttons_follow_the_domain_and_reset_stops_a_running_execution() {
    use allegro_scheduler::clock::ManualClock;
    // A clock inside the configuration's exception window: Process holds
    // the execution there (PAUSED_BY_WINDOW), running but still.
    let url = fresh_database().await;
    let (registry, _) = test_jobs::registry();
    let clock = ManualClock::new(
        chrono::DateTime::parse_from_rfc3339("2026-11-24T23:00:00Z")
            .unwrap()
            .to_utc(),
    );
    let mut server =
        TestServer::start_with_clock(test_settings(&url), registry, std::sync::Arc::new(clock))
            .await;
    server.owns_database = true;
    let mut config = daily("eod", &["ITEMS_75"]);
    config.exception_start_time = "22:00:00".into();
    config.exception_end_time = "02:00:00".into();
    let config_id = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: Some(config),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
    let key = issue_key(
        &server.database_url,
        "operator@acme",
        Role::Operator,
        CLIENT,
        ClientScope::one(CLIENT),
        None,
    )
    .await;
    let base = format!("http://{}", server.server.console_addr.unwrap());
    let http = http::client();
    let cookie = http::sign_in(&http, &base, &key).await;
    let body_url = format!("{base}/schedules/{config_id}/{DATE}/body");
    let disabled = |html: &str, id: &str| tag(html, id).contains(" disabled");

    // No execution: Create and Process.
    let none = get_text(&http, &body_url, &cookie).await;
    assert!(!disabled(&none, "create") && !disabled(&none, "process"));
    assert!(!none.contains("id=\"reset\""), "nothing to reset");

    server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: CLIENT.into(),
            config_id: config_id.clone(),
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let held = get_text(&http, &body_url, &cookie).await;
    assert!(held.contains("data-status=\"PENDING\""), "{held}");
    assert!(disabled(&held, "create"), "Create disabled after creation");
    assert!(disabled(&held, "process"), "Process disabled once started");
    assert!(
        disabled(&held, "recreate"),
        "Recreate only before it starts"
    );
    assert!(
        disabled(&held, "reprocess"),
        "Reprocess only with an errored job"
    );
    assert!(!disabled(&held, "reset"));
    assert!(
        held.contains("name=\"cancel_in_flight\" value=\"on\""),
        "a Reset of a running execution stops its work first"
    );

    // Reset as the page posts it: accepted, and the execution is fresh.
    let page = get_text(
        &http,
        &format!("{base}/schedules/{config_id}?date={DATE}"),
        &cookie,
    )
    .await;
    let token = page
        .split("<meta name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's CSRF token")
        .to_string();
    let reset = http
        .request(
            ::http::Request::post(format!("{base}/schedules/{config_id}/{DATE}/reset"))
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-console-fetch", "1")
                .body(http_body_util::Full::from(format!(
                    "csrf={token}&reason=start+over&cancel_in_flight=on"
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let fresh = get_text(&http, &body_url, &cookie).await;
    assert!(!disabled(&fresh, "process") && !disabled(&fresh, "recreate"));
    assert!(!fresh.contains("cancel_in_flight"), "nothing runs now");
    server.stop().await;
}
