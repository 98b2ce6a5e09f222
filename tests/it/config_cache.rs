//! The configuration listing served from memory: it never shows a listing
//! that a change has replaced, whether the change came through this
//! replica, another replica or plain SQL, or while the notifications were
//! cut off.

use std::time::{Duration, Instant};

use allegro_scheduler::proto::v1 as pb;

use crate::processes::db;
use crate::support::*;

/// A server on `url` whose listings would stay in memory for an hour: a
/// change can only show through the notifications or the writer's own drop.
async fn long_cache_server(url: &str) -> TestServer {
    let mut settings = test_settings(url);
    settings.config_cache_secs = 3600;
    TestServer::start_with(settings, catalogue_jobs()).await
}

async fn page(server: &TestServer, size: i32, token: &str) -> pb::ListJobScheduleConfigsResponse {
    server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: CLIENT.into(),
            page_size: size,
            page_token: token.into(),
        })
        .await
        .expect("listing answers")
        .into_inner()
}

/// Name and description of every configuration of [`CLIENT`], page by page.
async fn listed(server: &TestServer, size: i32) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = page(server, size, &token).await;
        all.extend(page.configs.into_iter().map(|c| (c.name, c.description)));
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// Waits (up to a minute, a guard against a hang, not a measure) until the
/// listing of `server` is `expected`.
async fn listed_eventually(server: &TestServer, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = listed(server, 50).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the listing stayed {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn described(name: &str, description: &str) -> pb::JobScheduleConfig {
    let mut config = scheduled(name, &["BILLING"]);
    config.description = description.into();
    config
}

/// A session on `url` that has run `statement`.
async fn sql(url: &str, statement: &str) -> tokio_postgres::Client {
    let client = db(url).await;
    client.batch_execute(statement).await.unwrap();
    client
}

#[tokio::test]
async fn the_writing_replica_lists_its_own_changes_at_once() {
    let url = fresh_database().await;
    let server = long_cache_server(&url).await;
    assert!(listed(&server, 50).await.is_empty());
    let id = server.create_config(CLIENT, described("b", "first")).await;
    assert_eq!(listed(&server, 50).await, [("b".into(), "first".into())]);

    let etag = server
        .configs()
        .update_job_schedule_config(pb::UpdateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: Some(pb::JobScheduleConfig {
                config_id: id.clone(),
                description: "second".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .etag;
    assert_eq!(listed(&server, 50).await, [("b".into(), "second".into())]);

    for name in ["a", "c", "d", "e"] {
        server.create_config(CLIENT, described(name, "")).await;
    }
    let names: Vec<String> = listed(&server, 2).await.into_iter().map(|c| c.0).collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);

    // The configuration a page ended on goes between two pages: the next
    // page still starts right after it.
    let first = page(&server, 2, "").await;
    server
        .configs()
        .delete_job_schedule_config(pb::DeleteJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config_id: id,
            etag,
        })
        .await
        .unwrap();
    let rest = page(&server, 2, &first.next_page_token).await;
    let names: Vec<String> = rest.configs.into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["c", "d"]);
    assert_eq!(
        listed(&server, 50).await,
        [
            ("a".into(), "".into()),
            ("c".into(), "".into()),
            ("d".into(), "".into()),
            ("e".into(), "".into())
        ]
    );
    server.stop().await;
    drop_database(&url).await;
}

#[tokio::test]
async fn another_replica_and_plain_sql_reach_every_listing() {
    let url = fresh_database().await;
    let a = long_cache_server(&url).await;
    let b = long_cache_server(&url).await;
    assert!(listed(&b, 50).await.is_empty());

    // Served from memory: the listing answers while the table is locked.
    let lock = sql(
        &url,
        "BEGIN; LOCK TABLE job_schedule_configs IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let held = tokio::time::timeout(Duration::from_secs(10), listed(&b, 50)).await;
    assert_eq!(held.expect("answered from memory"), []);
    lock.batch_execute("ROLLBACK").await.unwrap();

    a.create_config(CLIENT, described("nightly", "made on a"))
        .await;
    listed_eventually(&b, &[("nightly", "made on a")]).await;

    sql(
        &url,
        "UPDATE job_schedule_configs SET description = 'changed by hand'",
    )
    .await;
    listed_eventually(&a, &[("nightly", "changed by hand")]).await;
    listed_eventually(&b, &[("nightly", "changed by hand")]).await;
    a.stop().await;
    b.stop().await;
    drop_database(&url).await;
}

#[tokio::test]
async fn a_change_made_while_the_notifications_were_cut_off_is_listed() {
    let url = fresh_database().await;
    let server = long_cache_server(&url).await;
    server
        .create_config(CLIENT, described("nightly", "before"))
        .await;
    assert_eq!(
        listed(&server, 50).await,
        [("nightly".into(), "before".into())]
    );
    // Cut the hub's LISTEN connection and change the row at once, before
    // it connects again: meanwhile listings come from the database.
    let admin = db(&url).await;
    let listener = "SELECT pid FROM pg_stat_activity \
                    WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    let cut: i32 = admin.query_one(listener, &[]).await.unwrap().get(0);
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend({cut}); \
             UPDATE job_schedule_configs SET description = 'while cut off'"
        ))
        .await
        .unwrap();
    listed_eventually(&server, &[("nightly", "while cut off")]).await;
    // Once the hub listens again, what it held before is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now: Vec<i32> = admin
            .query(listener, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if now.iter().any(|pid| *pid != cut) {
            break;
        }
        assert!(Instant::now() < deadline, "the hub never listened again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        listed(&server, 50).await,
        [("nightly".into(), "while cut off".into())]
    );
    server.stop().await;
    drop_database(&url).await;
}
