//! The cases of a hostile caller, one by one: every wrong request gets a
//! clear client error, never INTERNAL or a panic, and no error echoes its
//! input without limit. Also the database failure classes and the pool's
//! session settings against a real PostgreSQL.

use std::time::Duration;

use allegro_scheduler::db::{Db, Failure, PoolOptions};
use allegro_scheduler::proto::v1 as pb;
use base64::Engine as _;

use crate::support::*;

fn assert_client_error(status: &tonic::Status) {
    if let Some(problem) = status_problem(status) {
        panic!("{problem}: {status:?}");
    }
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("expected INVALID_ARGUMENT");
    assert_client_error(&status);
    assert_eq!(violated_fields(&status), [field], "{status:?}");
}

async fn create_daily(server: &TestServer, zone: &str) -> String {
    let mut config = daily("eod", &["BILLING"]);
    config.time_zone = zone.into();
    server.create_config(CLIENT, config).await
}

#[tokio::test]
async fn nul_in_any_text_is_an_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let config_id = create_daily(&server, "UTC").await;
    let mut config = scheduled("with nul", &["BILLING"]);
    config.description = "before\0after".into();
    assert_invalid(
        server
            .configs()
            .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                client_id: CLIENT.into(),
                config: Some(config),
            })
            .await,
        "config.description",
    );
    assert_invalid(
        server
            .executions()
            .create_execution(pb::CreateExecutionRequest {
                client_id: CLIENT.into(),
                config_id: config_id.clone(),
                business_date: "2026-11-24".into(),
                reason: "why\0".into(),
                ..Default::default()
            })
            .await,
        "reason",
    );
    assert_invalid(
        server
            .executions()
            .list_errored_work_items(pb::ListErroredWorkItemsRequest {
                client_id: CLIENT.into(),
                config_id,
                business_date: "2026-11-24".into(),
                position: 1,
                error_code: "TIER\0GAP".into(),
                ..Default::default()
            })
            .await,
        "error_code",
    );
    server.stop().await;
}

#[tokio::test]
async fn huge_values_get_short_errors() {
    let server = TestServer::start().await;
    let config_id = create_daily(&server, "UTC").await;
    assert_invalid(
        server
            .configs()
            .get_job_schedule_config(pb::GetJobScheduleConfigRequest {
                client_id: CLIENT.into(),
                config_id: "7".repeat(10_000),
            })
            .await,
        "config_id",
    );
    assert_invalid(
        server
            .executions()
            .create_execution(pb::CreateExecutionRequest {
                client_id: CLIENT.into(),
                config_id,
                business_date: "2026-11-24".into(),
                manual_job_positions: (1..=100_000).collect(),
                ..Default::default()
            })
            .await,
        "manual_job_positions",
    );
    let mut config = scheduled("big", &["BILLING"]);
    config.description = "d".repeat(1 << 20);
    config.jobs = vec![
        pb::JobSpec {
            job_type: "X".repeat(1000),
            manual: false,
        };
        10_000
    ];
    let status = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: Some(config),
        })
        .await
        .unwrap_err();
    assert_client_error(&status);
    server.stop().await;
}

