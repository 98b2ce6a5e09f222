//! Job schedule configurations through gRPC: every rule and every bad input.

use allegro_scheduler::proto::v1 as pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::support::*;

async fn create(
    server: &TestServer,
    client: &str,
    config: pb::JobScheduleConfig,
) -> Result<pb::JobScheduleConfig, tonic::Status> {
    server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: client.into(),
            config: Some(config),
        })
        .await
        .map(|r| r.into_inner())
}

async fn get(
    server: &TestServer,
    client: &str,
    config_id: &str,
) -> Result<pb::JobScheduleConfig, tonic::Status> {
    server
        .configs()
        .get_job_schedule_config(pb::GetJobScheduleConfigRequest {
            client_id: client.into(),
            config_id: config_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn update(
    server: &TestServer,
    client: &str,
    config: pb::JobScheduleConfig,
    paths: &[&str],
) -> Result<pb::JobScheduleConfig, tonic::Status> {
    server
        .configs()
        .update_job_schedule_config(pb::UpdateJobScheduleConfigRequest {
            client_id: client.into(),
            config: Some(config),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn create_get_update_delete_round_trip() {
    let server = TestServer::start().await;
    let mut config = scheduled(
        "month-end",
        &["BILLTIME_USAGE_RATING", "SYNC_TRANSACTION", "BILLING"],
    );
    config.description = "closes the month".into();
    config.scheduled_time = "23:30:00".into();
    config.exception_start_time = "22:00:00".into();
    config.exception_end_time = "02:00:00".into();
    config.time_zone = "America/New_York".into();
    config.recurrence_rule = "FREQ=MONTHLY;BYMONTHDAY=-1".into();
    config.jobs[2].manual = true;
    let created = create(&server, CLIENT, config.clone()).await.unwrap();
    assert!(!created.config_id.is_empty());
    assert_eq!(created.client_id, CLIENT);
    assert_eq!(created.name, "month-end");
    assert_eq!(created.description, "closes the month");
    assert_eq!(created.frequency, pb::Frequency::Scheduled as i32);
    assert_eq!(created.scheduled_time, "23:30:00");
    assert_eq!(
        (
            created.exception_start_time.as_str(),
            created.exception_end_time.as_str()
        ),
        ("22:00:00", "02:00:00")
    );
    assert_eq!(created.time_zone, "America/New_York");
    assert_eq!(created.recurrence_rule, "FREQ=MONTHLY;BYMONTHDAY=-1");
    let types: Vec<_> = created.jobs.iter().map(|j| j.job_type.as_str()).collect();
    assert_eq!(
        types,
        ["BILLTIME_USAGE_RATING", "SYNC_TRANSACTION", "BILLING"]
    );
    assert_eq!(
        created.jobs.iter().map(|j| j.manual).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert!(created.create_time.is_some());

    let fetched = get(&server, CLIENT, &created.config_id).await.unwrap();
    assert_eq!(fetched, created);

    // Update only the job order and the description; everything else stays.
    let mut change = pb::JobScheduleConfig {
        config_id: created.config_id.clone(),
        etag: created.etag.clone(),
        description: "reordered".into(),
        ..Default::default()
    };
    change.jobs = vec![created.jobs[2].clone(), created.jobs[0].clone()];
    let updated = update(&server, CLIENT, change, &["description", "jobs"])
        .await
        .unwrap();
    assert_eq!(updated.description, "reordered");
    assert_eq!(
        updated
            .jobs
            .iter()
            .map(|j| j.job_type.as_str())
            .collect::<Vec<_>>(),
        ["BILLING", "BILLTIME_USAGE_RATING"]
    );
    assert_eq!(updated.scheduled_time, "23:30:00");
    assert_eq!(updated.time_zone, "America/New_York");
    assert_ne!(updated.etag, created.etag);

    // The exception window can be cleared by naming both fields.
    let cleared = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            config_id: created.config_id.clone(),
            ..Default::default()
        },
        &["exception_start_time", "exception_end_time"],
    )
    .await
    .unwrap();
    assert_eq!(cleared.exception_start_time, "");

    server
        .configs()
        .delete_job_schedule_config(pb::DeleteJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config_id: created.config_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let gone = get(&server, CLIENT, &created.config_id).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn bad_inputs_name_their_fields() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, pb::JobScheduleConfig, &str)> = vec![
        ("empty name", daily("", &["BILLING"]), "config.name"),
        (
            "hour 25",
            pb::JobScheduleConfig {
                scheduled_time: "25:00:00".into(),
                ..daily("a", &["BILLING"])
            },
            "config.scheduled_time",
        ),
        (
            "half exception window",
            pb::JobScheduleConfig {
                exception_start_time: "22:00:00".into(),
                ..daily("a", &["BILLING"])
            },
            "config.exception_end_time",
        ),
        (
            "other half of the window",
            pb::JobScheduleConfig {
                exception_end_time: "02:00:00".into(),
                ..daily("a", &["BILLING"])
            },
            "config.exception_start_time",
        ),
        (
            "unknown job type",
            daily("a", &["BILLING", "PAYROLL"]),
            "config.jobs[1].job_type",
        ),
        ("no jobs", daily("a", &[]), "config.jobs"),
        (
            "unknown time zone",
            pb::JobScheduleConfig {
                time_zone: "Europe/Atlantis".into(),
                ..daily("a", &["BILLING"])
            },
            "config.time_zone",
        ),
        (
            "bad recurrence rule",
            pb::JobScheduleConfig {
                recurrence_rule: "FREQ=FORTNIGHTLY".into(),
                ..scheduled("a", &["BILLING"])
            },
            "config.recurrence_rule",
        ),
        (
            "sub-daily recurrence rule",
            pb::JobScheduleConfig {
                recurrence_rule: "FREQ=HOURLY".into(),
                ..scheduled("a", &["BILLING"])
            },
            "config.recurrence_rule",
        ),
        (
            "no frequency",
            pb::JobScheduleConfig {
                frequency: 0,
                ..daily("a", &["BILLING"])
            },
            "config.frequency",
        ),
    ];
    for (what, config, field) in cases {
        let status = create(&server, CLIENT, config).await.unwrap_err();
        assert_eq!(violated_fields(&status), [field], "{what}: {status:?}");
        assert!(
            status.message().contains(field),
            "{what}: message names the field"
        );
    }

    let missing_client = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: String::new(),
            config: Some(daily("a", &["BILLING"])),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&missing_client), ["client_id"]);

    let missing_config = server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&missing_config), ["config"]);

    let bad_id = get(&server, CLIENT, "not-a-uuid").await.unwrap_err();
    assert_eq!(violated_fields(&bad_id), ["config_id"]);
    server.stop().await;
}

#[tokio::test]
async fn names_are_unique_per_client_and_one_daily_per_client() {
    let server = TestServer::start().await;
    create(&server, CLIENT, daily("eod", &["BILLING"]))
        .await
        .unwrap();

    let duplicate = create(&server, CLIENT, scheduled("eod", &["BILLING"]))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert_eq!(reason(&duplicate), "DUPLICATE_NAME");
    assert!(duplicate.message().contains("config.name"));

    let second_daily = create(&server, CLIENT, daily("eod-2", &["BILLING"]))
        .await
        .unwrap_err();
    assert_eq!(second_daily.code(), Code::AlreadyExists);
    assert_eq!(reason(&second_daily), "DAILY_ALREADY_EXISTS");

    // Another client may use the same name and have its own DAILY.
    create(&server, "globex", daily("eod", &["BILLING"]))
        .await
        .unwrap();
    // Many SCHEDULED ones are fine.
    create(&server, CLIENT, scheduled("s1", &["BILLING"]))
        .await
        .unwrap();
    let s2 = create(&server, CLIENT, scheduled("s2", &["BILLING"]))
        .await
        .unwrap();

    // Turning a SCHEDULED one into a second DAILY is refused too.
    let to_daily = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            config_id: s2.config_id.clone(),
            frequency: pb::Frequency::Daily as i32,
            ..Default::default()
        },
        &["frequency"],
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&to_daily), "DAILY_ALREADY_EXISTS");
    server.stop().await;
}

