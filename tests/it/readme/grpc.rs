//! What grpcurl does for a README command, over a real socket: methods and
//! message types resolved through the server's own reflection service,
//! requests and answers in the proto3 JSON mapping (`prost-reflect`), sent
//! with tonic's generic client.

use std::collections::{HashMap, HashSet};

use allegro_scheduler::proto::v1 as pb;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// One reflection request and its answer.
async fn reflect(channel: &Channel, request: MessageRequest) -> Result<MessageResponse, String> {
    let mut client = ServerReflectionClient::new(channel.clone());
    let mut answers = client
        .server_reflection_info(tokio_stream::once(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        }))
        .await
        .map_err(|s| format!("reflection: {s:?}"))?
        .into_inner();
    let answer = answers
        .message()
        .await
        .map_err(|s| format!("reflection: {s:?}"))?
        .ok_or("reflection answered nothing")?;
    match answer.message_response {
        Some(MessageResponse::ErrorResponse(e)) => Err(format!(
            "reflection refused: {} ({})",
            e.error_message, e.error_code
        )),
        Some(other) => Ok(other),
        None => Err("reflection answered nothing".into()),
    }
}

fn files_of(answer: MessageResponse) -> Result<Vec<prost_types::FileDescriptorProto>, String> {
    match answer {
        MessageResponse::FileDescriptorResponse(files) => files
            .file_descriptor_proto
            .iter()
            .map(|bytes| {
                prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .map_err(|e| format!("reflection sent an undecodable file: {e}"))
            })
            .collect(),
        _ => Err("reflection answered with something other than files".into()),
    }
}

/// The services the server lists.
pub async fn list_services(channel: &Channel) -> Result<Vec<String>, String> {
    match reflect(channel, MessageRequest::ListServices(String::new())).await? {
        MessageResponse::ListServicesResponse(list) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        _ => Err("reflection answered a list with something else".into()),
    }
}

/// The descriptors of the file defining `symbol` and of every file it
/// imports, fetched one by one as grpcurl does.
pub async fn pool_for(channel: &Channel, symbol: &str) -> Result<DescriptorPool, String> {
    let mut files: HashMap<String, prost_types::FileDescriptorProto> = HashMap::new();
    let mut wanted = files_of(
        reflect(
            channel,
            MessageRequest::FileContainingSymbol(symbol.to_string()),
        )
        .await?,
    )?;
    while let Some(file) = wanted.pop() {
        if files.contains_key(file.name()) {
            continue;
        }
        for dependency in &file.dependency {
            if !files.contains_key(dependency) && !wanted.iter().any(|f| f.name() == dependency) {
                wanted.extend(files_of(
                    reflect(channel, MessageRequest::FileByFilename(dependency.clone())).await?,
                )?);
            }
        }
        files.insert(file.name().to_string(), file);
    }
    // Dependencies first.
    let mut ordered = Vec::new();
    let mut placed = HashSet::new();
    fn place(
        name: &str,
        files: &HashMap<String, prost_types::FileDescriptorProto>,
        placed: &mut HashSet<String>,
        ordered: &mut Vec<prost_types::FileDescriptorProto>,
    ) {
        if !placed.insert(name.to_string()) {
            return;
        }
        if let Some(file) = files.get(name) {
            for dependency in &file.dependency {
                place(dependency, files, placed, ordered);
            }
            ordered.push(file.clone());
        }
    }
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    for name in names {
        place(name, &files, &mut placed, &mut ordered);
    }
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(ordered)
        .map_err(|e| format!("the reflected descriptors do not build: {e}"))?;
    Ok(pool)
}

/// Finds `package.Service/Method` (or `package.Service.Method`) through
/// reflection.
pub async fn method(channel: &Channel, name: &str) -> Result<MethodDescriptor, String> {
    let (service, method) = name
        .rsplit_once('/')
        .or_else(|| name.rsplit_once('.'))
        .ok_or_else(|| format!("{name:?} names no method"))?;
    let pool = pool_for(channel, service).await?;
    pool.get_service_by_name(service)
        .ok_or_else(|| format!("no service {service}"))?
        .methods()
        .find(|m| m.name() == method)
        .ok_or_else(|| format!("{service} has no method {method}"))
}