#[tokio::test]
async fn business_dates_outside_the_range_are_refused() {
    let server = TestServer::start().await;
    let config_id = create_daily(&server, "UTC").await;
    for bad in ["+9999-12-3", "-999-12-31", "1899-12-31", "10000-01-01"] {
        assert_invalid(
            server
                .executions()
                .get_execution(pb::GetExecutionRequest {
                    client_id: CLIENT.into(),
                    config_id: config_id.clone(),
                    business_date: bad.into(),
                })
                .await,
            "business_date",
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn page_tokens_are_signed_and_shared_by_replicas() {
    let url = fresh_database().await;
    let first = TestServer::start_with(test_settings(&url), catalogue_jobs()).await;
    for name in ["a", "b", "c"] {
        first
            .configs()
            .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                client_id: CLIENT.into(),
                config: Some(scheduled(name, &["BILLING"])),
            })
            .await
            .unwrap();
    }
    let list = |token: &str| pb::ListJobScheduleConfigsRequest {
        client_id: CLIENT.into(),
        page_size: 1,
        page_token: token.into(),
    };
    let token = first
        .configs()
        .list_job_schedule_configs(list(""))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());

    // Another replica on the same database accepts it.
    let second = TestServer::start_with(test_settings(&url), catalogue_jobs()).await;
    let page = second
        .configs()
        .list_job_schedule_configs(list(&token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.configs[0].name, "b");

    // Forged (the old unsigned format with a key PostgreSQL cannot store or
    // a date chrono cannot hold) or altered tokens are refused.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, tag) = token.split_once('.').unwrap();
    let mut altered = b64.decode(payload).unwrap();
    altered[10] ^= 1;
    for forged in [
        b64.encode(r#"{"q":"x","k":["a\u0000b","00000000-0000-0000-0000-000000000000"]}"#),
        b64.encode(r#"{"q":"x","k":"-100000-01-01"}"#),
        format!("{}.{tag}", b64.encode(&altered)),
        format!("{payload}.{}", b64.encode([0u8; 32])),
        "x".repeat(100_000),
    ] {
        assert_invalid(
            second
                .configs()
                .list_job_schedule_configs(list(&forged))
                .await,
            "page_token",
        );
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn upcoming_runs_at_extreme_instants_never_panic() {
    let server = TestServer::start().await;
    for zone in ["Asia/Tokyo", "America/New_York"] {
        let config_id = {
            let mut config = daily(&format!("eod {zone}"), &["BILLING"]);
            config.time_zone = zone.into();
            config.scheduled_time = "02:30:00".into();
            let client = format!("client-{}", zone.replace('/', "-"));
            let id = server.create_config(&client, config).await;
            (client, id)
        };
        let upcoming = |seconds: i64, nanos: i32| pb::ListUpcomingRunsRequest {
            client_id: config_id.0.clone(),
            config_id: config_id.1.clone(),
            after: Some(prost_types::Timestamp { seconds, nanos }),
            count: 366,
        };
        for (seconds, nanos) in [(i64::MIN, 0), (i64::MAX, 0), (0, -1), (0, i32::MAX)] {
            assert_invalid(
                server
                    .configs()
                    .list_upcoming_runs(upcoming(seconds, nanos))
                    .await,
                "after",
            );
        }
        for (seconds, nanos) in [
            (-62_135_596_800, 0),
            (253_402_300_799, 999_999_999),
            (253_402_000_000, 0),
            (-2_208_988_800, 0),
        ] {
            let runs = server
                .configs()
                .list_upcoming_runs(upcoming(seconds, nanos))
                .await
                .unwrap()
                .into_inner()
                .runs;
            assert!(runs.len() <= 366);
            assert!(runs.iter().all(|r| r.business_date.len() == 10), "{runs:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn recurrence_rules_that_never_fire_are_refused_at_create_and_update() {
    let server = TestServer::start().await;
    for rule in [
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=MONTHLY;COUNT=0",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    ] {
        let mut config = scheduled("never", &["BILLING"]);
        config.recurrence_rule = rule.into();
        config.scheduled_time = "09:00:00".into();
        assert_invalid(
            server
                .configs()
                .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                    client_id: CLIENT.into(),
                    config: Some(config),
                })
                .await,
            "config.recurrence_rule",
        );
    }
    let mut config = scheduled("month end", &["BILLING"]);
    config.recurrence_rule = "FREQ=MONTHLY;BYMONTHDAY=-1".into();
    let created = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: Some(config),
        })
        .await
        .unwrap()
        .into_inner();
    assert_invalid(
        server
            .configs()
            .update_job_schedule_config(pb::UpdateJobScheduleConfigRequest {
                client_id: CLIENT.into(),
                config: Some(pb::JobScheduleConfig {
                    config_id: created.config_id,
                    recurrence_rule: "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["recurrence_rule".into()],
                }),
            })
            .await,
        "config.recurrence_rule",
    );
    server.stop().await;
}

#[tokio::test]
async fn undecodable_requests_are_invalid_arguments() {
    let server = TestServer::start().await;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "/aria.allegro.scheduling.v1.JobScheduleConfigService/GetJobScheduleConfig",
            vec![0x0a, 0x02, 0xc3, 0x28],
            "client_id",
        ),
        (
            "/aria.allegro.scheduling.v1.ExecutionService/ListExecutions",
            vec![0x28, 0xff],
            "page_size",
        ),
        (
            "/aria.allegro.scheduling.v1.JobCatalogueService/ListJobTypes",
            vec![0x0b],
            "request",
        ),
        (
            "/grpc.health.v1.Health/Check",
            vec![0x0a, 0x01, 0xff],
            "service",
        ),
    ];
    for (path, bytes, field) in cases {
        let status = raw_unary(&server.channel, path, bytes).await.unwrap_err();
        assert_client_error(&status);
        assert_eq!(violated_fields(&status), [field], "{path}: {status:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn database_failures_are_classified_and_sessions_configured() {
    let url = fresh_database().await;
    let db = Db::with_options(
        &url,
        PoolOptions {
            statement_timeout: Duration::from_millis(200),
            ..PoolOptions::new(4)
        },
    )
    .unwrap();
    let client = |url: String| async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    };

    // Every pooled connection carries the statement timeout and the
    // application name.
    {
        use diesel::sql_types::Text;
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = Text)]
            value: String,
        }
        let mut conn = db.conn().await.unwrap();
        let name: Setting =
            diesel::sql_query("SELECT current_setting('application_name') AS value")
                .get_result(&mut conn)
                .await
                .unwrap();
        assert_eq!(name.value, allegro_scheduler::db::APPLICATION_NAME);
        let timeout: Setting =
            diesel::sql_query("SELECT current_setting('statement_timeout') AS value")
                .get_result(&mut conn)
                .await
                .unwrap();
        assert_eq!(timeout.value, "200ms");

        // A statement past the timeout.
        let error = diesel::sql_query("SELECT pg_sleep(2)")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let error = allegro_scheduler::db::DbError::Query(error);
        assert_eq!(error.failure(), Failure::Timeout, "{error}");
    }

    // A connection PostgreSQL terminates: its next statement is
    // UNAVAILABLE.
    let setup = client(url.clone()).await;
    {
        use diesel::sql_types::Integer;
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = Integer)]
            pid: i32,
        }
        let mut conn = db.conn().await.unwrap();
        let pid: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result(&mut conn)
            .await
            .unwrap();
        setup
            .batch_execute(&format!("SELECT pg_terminate_backend({})", pid.pid))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let error = diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let error = allegro_scheduler::db::DbError::Query(error);
        assert_eq!(error.failure(), Failure::Unavailable, "{error}");
    }

    // No free connection within the wait timeout: UNAVAILABLE.
    {
        let small = Db::with_options(
            &url,
            PoolOptions {
                wait_timeout: Duration::from_millis(100),
                ..PoolOptions::new(1)
            },
        )
        .unwrap();
        let _held = small.conn().await.unwrap();
        let error = small.conn().await.err().expect("pool exhausted");
        assert_eq!(error.failure(), Failure::Unavailable, "{error}");
    }

    // A deadlock: two transactions lock two rows in opposite order.
    setup
        .batch_execute("CREATE TABLE deadlock_test (id int PRIMARY KEY); INSERT INTO deadlock_test VALUES (1), (2)")
        .await
        .unwrap();
    let other = client(url.clone()).await;
    other
        .batch_execute("BEGIN; UPDATE deadlock_test SET id = id WHERE id = 2")
        .await
        .unwrap();
    // The pooled session detects the deadlock first (its deadlock_timeout
    // is the shorter), so it is the one PostgreSQL aborts.
    let mut conn = db.conn().await.unwrap();
    let pooled = async {
        use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
        conn.batch_execute(
            "SET deadlock_timeout = '10ms'; BEGIN; UPDATE deadlock_test SET id = id WHERE id = 1",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let result = diesel::sql_query("UPDATE deadlock_test SET id = id WHERE id = 2")
            .execute(&mut *conn)
            .await;
        conn.batch_execute("ROLLBACK").await.unwrap();
        result
    };
    let blocking = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let result = other
            .batch_execute("UPDATE deadlock_test SET id = id WHERE id = 1")
            .await;
        let _ = other.batch_execute("ROLLBACK").await;
        result
    };
    let (pooled, blocking) = tokio::join!(pooled, blocking);
    let error = allegro_scheduler::db::DbError::Query(pooled.expect_err("a deadlock"));
    assert_eq!(error.failure(), Failure::Conflict, "{error}");
    assert!(blocking.is_ok());
}

#[tokio::test]
async fn the_on_behalf_of_metadata_is_bounded() {
    let server = TestServer::start().await;
    let config_id = create_daily(&server, "UTC").await;
    let mut request = tonic::Request::new(pb::CreateExecutionRequest {
        client_id: CLIENT.into(),
        config_id,
        business_date: "2026-11-24".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-on-behalf-of", "a".repeat(5_000).parse().unwrap());
    assert_invalid(
        server.executions().create_execution(request).await,
        "x-on-behalf-of",
    );
    server.stop().await;
}
