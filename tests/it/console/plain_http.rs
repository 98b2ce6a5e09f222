//! The console over plain HTTP (no browser): the session and CSRF checks,
//! the live stream's resumption after the last event, and the schedule's
//! buttons as the domain allows them.

use super::*;

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
        .create_config("acme", daily("eod", &["ITEMS_75"]))
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
    let config_id = server.create_config(CLIENT, config).await;
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
