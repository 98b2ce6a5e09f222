//! The client side of the authentication layer ([`super::auth`]), for Rust
//! callers of this service: tests, benchmarks, other services.

use tonic::Status;

/// For Rust callers of this service: adds `authorization: Bearer <key>` to
/// every call of a client (`InterceptedService::new(channel, BearerKey::new(key)?)`).
#[derive(Clone)]
pub struct BearerKey(tonic::metadata::AsciiMetadataValue);

impl BearerKey {
    /// The header for `key`; INVALID_ARGUMENT when it is not ASCII.
    pub fn new(key: &str) -> Result<Self, Status> {
        format!("Bearer {key}")
            .parse()
            .map(Self)
            .map_err(|_| Status::invalid_argument("authorization: a key is ASCII"))
    }
}

impl tonic::service::Interceptor for BearerKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert(http::header::AUTHORIZATION.as_str(), self.0.clone());
        Ok(request)
    }
}
