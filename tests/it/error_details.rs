//! Error details a generic client can decode: reflection serves
//! `google/rpc/error_details.proto` and `google/rpc/status.proto`, so
//! grpcurl prints a refusal's field violations instead of base64.

use prost::Message;

use crate::support::*;

/// The file names (and their dependencies) reflection v1alpha answers for
/// `symbol`.
async fn files_v1alpha(server: &TestServer, symbol: &str) -> Vec<prost_types::FileDescriptorProto> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(server.raw_channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .collect(),
        other => panic!("v1alpha: no file for {symbol}: {other:?}"),
    }
}

/// The same through reflection v1.
async fn files_v1(server: &TestServer, symbol: &str) -> Vec<prost_types::FileDescriptorProto> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(server.raw_channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .collect(),
        other => panic!("v1: no file for {symbol}: {other:?}"),
    }
}

fn defines(files: &[prost_types::FileDescriptorProto], file: &str, message: &str) -> bool {
    files
        .iter()
        .any(|f| f.name() == file && f.message_type.iter().any(|m| m.name() == message))
}

#[tokio::test]
async fn reflection_serves_the_google_rpc_error_details_and_status() {
    let server = TestServer::start().await;
    for (symbol, file, message) in [
        (
            "google.rpc.BadRequest",
            "google/rpc/error_details.proto",
            "BadRequest",
        ),
        (
            "google.rpc.ErrorInfo",
            "google/rpc/error_details.proto",
            "ErrorInfo",
        ),
        ("google.rpc.Status", "google/rpc/status.proto", "Status"),
    ] {
        let alpha = files_v1alpha(&server, symbol).await;
        assert!(
            defines(&alpha, file, message),
            "v1alpha serves {symbol}: {:?}",
            alpha.iter().map(|f| f.name()).collect::<Vec<_>>()
        );
        let v1 = files_v1(&server, symbol).await;
        assert!(defines(&v1, file, message), "v1 serves {symbol}");
    }
    server.stop().await;
}