/// Rewrites FieldMask values written as `{"paths":[...]}` (the form grpcurl
/// accepts) to the proto3 JSON string form `prost-reflect` reads.
fn field_masks(descriptor: &MessageDescriptor, value: &mut serde_json::Value) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    for (key, value) in object.iter_mut() {
        let field = descriptor
            .get_field_by_json_name(key)
            .or_else(|| descriptor.get_field_by_name(key));
        let Some(prost_reflect::Kind::Message(inner)) = field.map(|f| f.kind()) else {
            continue;
        };
        if inner.full_name() == "google.protobuf.FieldMask" {
            if let Some(paths) = value.get("paths").and_then(|p| p.as_array()) {
                let joined: Vec<&str> = paths.iter().filter_map(|p| p.as_str()).collect();
                *value = serde_json::Value::String(joined.join(","));
            }
        } else if let Some(items) = value.as_array_mut() {
            items.iter_mut().for_each(|item| field_masks(&inner, item));
        } else {
            field_masks(&inner, value);
        }
    }
}

/// `json` as a request of `method`; unknown fields are refused.
pub fn request(method: &MethodDescriptor, json: &str) -> Result<DynamicMessage, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("-d is not JSON: {e}: {json}"))?;
    field_masks(&method.input(), &mut value);
    DynamicMessage::deserialize(method.input(), value)
        .map_err(|e| format!("-d does not fit {}: {e}", method.input().full_name()))
}

/// An answer as grpcurl prints it: JSON names, fields at their default
/// left out unless `emit_defaults`.
pub fn answer_json(message: &DynamicMessage, emit_defaults: bool) -> serde_json::Value {
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(!emit_defaults);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or_else(|e| serde_json::Value::String(format!("unprintable answer: {e}")))
}

/// Encodes [`DynamicMessage`] requests and decodes answers of one type.
#[derive(Clone)]
pub struct DynamicCodec(pub MessageDescriptor);

/// The encoder of [`DynamicCodec`].
pub struct DynamicEncoder;

/// The decoder of [`DynamicCodec`].
pub struct DynamicDecoder(MessageDescriptor);

impl tonic::codec::Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: DynamicMessage,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<DynamicMessage>, tonic::Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable answer: {e}")))
    }
}

impl tonic::codec::Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;
    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }
    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder(self.0.clone())
    }
}

/// The answers of one call: a unary call's one message, or the first
/// messages of a stream (a status stream never ends by itself: it is read
/// for `stream_wait` after its last message, then closed, as a person at
/// grpcurl stops it).
pub async fn call(
    channel: &Channel,
    method: &MethodDescriptor,
    message: DynamicMessage,
    headers: &[(String, String)],
    stream_wait: std::time::Duration,
) -> Result<Vec<DynamicMessage>, tonic::Status> {
    let mut request = tonic::Request::new(message);
    for (name, value) in headers {
        let name: tonic::metadata::MetadataKey<tonic::metadata::Ascii> = name
            .parse()
            .map_err(|_| tonic::Status::invalid_argument(format!("bad header name {name}")))?;
        let value = value
            .parse()
            .map_err(|_| tonic::Status::invalid_argument(format!("bad header value {value}")))?;
        request.metadata_mut().insert(name, value);
    }
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = http::uri::PathAndQuery::try_from(path)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = DynamicCodec(method.output());
    if method.is_server_streaming() {
        let mut stream = grpc
            .server_streaming(request, path, codec)
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Ok(next) = tokio::time::timeout(stream_wait, stream.message()).await {
            match next? {
                Some(message) => out.push(message),
                None => break,
            }
        }
        Ok(out)
    } else {
        Ok(vec![grpc.unary(request, path, codec).await?.into_inner()])
    }
}

/// Waits (up to two minutes) until the execution an action named no
/// longer runs.
pub async fn wait_until_settled(
    channel: &Channel,
    headers: &[(String, String)],
    request: &serde_json::Value,
) -> Result<(), String> {
    let field = |name: &str| request[name].as_str().unwrap_or_default().to_string();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut get = tonic::Request::new(pb::GetExecutionRequest {
            client_id: field("client_id"),
            config_id: field("config_id"),
            business_date: field("business_date"),
        });
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                name.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
                value.parse(),
            ) {
                get.metadata_mut().insert(name, value);
            }
        }
        let execution = pb::execution_service_client::ExecutionServiceClient::new(channel.clone())
            .get_execution(get)
            .await
            .map_err(|s| format!("GetExecution after the action: {s:?}"))?
            .into_inner();
        let running = [pb::ExecutionPhase::Running, pb::ExecutionPhase::Cancelling]
            .iter()
            .any(|p| execution.phase == *p as i32);
        if !running {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the execution still runs two minutes after the action".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
