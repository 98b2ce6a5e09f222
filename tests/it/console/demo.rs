//! The console on the demo as the embedded default starts it, in the
//! shared browser: sign in with the demo key and build a configuration;
//! process the demo schedule while core Aria rejects some calls, follow it
//! live to red, drill into the errors, and Retry until it is blue.

use std::collections::{BTreeSet, HashMap};

use allegro_scheduler::billing::core_aria::{serve_standin, CoreAriaClient};
use allegro_scheduler::billing::demo::load_demo_ledger;
use allegro_scheduler::billing::jobs::catalogue::CATALOGUE;
use allegro_scheduler::db::Db;
use allegro_scheduler::proto::core_v1::core_stand_in_control_client::CoreStandInControlClient;
use allegro_scheduler::proto::core_v1::SetFaultsRequest;
use fantoccini::key::Key;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::*;

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
        let config_id = server.create_config(CLIENT, schedule).await;
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
