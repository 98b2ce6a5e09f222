//! Who may call: every RPC of every service refuses callers without a valid
//! key, with another client's key, or with too low a role, and then nothing
//! in the database changed; platform keys; key management; the action
//! history names the key; per-key limits.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::api::auth;
use allegro_scheduler::scheduling::domain::access::{ClientScope, Role};
use pb::access_service_client::AccessServiceClient;
use pb::execution_service_client::ExecutionServiceClient;
use pb::job_catalogue_service_client::JobCatalogueServiceClient;
use pb::job_schedule_config_service_client::JobScheduleConfigServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::executions::{finished, setup, Fixture};
use crate::support::*;

const DATE: &str = "2026-11-24";

/// Request metadata to send: `authorization` and anything else.
#[derive(Clone, Default)]
struct Headers(Vec<(&'static str, String)>);

impl Headers {
    fn none() -> Self {
        Self::default()
    }

    fn raw(authorization: &str) -> Self {
        Self(vec![("authorization", authorization.to_string())])
    }

    fn key(key: &str) -> Self {
        Self::raw(&format!("Bearer {key}"))
    }

    fn with(mut self, name: &'static str, value: &str) -> Self {
        self.0.push((name, value.to_string()));
        self
    }
}

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        for (name, value) in &self.0 {
            request
                .metadata_mut()
                .insert(*name, value.parse().expect("ASCII metadata"));
        }
        Ok(request)
    }
}

type Ch = InterceptedService<Channel, Headers>;
type Outcome = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;
type Call = Box<dyn Fn(Ch) -> Outcome + Send + Sync>;
/// The code a case expects for an RPC, `None` for being let in.
type Expect<'a> = &'a dyn Fn(Needs) -> Option<Code>;

/// What an RPC needs: which role, and whether it names a client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Needs {
    /// A viewer of the client.
    Read,
    /// An operator of the client.
    Write,
    /// An admin of the client.
    Admin,
    /// A viewer of any client (the catalogue names none).
    Global,
}

macro_rules! rpc {
    ($calls:ident, $needs:expr, $service:literal, $client:ident, $method:ident, $rpc:literal, $req:expr) => {{
        let req = $req;
        $calls.push((
            concat!("/aria.allegro.scheduling.v1.", $service, "/", $rpc),
            $needs,
            Box::new(move |ch: Ch| {
                let req = req.clone();
                Box::pin(async move { $client::new(ch).$method(req).await.map(|_| ()) }) as Outcome
            }) as Call,
        ));
    }};
}

