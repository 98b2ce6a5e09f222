//! Authentication and authorisation in one place: a tower layer in front of
//! every service. It reads `authorization: Bearer <API key>`, checks the key
//! (UNAUTHENTICATED when missing, malformed, unknown, expired or revoked),
//! checks the RPC's minimum role from [`ROLES`] (PERMISSION_DENIED), applies
//! the per-key limits (RESOURCE_EXHAUSTED) and hands the handlers the
//! [`Caller`] in the request extensions. Health and reflection stay open:
//! they carry no client data.
//!
//! The handlers check the request's `client_id` against the caller's
//! clients ([`super::authorized_client`]) before reading anything.
//!
//! Keys are cached for [`CACHE_TTL`] (one second): a revocation or expiry
//! takes effect in every process within a second, and a busy key costs one
//! primary-key lookup per second per process.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::Utc;
use http::{Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::Status;

use crate::scheduling::domain::access::{self, Caller, Role};
use crate::scheduling::usecases::access::{
    authenticate, ApiKey as ApiKeyRow, KeyDirectory, KeyRefused,
};

/// How long a looked-up key is trusted before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// Metadata naming whom a platform key acts for.
pub const ON_BEHALF_OF_METADATA_KEY: &str = "x-on-behalf-of";

/// Path of the status stream, limited separately from other calls.
const WATCH_PATH: &str = "/aria.allegro.scheduling.v1.ExecutionService/WatchExecutions";

/// The one table of RPCs and the minimum role each needs. An RPC missing
/// here is refused (a unit test checks every RPC of the protos is listed).
pub const ROLES: &[(&str, Role)] = &[
    (
        "/aria.allegro.scheduling.v1.JobCatalogueService/ListJobTypes",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.JobScheduleConfigService/CreateJobScheduleConfig",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.JobScheduleConfigService/GetJobScheduleConfig",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.JobScheduleConfigService/ListJobScheduleConfigs",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.JobScheduleConfigService/UpdateJobScheduleConfig",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.JobScheduleConfigService/DeleteJobScheduleConfig",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.JobScheduleConfigService/ListUpcomingRuns",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/CreateExecution",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/RecreateExecution",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/ProcessExecution",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/ReprocessExecution",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/ResetExecution",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/TriggerJob",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/RetryJob",
        Role::Operator,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/GetExecution",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/ListExecutions",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/GetJobStats",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/ListJobErrorCodes",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/ListErroredWorkItems",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/ListExecutionActions",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.ExecutionService/WatchExecutions",
        Role::Viewer,
    ),
    (
        "/aria.allegro.scheduling.v1.AccessService/CreateApiKey",
        Role::Admin,
    ),
    (
        "/aria.allegro.scheduling.v1.AccessService/ListApiKeys",
        Role::Admin,
    ),
    (
        "/aria.allegro.scheduling.v1.AccessService/RevokeApiKey",
        Role::Admin,
    ),
];

/// Services anyone may call: they carry no client data.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// The minimum role of an RPC path, if it is listed.
pub fn required_role(path: &str) -> Option<Role> {
    ROLES.iter().find(|(p, _)| *p == path).map(|(_, r)| *r)
}

/// Per-key abuse limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls of one key in progress at once (status streams excluded).
    pub requests_per_key: usize,
    /// Status streams of one key open at once.
    pub streams_per_key: usize,
}

struct CachedKey {
    row: Option<Arc<ApiKeyRow>>,
    fetched: Instant,
}