#[tokio::test]
async fn the_database_itself_refuses_a_second_daily() {
    let server = TestServer::start().await;
    create(&server, CLIENT, daily("eod", &["BILLING"]))
        .await
        .unwrap();
    let (db, conn) = tokio_postgres::connect(&server.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let err = db
        .execute(
            "INSERT INTO job_schedule_configs (config_id, client_id, name, frequency, jobs) \
             VALUES (gen_random_uuid(), 'acme', 'sneaky', 'DAILY', '[{\"job_type\":\"BILLING\"}]')",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("job_schedule_configs_one_daily_per_client")
            || format!("{err:?}").contains("job_schedule_configs_one_daily_per_client"),
        "{err:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn update_rules_name_etag_and_unknown_config() {
    let server = TestServer::start().await;
    let created = create(&server, CLIENT, daily("eod", &["BILLING"]))
        .await
        .unwrap();

    let rename = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            config_id: created.config_id.clone(),
            name: "new-name".into(),
            ..Default::default()
        },
        &["name"],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&rename), ["update_mask.paths[0]"]);
    assert!(rename.message().contains("immutable"));

    let rename_in_body = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            name: "new-name".into(),
            ..created.clone()
        },
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&rename_in_body), ["config.name"]);

    let unknown_path = update(&server, CLIENT, created.clone(), &["colour"])
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown_path), ["update_mask.paths[0]"]);

    // A full replacement (empty mask) with the current etag works once...
    let first = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            description: "first".into(),
            ..created.clone()
        },
        &[],
    )
    .await
    .unwrap();
    assert_eq!(first.description, "first");
    // ...and the same etag again is stale.
    let stale = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            description: "second".into(),
            ..created.clone()
        },
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(reason(&stale), "ETAG_MISMATCH");
    assert_eq!(
        get(&server, CLIENT, &created.config_id)
            .await
            .unwrap()
            .description,
        "first"
    );

    // Invalid merged values are refused with the field.
    let bad = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            config_id: created.config_id.clone(),
            scheduled_time: "24:00:00".into(),
            ..Default::default()
        },
        &["scheduled_time"],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&bad), ["config.scheduled_time"]);

    let unknown = update(
        &server,
        CLIENT,
        pb::JobScheduleConfig {
            config_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        },
        &["description"],
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let stale_delete = server
        .configs()
        .delete_job_schedule_config(pb::DeleteJobScheduleConfigRequest {
            client_id: CLIENT.into(),
            config_id: created.config_id.clone(),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale_delete.code(), Code::Aborted);
    server.stop().await;
}

#[tokio::test]
async fn clients_never_see_each_other() {
    let server = TestServer::start().await;
    let acme = create(&server, CLIENT, daily("eod", &["BILLING"]))
        .await
        .unwrap();
    let other = get(&server, "globex", &acme.config_id).await.unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let cross_update = update(
        &server,
        "globex",
        pb::JobScheduleConfig {
            config_id: acme.config_id.clone(),
            description: "x".into(),
            ..Default::default()
        },
        &["description"],
    )
    .await
    .unwrap_err();
    assert_eq!(cross_update.code(), Code::NotFound);
    let cross_delete = server
        .configs()
        .delete_job_schedule_config(pb::DeleteJobScheduleConfigRequest {
            client_id: "globex".into(),
            config_id: acme.config_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(cross_delete.code(), Code::NotFound);
    let listed = server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: "globex".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.configs.is_empty());
    assert!(get(&server, CLIENT, &acme.config_id).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn listing_pages_through_everything_once() {
    let server = TestServer::start().await;
    let mut names: Vec<String> = (0..7).map(|i| format!("sched-{i:02}")).collect();
    for name in &names {
        create(&server, CLIENT, scheduled(name, &["BILLING"]))
            .await
            .unwrap();
    }
    create(&server, "globex", scheduled("zzz", &["BILLING"]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = server
            .configs()
            .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
                client_id: CLIENT.into(),
                page_size: 3,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.configs.len() <= 3);
        seen.extend(page.configs.into_iter().map(|c| c.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    names.sort();
    assert_eq!(seen, names);
    assert_eq!(pages, 3);

    // A token of acme's listing is refused for globex.
    let first = server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: CLIENT.into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let foreign = server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: "globex".into(),
            page_size: 2,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&foreign), ["page_token"]);
    let garbage = server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: CLIENT.into(),
            page_size: 2,
            page_token: "bm90LWEtdG9rZW4".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&garbage), ["page_token"]);
    server.stop().await;
}

#[tokio::test]
async fn catalogue_lists_the_four_jobs() {
    let server = TestServer::start().await;
    let types = server
        .catalogue()
        .list_job_types(pb::ListJobTypesRequest {})
        .await
        .unwrap()
        .into_inner()
        .job_types;
    let names: Vec<_> = types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "BILLTIME_USAGE_RATING",
            "SYNC_TRANSACTION",
            "BILLING",
            "SYNC_BILLING_TRANSACTIONS"
        ]
    );
    assert!(types
        .iter()
        .all(|t| !t.description.is_empty() && !t.work_item.is_empty()));
    assert!(types[2].description.contains("Minimum Commitments"));
    server.stop().await;
}

#[tokio::test]
async fn configurations_survive_a_restart() {
    let url = fresh_database().await;
    let first = TestServer::start_with(test_settings(&url), catalogue_jobs()).await;
    let created = create(&first, CLIENT, daily("eod", &["BILLING"]))
        .await
        .unwrap();
    first.stop().await;
    let second = TestServer::start_with(test_settings(&url), catalogue_jobs()).await;
    assert_eq!(
        get(&second, CLIENT, &created.config_id).await.unwrap(),
        created
    );
    second.stop().await;
}

#[tokio::test]
async fn health_and_reflection_v1_and_v1alpha_are_served() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let server = TestServer::start().await;
    let health = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: "aria.allegro.scheduling.v1.JobScheduleConfigService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(server.channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let response = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for expected in [
            "aria.allegro.scheduling.v1.JobScheduleConfigService",
            "aria.allegro.scheduling.v1.ExecutionService",
            "aria.allegro.scheduling.v1.JobCatalogueService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "v1 lists {expected}: {names:?}"
            );
        }
    }
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(server.channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "aria.allegro.scheduling.v1.JobScheduleConfigService".into(),
            )),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let response = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("unexpected reflection answer")
        };
        // The descriptor carries the comments `grpcurl describe` shows.
        use prost::Message;
        let described = files.file_descriptor_proto.iter().any(|bytes| {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            file.source_code_info.is_some_and(|info| {
                info.location.iter().any(|l| {
                    l.leading_comments()
                        .contains("Creates, reads, updates and deletes the job schedule")
                })
            })
        });
        assert!(
            described,
            "v1alpha reflection serves the commented descriptor"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_stored_job_list_that_does_not_parse_answers_internal_and_harms_no_one_else() {
    let server = TestServer::start().await;
    let broken = create(&server, CLIENT, daily("eod", &["BILLING"]))
        .await
        .unwrap();
    let fine = create(&server, "other", daily("eod", &["BILLING"]))
        .await
        .unwrap();
    let (db, conn) = tokio_postgres::connect(&server.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.execute(
        "UPDATE job_schedule_configs SET jobs = '[{\"job\": 7}]'::jsonb \
         WHERE config_id = $1::text::uuid",
        &[&broken.config_id],
    )
    .await
    .unwrap();
    let refused = get(&server, CLIENT, &broken.config_id).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
    assert_eq!(get(&server, "other", &fine.config_id).await.unwrap(), fine);
    server.stop().await;
}