/// One call of every RPC of every service, for client `acme`, each valid
/// enough to succeed (or fail on the resource, not on the request) with
/// the right key.
fn every_rpc(config_id: &str, revocable_key: &str) -> Vec<(&'static str, Needs, Call)> {
    use Needs::*;
    let mut calls = Vec::new();
    let c = || CLIENT.to_string();
    let id = || config_id.to_string();
    let d = || DATE.to_string();
    const CS: &str = "JobScheduleConfigService";
    const ES: &str = "ExecutionService";
    rpc!(
        calls,
        Global,
        "JobCatalogueService",
        JobCatalogueServiceClient,
        list_job_types,
        "ListJobTypes",
        pb::ListJobTypesRequest {}
    );
    rpc!(
        calls,
        Write,
        "JobScheduleConfigService",
        JobScheduleConfigServiceClient,
        create_job_schedule_config,
        "CreateJobScheduleConfig",
        pb::CreateJobScheduleConfigRequest {
            client_id: c(),
            config: Some(scheduled("intruder", &["ITEMS_75"]))
        }
    );
    rpc!(
        calls,
        Read,
        "JobScheduleConfigService",
        JobScheduleConfigServiceClient,
        get_job_schedule_config,
        "GetJobScheduleConfig",
        pb::GetJobScheduleConfigRequest {
            client_id: c(),
            config_id: id()
        }
    );
    rpc!(
        calls,
        Read,
        "JobScheduleConfigService",
        JobScheduleConfigServiceClient,
        list_job_schedule_configs,
        "ListJobScheduleConfigs",
        pb::ListJobScheduleConfigsRequest {
            client_id: c(),
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Write,
        "JobScheduleConfigService",
        JobScheduleConfigServiceClient,
        update_job_schedule_config,
        "UpdateJobScheduleConfig",
        pb::UpdateJobScheduleConfigRequest {
            client_id: c(),
            config: Some(pb::JobScheduleConfig {
                config_id: id(),
                description: "changed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()]
            }),
        }
    );
    rpc!(
        calls,
        Write,
        "JobScheduleConfigService",
        JobScheduleConfigServiceClient,
        delete_job_schedule_config,
        "DeleteJobScheduleConfig",
        pb::DeleteJobScheduleConfigRequest {
            client_id: c(),
            config_id: id(),
            etag: String::new()
        }
    );
    rpc!(
        calls,
        Read,
        "JobScheduleConfigService",
        JobScheduleConfigServiceClient,
        list_upcoming_runs,
        "ListUpcomingRuns",
        pb::ListUpcomingRunsRequest {
            client_id: c(),
            config_id: id(),
            ..Default::default()
        }
    );
    let _ = CS;
    rpc!(
        calls,
        Write,
        "ExecutionService",
        ExecutionServiceClient,
        create_execution,
        "CreateExecution",
        pb::CreateExecutionRequest {
            client_id: c(),
            config_id: id(),
            business_date: "2026-11-25".into(),
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Write,
        "ExecutionService",
        ExecutionServiceClient,
        recreate_execution,
        "RecreateExecution",
        pb::RecreateExecutionRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Write,
        "ExecutionService",
        ExecutionServiceClient,
        process_execution,
        "ProcessExecution",
        pb::ProcessExecutionRequest {
            client_id: c(),
            config_id: id(),
            business_date: "2026-11-26".into(),
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Write,
        "ExecutionService",
        ExecutionServiceClient,
        reprocess_execution,
        "ReprocessExecution",
        pb::ReprocessExecutionRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Write,
        "ExecutionService",
        ExecutionServiceClient,
        reset_execution,
        "ResetExecution",
        pb::ResetExecutionRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Write,
        "ExecutionService",
        ExecutionServiceClient,
        trigger_job,
        "TriggerJob",
        pb::TriggerJobRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            position: 1,
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Write,
        "ExecutionService",
        ExecutionServiceClient,
        retry_job,
        "RetryJob",
        pb::RetryJobRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            position: 1,
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Read,
        "ExecutionService",
        ExecutionServiceClient,
        get_execution,
        "GetExecution",
        pb::GetExecutionRequest {
            client_id: c(),
            config_id: id(),
            business_date: d()
        }
    );
    rpc!(
        calls,
        Read,
        "ExecutionService",
        ExecutionServiceClient,
        list_executions,
        "ListExecutions",
        pb::ListExecutionsRequest {
            client_id: c(),
            config_id: id(),
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Read,
        "ExecutionService",
        ExecutionServiceClient,
        get_job_stats,
        "GetJobStats",
        pb::GetJobStatsRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            position: 1
        }
    );
    rpc!(
        calls,
        Read,
        "ExecutionService",
        ExecutionServiceClient,
        list_job_error_codes,
        "ListJobErrorCodes",
        pb::ListJobErrorCodesRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            position: 1
        }
    );
    rpc!(
        calls,
        Read,
        "ExecutionService",
        ExecutionServiceClient,
        list_errored_work_items,
        "ListErroredWorkItems",
        pb::ListErroredWorkItemsRequest {
            client_id: c(),
            config_id: id(),
            business_date: d(),
            position: 1,
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Read,
        "ExecutionService",
        ExecutionServiceClient,
        list_execution_actions,
        "ListExecutionActions",
        pb::ListExecutionActionsRequest {
            client_id: c(),
            config_id: id(),
            business_date: d()
        }
    );
    rpc!(
        calls,
        Read,
        "ExecutionService",
        ExecutionServiceClient,
        watch_executions,
        "WatchExecutions",
        pb::WatchExecutionsRequest {
            client_id: c(),
            ..Default::default()
        }
    );
    let _ = ES;
    rpc!(
        calls,
        Admin,
        "AccessService",
        AccessServiceClient,
        create_api_key,
        "CreateApiKey",
        pb::CreateApiKeyRequest {
            client_id: c(),
            name: "intruder".into(),
            role: pb::Role::Admin as i32,
            ..Default::default()
        }
    );
    rpc!(
        calls,
        Admin,
        "AccessService",
        AccessServiceClient,
        list_api_keys,
        "ListApiKeys",
        pb::ListApiKeysRequest {
            client_id: c(),
            include_revoked: true
        }
    );
    rpc!(
        calls,
        Admin,
        "AccessService",
        AccessServiceClient,
        revoke_api_key,
        "RevokeApiKey",
        pb::RevokeApiKeyRequest {
            client_id: c(),
            key_id: revocable_key.to_string()
        }
    );
    calls
}

/// Everything a call could change, as one comparable value (a key's last
/// use time aside: reading a key notes it).
async fn fingerprint(database_url: &str) -> Vec<String> {
    let (client, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for table in [
        "job_schedule_configs",
        "executions",
        "job_runs",
        "execution_actions",
        "execution_events",
        "client_event_sequences",
        "work_items",
        "batches",
        "work_item_errors",
        "job_run_error_counts",
    ] {
        let row = client
            .query_one(
                &format!(
                    "SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM {table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push(format!("{table}: {}", row.get::<_, String>(0)));
    }
    let row = client
        .query_one(
            "SELECT coalesce(string_agg((key_id, client_id, name, role, clients, secret_hash, \
             expire_time, revoke_time)::text, '|' ORDER BY key_id), '') FROM api_keys",
            &[],
        )
        .await
        .unwrap();
    out.push(format!("api_keys: {}", row.get::<_, String>(0)));
    out
}

fn channel(fx: &Fixture, headers: Headers) -> Ch {
    InterceptedService::new(fx.server.raw_channel.clone(), headers)
}

async fn key(fx: &Fixture, name: &str, role: Role, scope: ClientScope) -> String {
    issue_key(&fx.server.database_url, name, role, CLIENT, scope, None).await
}

fn one(client: &str) -> ClientScope {
    ClientScope::one(client)
}

/// Revokes `key_id` of `acme` with the test server's platform key.
async fn revoke(fx: &Fixture, key_id: &str) {
    fx.server
        .access()
        .revoke_api_key(pb::RevokeApiKeyRequest {
            client_id: CLIENT.into(),
            key_id: key_id.into(),
        })
        .await
        .unwrap();
}

fn key_id(key: &str) -> String {
    key.trim_start_matches("ask_")
        .split('_')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn every_rpc_refuses_bad_credentials_and_changes_nothing() {
    let fx = setup(&[("ITEMS_75", false)]).await;
    fx.process(DATE, vec![]).await;
    fx.wait_for(DATE, finished).await;

    let other_admin = issue_key(
        &fx.server.database_url,
        "other-admin",
        Role::Admin,
        "other",
        one("other"),
        None,
    )
    .await;
    let viewer = key(&fx, "acme-viewer", Role::Viewer, one(CLIENT)).await;
    let operator = key(&fx, "acme-operator", Role::Operator, one(CLIENT)).await;
    let expired = issue_key(
        &fx.server.database_url,
        "acme-expired",
        Role::Admin,
        CLIENT,
        one(CLIENT),
        Some(chrono::Utc::now() - chrono::TimeDelta::hours(1)),
    )
    .await;
    let revoked = key(&fx, "acme-revoked", Role::Admin, one(CLIENT)).await;
    revoke(&fx, &key_id(&revoked)).await;
    let target = key(&fx, "acme-target", Role::Viewer, one(CLIENT)).await;
    let unknown = format!("ask_{}_{}", "ab".repeat(16), "cd".repeat(32));

    let calls = every_rpc(&fx.config_id, &key_id(&target));
    // The matrix covers the whole role table, and the table every RPC.
    let mut listed: Vec<_> = calls.iter().map(|(p, _, _)| *p).collect();
    let mut table: Vec<_> = auth::ROLES.iter().map(|(p, _)| *p).collect();
    listed.sort();
    table.sort();
    assert_eq!(listed, table);

    let before = fingerprint(&fx.server.database_url).await;
    let cases: Vec<(&str, Headers, Expect)> = vec![
        ("no key", Headers::none(), &|_| Some(Code::Unauthenticated)),
        ("garbage", Headers::raw("Bearer garbage"), &|_| {
            Some(Code::Unauthenticated)
        }),
        (
            "not bearer",
            Headers::raw(&format!("Basic {operator}")),
            &|_| Some(Code::Unauthenticated),
        ),
        ("unknown key", Headers::key(&unknown), &|_| {
            Some(Code::Unauthenticated)
        }),
        (
            "wrong secret",
            // The last hex digit changed (never to itself).
            Headers::key(&format!(
                "{}{}",
                &operator[..operator.len() - 1],
                if operator.ends_with('0') { '1' } else { '0' }
            )),
            &|_| Some(Code::Unauthenticated),
        ),
        ("expired", Headers::key(&expired), &|_| {
            Some(Code::Unauthenticated)
        }),
        ("revoked", Headers::key(&revoked), &|_| {
            Some(Code::Unauthenticated)
        }),
        ("another client's key", Headers::key(&other_admin), &|n| {
            (n != Needs::Global).then_some(Code::PermissionDenied)
        }),
        ("viewer", Headers::key(&viewer), &|n| {
            matches!(n, Needs::Write | Needs::Admin).then_some(Code::PermissionDenied)
        }),
        ("operator", Headers::key(&operator), &|n| {
            (n == Needs::Admin).then_some(Code::PermissionDenied)
        }),
    ];
    for (case, headers, expected) in &cases {
        for (path, needs, call) in &calls {
            let result = call(channel(&fx, headers.clone())).await;
            match expected(*needs) {
                Some(code) => {
                    let status = result.expect_err(&format!("{case} calling {path} was let in"));
                    assert_eq!(status.code(), code, "{case} calling {path}: {status:?}");
                }
                None => {
                    if let Err(status) = result {
                        assert!(
                            !matches!(
                                status.code(),
                                Code::Unauthenticated | Code::PermissionDenied
                            ),
                            "{case} calling {path}: {status:?}"
                        );
                    }
                }
            }
        }
        if expected(Needs::Read).is_some() {
            assert_eq!(
                fingerprint(&fx.server.database_url).await,
                before,
                "{case} changed the database"
            );
        }
    }

    // The control: the client's own admin key gets past every check (so
    // the refusals above are about the key, not the requests).
    let admin = key(&fx, "acme-admin", Role::Admin, one(CLIENT)).await;
    for (path, _, call) in &calls {
        if let Err(status) = call(channel(&fx, Headers::key(&admin))).await {
            assert!(
                !matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ),
                "admin calling {path}: {status:?}"
            );
        }
    }
    assert_ne!(fingerprint(&fx.server.database_url).await, before);
    fx.server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_stay_open() {
    let server = TestServer::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.raw_channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a key");
    server.stop().await;
}

async fn list_configs(fx: &Fixture, key: &str, client: &str) -> Result<usize, Status> {
    JobScheduleConfigServiceClient::new(channel(fx, Headers::key(key)))
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: client.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().configs.len())
}

#[tokio::test]
async fn a_platform_key_for_two_clients_works_for_both_and_not_a_third() {
    let fx = setup(&[("ITEMS_75", false)]).await;
    let platform = key(
        &fx,
        "billing-service",
        Role::Operator,
        ClientScope::Clients(vec![CLIENT.into(), "beta".into()]),
    )
    .await;
    assert_eq!(list_configs(&fx, &platform, CLIENT).await.unwrap(), 1);
    assert_eq!(list_configs(&fx, &platform, "beta").await.unwrap(), 0);
    let create = |client: &str| pb::CreateJobScheduleConfigRequest {
        client_id: client.into(),
        config: Some(daily("eod", &["ITEMS_75"])),
    };
    let mut configs = JobScheduleConfigServiceClient::new(channel(&fx, Headers::key(&platform)));
    configs
        .create_job_schedule_config(create("beta"))
        .await
        .unwrap();
    let before = fingerprint(&fx.server.database_url).await;
    assert_eq!(
        list_configs(&fx, &platform, "gamma")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let denied = configs
        .create_job_schedule_config(create("gamma"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("client_id"), "{denied:?}");
    assert_eq!(fingerprint(&fx.server.database_url).await, before);
    assert_eq!(list_configs(&fx, &platform, "beta").await.unwrap(), 1);
    fx.server.stop().await;
}

#[tokio::test]
async fn the_action_history_names_the_key_and_a_forged_actor_changes_nothing() {
    let fx = setup(&[("ITEMS_75", true)]).await;
    let platform = key(
        &fx,
        "billing-service",
        Role::Operator,
        ClientScope::Clients(vec![CLIENT.into(), "beta".into()]),
    )
    .await;
    let operator = key(&fx, "jane-console", Role::Operator, one(CLIENT)).await;
    let mut as_platform = ExecutionServiceClient::new(channel(
        &fx,
        Headers::key(&platform)
            .with("x-actor", "scheduler")
            .with("x-on-behalf-of", "jane@acme"),
    ));
    as_platform
        .process_execution(pb::ProcessExecutionRequest {
            client_id: CLIENT.into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
            reason: "month end".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    ExecutionServiceClient::new(channel(
        &fx,
        Headers::key(&operator).with("x-actor", "billing-service"),
    ))
    .trigger_job(pb::TriggerJobRequest {
        client_id: CLIENT.into(),
        config_id: fx.config_id.clone(),
        business_date: DATE.into(),
        position: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let actions = fx
        .server
        .executions()
        .list_execution_actions(pb::ListExecutionActionsRequest {
            client_id: CLIENT.into(),
            config_id: fx.config_id.clone(),
            business_date: DATE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .actions;
    let seen: Vec<_> = actions
        .iter()
        .map(|a| (a.actor.as_str(), a.on_behalf_of.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("billing-service", "jane@acme"), ("jane-console", "")]
    );

    // As stored, too.
    let (client, conn) = tokio_postgres::connect(&fx.server.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT actor, on_behalf_of FROM execution_actions ORDER BY action_id",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        stored,
        [
            ("billing-service".to_string(), Some("jane@acme".to_string())),
            ("jane-console".to_string(), None)
        ]
    );

    // A bad on-behalf-of is refused before anything happens.
    let bad = ExecutionServiceClient::new(channel(
        &fx,
        Headers::key(&platform).with("x-on-behalf-of", " "),
    ))
    .reprocess_execution(pb::ReprocessExecutionRequest {
        override_exception_window: false,
        client_id: CLIENT.into(),
        config_id: fx.config_id.clone(),
        business_date: DATE.into(),
        reason: String::new(),
    })
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("x-on-behalf-of"));
    fx.server.stop().await;
}

#[tokio::test]
async fn keys_are_created_once_listed_without_secrets_and_revoked_within_a_second() {
    let fx = setup(&[("ITEMS_75", false)]).await;
    let admin = key(&fx, "acme-admin", Role::Admin, one(CLIENT)).await;
    let mut access = AccessServiceClient::new(channel(&fx, Headers::key(&admin)));
    let created = access
        .create_api_key(pb::CreateApiKeyRequest {
            client_id: CLIENT.into(),
            name: "dashboard".into(),
            role: pb::Role::Viewer as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let new_key = created.key.clone();
    let record = created.api_key.unwrap();
    assert!(new_key.starts_with("ask_") && new_key.contains(&record.key_id));
    assert_eq!(
        (record.name.as_str(), record.created_by.as_str()),
        ("dashboard", "acme-admin")
    );
    assert_eq!(record.clients, [CLIENT]);

    // It works as a viewer, and only as one.
    assert_eq!(list_configs(&fx, &new_key, CLIENT).await.unwrap(), 1);
    let write = AccessServiceClient::new(channel(&fx, Headers::key(&new_key)))
        .list_api_keys(pb::ListApiKeysRequest {
            client_id: CLIENT.into(),
            include_revoked: false,
        })
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);

    // Listed, never with the secret; the same name twice is refused.
    let listed = access
        .list_api_keys(pb::ListApiKeysRequest {
            client_id: CLIENT.into(),
            include_revoked: false,
        })
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert!(listed.iter().any(|k| k.key_id == record.key_id));
    let secret = new_key.rsplit('_').next().unwrap();
    assert!(!format!("{listed:?}").contains(secret));
    let twice = access
        .create_api_key(pb::CreateApiKeyRequest {
            client_id: CLIENT.into(),
            name: "dashboard".into(),
            role: pb::Role::Viewer as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists);

    // An admin of acme manages acme only.
    for denied in [
        access
            .list_api_keys(pb::ListApiKeysRequest {
                client_id: "beta".into(),
                include_revoked: false,
            })
            .await
            .unwrap_err(),
        access
            .create_api_key(pb::CreateApiKeyRequest {
                client_id: CLIENT.into(),
                name: "wider".into(),
                role: pb::Role::Viewer as i32,
                clients: vec![CLIENT.into(), "beta".into()],
                ..Default::default()
            })
            .await
            .unwrap_err(),
        access
            .create_api_key(pb::CreateApiKeyRequest {
                client_id: CLIENT.into(),
                name: "everyone".into(),
                role: pb::Role::Viewer as i32,
                all_clients: true,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    }
    // A platform key of every client manages any client's keys.
    fx.server
        .access()
        .create_api_key(pb::CreateApiKeyRequest {
            client_id: "beta".into(),
            name: "beta-admin".into(),
            role: pb::Role::Admin as i32,
            ..Default::default()
        })
        .await
        .unwrap();

    // Revoked: refused within a second (the cache's lifetime).
    let revoked = access
        .revoke_api_key(pb::RevokeApiKeyRequest {
            client_id: CLIENT.into(),
            key_id: record.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    tokio::time::sleep(auth::CACHE_TTL + Duration::from_millis(100)).await;
    assert_eq!(
        list_configs(&fx, &new_key, CLIENT)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let missing = access
        .revoke_api_key(pb::RevokeApiKeyRequest {
            client_id: CLIENT.into(),
            key_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    fx.server.stop().await;
}

#[tokio::test]
async fn a_key_past_its_limits_is_refused_with_resource_exhausted() {
    let url = fresh_database().await;
    let mut settings = test_settings(&url);
    settings.max_streams_per_key = 2;
    settings.max_requests_per_key = 1;
    let server = TestServer::start_with(settings, catalogue_jobs()).await;
    let viewer = issue_key(
        &url,
        "watcher",
        Role::Viewer,
        CLIENT,
        ClientScope::one(CLIENT),
        None,
    )
    .await;
    let ch = || InterceptedService::new(server.raw_channel.clone(), Headers::key(&viewer));
    let watch = || async {
        ExecutionServiceClient::new(ch())
            .watch_executions(pb::WatchExecutionsRequest {
                client_id: CLIENT.into(),
                ..Default::default()
            })
            .await
    };
    let first = watch().await.unwrap();
    let second = watch().await.unwrap();
    assert_eq!(watch().await.unwrap_err().code(), Code::ResourceExhausted);
    drop(first);
    // The slot comes back once the server sees the stream end.
    let mut reopened = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(s) = watch().await {
            reopened = Some(s);
            break;
        }
    }
    assert!(reopened.is_some(), "a closed stream's slot is released");
    drop(second);

    // One request at a time: concurrent calls past it are refused, and the
    // rest still answer.
    let calls = (0..40).map(|_| async {
        JobScheduleConfigServiceClient::new(ch())
            .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
                client_id: CLIENT.into(),
                ..Default::default()
            })
            .await
    });
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().any(|r| r.is_ok()));
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|s| s.code() == Code::ResourceExhausted));
    assert!(
        results.iter().any(|r| r.is_err()),
        "40 concurrent calls never overlapped"
    );
    server.stop().await;
}

#[tokio::test]
async fn create_admin_key_bootstraps_a_client_from_the_command_line() {
    let server = TestServer::start().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_allegro-scheduler"))
        .args([
            "create-admin-key",
            "--client",
            CLIENT,
            "--name",
            "acme-root",
        ])
        .env("DATABASE_URL", &server.database_url)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("ask_"), "{key:?}");
    let mut access = AccessServiceClient::new(InterceptedService::new(
        server.raw_channel.clone(),
        Headers::key(&key),
    ));
    let listed = access
        .list_api_keys(pb::ListApiKeysRequest {
            client_id: CLIENT.into(),
            include_revoked: false,
        })
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].role,
            listed[0].created_by.as_str()
        ),
        ("acme-root", pb::Role::Admin as i32, "cli")
    );
    let other = access
        .list_api_keys(pb::ListApiKeysRequest {
            client_id: "beta".into(),
            include_revoked: false,
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    server.stop().await;
}