struct Shared {
    keys: KeyDirectory,
    limits: Limits,
    cache: Mutex<HashMap<String, CachedKey>>,
    requests: Mutex<HashMap<String, Arc<Semaphore>>>,
    streams: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The layer to put in front of the services (see the module doc).
#[derive(Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

impl AuthLayer {
    /// A layer reading keys from `keys`, with these limits.
    pub fn new(keys: KeyDirectory, limits: Limits) -> Self {
        Self {
            shared: Arc::new(Shared {
                keys,
                limits,
                cache: Mutex::new(HashMap::new()),
                requests: Mutex::new(HashMap::new()),
                streams: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for Authenticated<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_string();
        if OPEN_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(inner.call(request));
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let admitted = shared.admit(&path, request.headers()).await;
            let (caller, permit) = match admitted {
                Ok(admitted) => admitted,
                Err(status) => return Ok(status.into_http()),
            };
            request.extensions_mut().insert(caller);
            let response = inner.call(request).await?;
            // The permit lives as long as the answer: a status stream holds
            // it until the stream ends.
            Ok(response.map(|body| {
                Body::new(Permitted {
                    body,
                    _permit: permit,
                })
            }))
        })
    }
}

impl Shared {
    /// Everything checked before a handler runs.
    async fn admit(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<(Caller, OwnedSemaphorePermit), Status> {
        let presented = presented_key(headers)?;
        let row = self.lookup(&presented.key_id).await?;
        let mut caller = authenticate(&presented, row.as_deref(), Utc::now()).map_err(
            |refused| match refused {
                KeyRefused::UnknownRole => Status::internal("internal error"),
                refused => Status::unauthenticated(format!("authorization: {refused}")),
            },
        )?;
        caller.on_behalf_of = on_behalf_of(headers)?;
        let needed = required_role(path).ok_or_else(|| {
            Status::unimplemented(format!("{path} is not a method of this server"))
        })?;
        caller
            .has_role(needed)
            .map_err(|denied| Status::permission_denied(denied.to_string()))?;
        let permit = self.permit(&caller.key_id, path == WATCH_PATH)?;
        Ok((caller, permit))
    }

    /// The key record, from the cache when fresh.
    async fn lookup(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRow>>, Status> {
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key_id)
        {
            if cached.fetched.elapsed() < CACHE_TTL {
                return Ok(cached.row.clone());
            }
        }
        let unavailable = |e: crate::db::DbError| {
            tracing::warn!(error = %e, "API key lookup failed");
            Status::unavailable("database unavailable; retry later")
        };
        let row = self
            .keys
            .find(key_id)
            .await
            .map_err(unavailable)?
            .map(Arc::new);
        if let Some(row) = &row {
            let now = Utc::now();
            let stale = row
                .last_use_time
                .is_none_or(|t| now - t > chrono::TimeDelta::seconds(60));
            if stale && row.is_live(now) {
                // Off the request's path: the answer does not wait on a write.
                let (keys, key_id) = (self.keys.clone(), key_id.to_string());
                tokio::spawn(async move {
                    let touched = keys.touch(&key_id, now).await;
                    if let Err(e) = touched {
                        tracing::warn!(error = %e, "noting an API key's last use failed");
                    }
                });
            }
        }
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: garbage key ids must not grow it without end.
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(
            key_id.to_string(),
            CachedKey {
                row: row.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(row)
    }

    /// A slot for one call of `key_id`, or RESOURCE_EXHAUSTED.
    fn permit(&self, key_id: &str, stream: bool) -> Result<OwnedSemaphorePermit, Status> {
        let (map, limit, what) = if stream {
            (
                &self.streams,
                self.limits.streams_per_key,
                "open status streams",
            )
        } else {
            (
                &self.requests,
                self.limits.requests_per_key,
                "concurrent requests",
            )
        };
        let semaphore = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1))))
            .clone();
        semaphore.try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this API key already has {} {what}; wait for one to finish",
                limit.max(1)
            ))
        })
    }
}

/// The key of `authorization: Bearer <key>`.
fn presented_key(headers: &http::HeaderMap) -> Result<access::PresentedKey, Status> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Status::unauthenticated("authorization: missing; send `authorization: Bearer <API key>`")
    })?;
    let value = value
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization: not a Bearer API key"))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| Status::unauthenticated("authorization: not a Bearer API key"))?;
    access::parse_key(token).map_err(|e| Status::unauthenticated(format!("authorization: {e}")))
}

/// The `x-on-behalf-of` value, checked.
fn on_behalf_of(headers: &http::HeaderMap) -> Result<Option<String>, Status> {
    let Some(value) = headers.get(ON_BEHALF_OF_METADATA_KEY) else {
        return Ok(None);
    };
    let invalid = |description: String| {
        Status::from(crate::scheduling::domain::Error::invalid(
            ON_BEHALF_OF_METADATA_KEY,
            description,
        ))
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("not printable text".to_string()))?;
    access::check_on_behalf_of(text)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// A response body that holds the call's limit slot until it is dropped.
struct Permitted {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Permitted {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn every_rpc_has_a_role_and_every_role_an_rpc() {
        let fds = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut paths = Vec::new();
        for file in fds
            .file
            .iter()
            .filter(|f| f.package().starts_with("aria.allegro."))
        {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        for path in &paths {
            assert!(required_role(path).is_some(), "{path} has no role in ROLES");
        }
        for (path, _) in ROLES {
            assert!(paths.iter().any(|p| p == path), "{path} is not an RPC");
        }
    }

    #[test]
    fn bearer_keys_are_parsed() {
        let key = access::new_key(&[3u8; 48]);
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            presented_key(&headers).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        headers.insert(
            "authorization",
            format!("Bearer {}", key.full).parse().unwrap(),
        );
        assert_eq!(presented_key(&headers).unwrap().key_id, key.key_id);
        headers.insert(
            "authorization",
            format!("Basic {}", key.full).parse().unwrap(),
        );
        assert_eq!(
            presented_key(&headers).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        headers.insert("authorization", "Bearer ask_nope".parse().unwrap());
        assert_eq!(
            presented_key(&headers).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
