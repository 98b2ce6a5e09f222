//! The protobuf codec of the scheduling services. It encodes like
//! `tonic_prost`'s codec, but bytes that do not decode as the request message
//! (wrong wire type, invalid UTF-8 in a string, a truncated message) answer
//! INVALID_ARGUMENT with a `BadRequest` violation naming the field prost
//! stopped at, where `tonic_prost` answers INTERNAL. `build.rs` names this
//! codec for the generated services; [`decode_failures_layer`] does the same
//! for the services built with tonic's codec (health, reflection).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::scheduling::domain::limits::clip;

/// A prost codec whose decode failures are the caller's error.
#[derive(Debug)]
pub struct StrictCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(PhantomData)
    }
}

/// Decodes `U`, answering INVALID_ARGUMENT for bytes that are not one.
#[derive(Debug)]
pub struct StrictDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| decode_failure(&e.to_string()))
    }
}

/// The status of a prost decode error, from its text
/// (`failed to decode Protobuf message: Inner.field: Outer.field: why`):
/// the violated field is the path of the fields prost was in, outermost
/// first, or `request` when it failed outside any field.
pub fn decode_failure(error: &str) -> Status {
    let rest = error
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(error);
    let mut fields = Vec::new();
    let mut why = rest;
    for segment in rest.split(": ") {
        match segment.split_once('.') {
            Some((message, field)) if is_ident(message) && is_ident(field) => {
                fields.push(field);
                why = why
                    .strip_prefix(segment)
                    .and_then(|w| w.strip_prefix(": "))
                    .unwrap_or(why);
            }
            _ => break,
        }
    }
    fields.reverse();
    let field = if fields.is_empty() {
        "request".to_string()
    } else {
        fields.join(".")
    };
    let description = format!(
        "the request bytes are not a valid protobuf message: {}",
        clip(why, 120)
    );
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(clip(&field, 80), description.clone());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid argument: {}: {description}", clip(&field, 80)),
        details,
    )
}

/// The response rewrite of [`decode_failures_layer`].
pub type Rewrite = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;

/// Beginnings of the messages of the INTERNAL statuses tonic answers when
/// the request body is not one well-formed gRPC message: a message cut
/// short, no message at all, a compressed-flag without `grpc-encoding` or
/// an unknown flag. All are the caller's error.
const FRAMING_FAILURES: &[&str] = &[
    "Unexpected EOF decoding stream.",
    "Missing request message.",
    "protocol error: received message with compressed-flag but no grpc-encoding",
    "protocol error: received message with invalid compression flag",
];

/// A layer that turns the INTERNAL status tonic answers when a request does
/// not decode into INVALID_ARGUMENT: `failed to decode Protobuf message`
/// (services whose codec is tonic's own: health, reflection) becomes the
/// status of [`decode_failure`]; a malformed gRPC frame (a message cut
/// short, none at all, a bad compressed-flag) one naming `request`. The
/// gRPC protocol asks for INTERNAL on a compressed-flag without encoding;
/// this service answers INVALID_ARGUMENT there too, as INTERNAL is kept for
/// its own bugs.
pub fn decode_failures_layer() -> tower::util::MapResponseLayer<Rewrite> {
    tower::util::MapResponseLayer::new(rewrite_decode_failure as Rewrite)
}

fn rewrite_decode_failure(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"13") {
        return response;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return response;
    };
    let message = status.message();
    let replacement = if message.starts_with("failed to decode Protobuf message") {
        decode_failure(message)
    } else if FRAMING_FAILURES.iter().any(|f| message.starts_with(f)) {
        framing_failure(message)
    } else {
        return response;
    };
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if replacement.add_header(headers).is_err() {
        // The replacement could not be written: keep a status at all.
        let _ = Status::invalid_argument("the request is not a valid protobuf message")
            .add_header(headers);
    }
    response
}

/// The status of a request body that is not one well-formed gRPC message.
fn framing_failure(message: &str) -> Status {
    let description = format!(
        "the request body is not one well-formed gRPC message: {}",
        clip(message, 120)
    );
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation("request", description.clone());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid argument: request: {description}"),
        details,
    )
}

fn is_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1 as pb;

    fn violation(status: &Status) -> String {
        assert_eq!(status.code(), Code::InvalidArgument);
        status.get_details_bad_request().unwrap().field_violations[0]
            .field
            .clone()
    }

    fn decode_error<M: Message + Default>(bytes: &[u8]) -> Status {
        let Err(error) = M::decode(bytes) else {
            panic!("{bytes:?} decoded");
        };
        decode_failure(&error.to_string())
    }

    #[test]
    fn invalid_utf8_names_the_nested_field() {
        // config (field 2) { name (field 3): 0xff }
        let bytes = [0x12, 0x03, 0x1a, 0x01, 0xff];
        let status = decode_error::<pb::CreateJobScheduleConfigRequest>(&bytes);
        assert_eq!(violation(&status), "config.name");
    }

    #[test]
    fn wrong_wire_type_and_truncation_are_invalid_arguments() {
        // client_id (field 1) as a varint.
        let status = decode_error::<pb::GetExecutionRequest>(&[0x08, 0x01]);
        assert_eq!(violation(&status), "client_id");
        // client_id claiming 100 bytes, one given.
        let status = decode_error::<pb::GetExecutionRequest>(&[0x0a, 0x64, 0x41]);
        assert_eq!(violation(&status), "client_id");
        // A lone tag byte.
        let status = decode_error::<pb::GetExecutionRequest>(&[0x80]);
        assert_eq!(violation(&status), "request");
        assert!(status.message().len() < 300);
    }

    #[test]
    fn tonic_decode_failures_are_rewritten_and_others_kept() {
        let rewritten = |status: Status| {
            let response = rewrite_decode_failure(status.into_http());
            Status::from_header_map(response.headers()).unwrap()
        };
        let decode = Status::internal(
            "failed to decode Protobuf message: HealthCheckRequest.service: invalid string value: \
             data is not UTF-8 encoded",
        );
        let status = rewritten(decode);
        assert_eq!(violation(&status), "service");
        for framing in [
            "Unexpected EOF decoding stream.",
            "Missing request message.",
            "protocol error: received message with compressed-flag but no grpc-encoding was \
             specified",
        ] {
            assert_eq!(violation(&rewritten(Status::internal(framing))), "request");
        }
        let bug = rewritten(Status::internal("internal error"));
        assert_eq!(bug.code(), Code::Internal);
        let fine = rewritten(Status::not_found("no such thing"));
        assert_eq!(fine.code(), Code::NotFound);
    }
}
