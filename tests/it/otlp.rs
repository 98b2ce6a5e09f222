//! Traces and logs seen from the outside: the service binary, run as a
//! child process (a process sets its tracing subscriber once), exports its
//! spans over OTLP to a collector stand-in when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, and its JSON log lines carry the span fields.

use std::time::Duration;

use allegro_scheduler::proto::v1 as pb;

use crate::executions::finished;

const DATE: &str = "2026-11-24";

/// An OTLP/gRPC trace collector stand-in: hands every export request to
/// the test.
struct Collector(tokio::sync::mpsc::UnboundedSender<proto::ExportTraceServiceRequest>);

mod proto {
    pub use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    pub use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    pub use opentelemetry_proto::tonic::common::v1::any_value::Value;
    pub use opentelemetry_proto::tonic::common::v1::KeyValue;
}

#[tonic::async_trait]
impl proto::TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<proto::ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<proto::ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(proto::ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The string value of attribute `key`, if any.
fn attribute<'a>(attributes: &'a [proto::KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            proto::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// The service binary with `OTEL_EXPORTER_OTLP_ENDPOINT` set exports the
/// span of each RPC (named for the method, with the client) to the
/// collector; the spans still buffered at SIGTERM are sent before it exits.
#[tokio::test]
async fn rpc_spans_reach_an_otlp_collector() {
    let (tx, mut exports) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(proto::TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let url = crate::support::fresh_database().await;
    let key = crate::support::platform_key(&url).await;
    let mut service = crate::service_process::ServiceProcess::start(
        &[
            "serve",
            "--database-url",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--standin-listen",
            "127.0.0.1:0",
            "--console",
            "false",
            "--scheduler",
            "false",
            "--workers",
            "1",
        ],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )],
    );
    let addr = service
        .logged_addr("serving gRPC", Duration::from_secs(60))
        .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut configs = pb::job_schedule_config_service_client::JobScheduleConfigServiceClient::new(
        crate::support::keyed(channel, &key),
    );
    configs
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // An execution (BILLING on an empty ledger: planned, done at once).
    let config_id = configs
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "acme".into(),
            config: Some(crate::support::daily("eod", &["BILLING"])),
        })
        .await
        .unwrap()
        .into_inner()
        .config_id;
    let mut executions =
        pb::execution_service_client::ExecutionServiceClient::new(crate::support::keyed(
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
            &key,
        ));
    let get = pb::GetExecutionRequest {
        client_id: "acme".into(),
        config_id: config_id.clone(),
        business_date: DATE.into(),
    };
    executions
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "acme".into(),
            config_id,
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let execution = loop {
        let e = executions
            .get_execution(get.clone())
            .await
            .unwrap()
            .into_inner();
        if finished(&e) {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never finished: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let log = service.log.clone();
    // Stopped at once: the span is still in the exporter's batch (it sends
    // every 5 s) and only the flush at shutdown delivers it.
    service.stop().await;

    let name = "aria.allegro.scheduling.v1.JobScheduleConfigService/ListJobScheduleConfigs";
    let mut received = Vec::new();
    while let Ok(request) = exports.try_recv() {
        for resource in request.resource_spans {
            let service_name = resource
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .map(str::to_string);
            for scope in resource.scope_spans {
                for span in scope.spans {
                    received.push((service_name.clone(), span));
                }
            }
        }
    }
    let (service_name, span) = received
        .iter()
        .find(|(_, span)| span.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no span {name:?} among {:?}",
                received.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(service_name.as_deref(), Some("allegro-scheduler"));
    assert_eq!(attribute(&span.attributes, "client"), Some("acme"));
    assert_eq!(
        attribute(&span.attributes, "path"),
        Some(format!("/{name}").as_str())
    );
    assert_eq!(
        span.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    // The plan's span names the execution.
    assert!(
        received.iter().any(|(_, span)| span.name == "plan"
            && attribute(&span.attributes, "execution") == Some(execution.execution_id.as_str())),
        "no plan span of the execution"
    );

    // The JSON log lines: a line inside an RPC names its method and client;
    // every line about the execution names it.
    let lines: Vec<serde_json::Value> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let field = |line: &serde_json::Value, name: &str| -> Option<String> {
        line["fields"][name]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                line["spans"]
                    .as_array()?
                    .iter()
                    .rev()
                    .find_map(|span| span[name].as_str().map(str::to_string))
            })
    };
    let created = lines
        .iter()
        .find(|l| l["fields"]["message"] == "created job schedule config")
        .expect("the create is logged");
    assert_eq!(field(created, "client").as_deref(), Some("acme"));
    assert_eq!(
        field(created, "path").as_deref(),
        Some("/aria.allegro.scheduling.v1.JobScheduleConfigService/CreateJobScheduleConfig")
    );
    let about_execution: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            ["planned", "execution advanced"]
                .contains(&l["fields"]["message"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(!about_execution.is_empty(), "the plan is logged");
    for line in about_execution {
        assert_eq!(
            field(line, "execution").as_deref(),
            Some(execution.execution_id.as_str()),
            "{line}"
        );
    }
    crate::support::drop_database(&url).await;
}
