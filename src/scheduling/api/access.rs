//! `AccessService`: create, list and revoke a client's API keys. The
//! authentication layer lets only admin keys in; here a key manages only the
//! keys of a client it acts for, and only keys whose clients it holds.

use tonic::{Request, Response, Status};

use super::{authorized_client, caller, convert::timestamp};
use crate::proto::v1 as pb;
use crate::proto::v1::access_service_server::AccessService;
use crate::scheduling::domain::access::{ClientScope, Role};
use crate::scheduling::usecases::access::{ApiKey, KeyRequest};
use crate::scheduling::usecases::UseCases;
use crate::scheduling::Error;

/// Serves key management through the use cases.
pub struct AccessApi {
    usecases: UseCases,
}

impl AccessApi {
    /// A key management service on the use cases.
    pub fn new(usecases: UseCases) -> Self {
        Self { usecases }
    }
}

fn role_from_proto(value: i32) -> Result<Role, Error> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Viewer) => Ok(Role::Viewer),
        Ok(pb::Role::Operator) => Ok(Role::Operator),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        _ => Err(Error::invalid(
            "role",
            "required: ROLE_VIEWER, ROLE_OPERATOR or ROLE_ADMIN",
        )),
    }
}

fn role_to_proto(role: Option<Role>) -> pb::Role {
    match role {
        Some(Role::Viewer) => pb::Role::Viewer,
        Some(Role::Operator) => pb::Role::Operator,
        Some(Role::Admin) => pb::Role::Admin,
        None => pb::Role::Unspecified,
    }
}

/// The proto message of a stored key (never its secret).
pub fn api_key_to_proto(row: &ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        key_id: row.key_id.clone(),
        client_id: row.client_id.clone(),
        name: row.name.clone(),
        role: role_to_proto(row.role()) as i32,
        clients: row.clients.clone().unwrap_or_default(),
        all_clients: row.clients.is_none(),
        created_by: row.created_by.clone(),
        create_time: Some(timestamp(row.create_time)),
        expire_time: row.expire_time.map(timestamp),
        revoke_time: row.revoke_time.map(timestamp),
        last_use_time: row.last_use_time.map(timestamp),
    }
}

/// The clients of a new key, from the request.
fn requested_scope(client: &str, req: &pb::CreateApiKeyRequest) -> Result<ClientScope, Error> {
    if req.all_clients {
        if !req.clients.is_empty() {
            return Err(Error::invalid("clients", "must be empty with all_clients"));
        }
        return Ok(ClientScope::All);
    }
    if req.clients.is_empty() {
        return Ok(ClientScope::one(client));
    }
    let mut list = Vec::with_capacity(req.clients.len());
    for (i, value) in req.clients.iter().enumerate() {
        let c = super::client_id(value).map_err(|_| {
            Error::invalid(
                format!("clients[{i}]"),
                "must be a client id: 1 to 100 letters, digits, '-', '_', '.' or ':'",
            )
        })?;
        if !list.contains(&c) {
            list.push(c);
        }
    }
    if list.len() > 1000 {
        return Err(Error::invalid("clients", "at most 1000 clients"));
    }
    if !list.iter().any(|c| c == client) {
        return Err(Error::invalid("clients", "must include client_id"));
    }
    Ok(ClientScope::Clients(list))
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let caller = caller(&extensions)?;
        let expire_time = match req.expire_time {
            None => None,
            Some(ts) => Some(
                chrono::DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
                    .filter(|t| *t > chrono::Utc::now())
                    .ok_or_else(|| Error::invalid("expire_time", "must be in the future"))?,
            ),
        };
        let request = KeyRequest {
            scope: requested_scope(&client, &req)?,
            role: role_from_proto(req.role)?,
            client_id: client,
            name: req.name,
            expire_time,
            created_by: caller.name.clone(),
        };
        let issued = self.usecases.create_api_key(caller, request).await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(&issued.row)),
            key: issued.key,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let caller = caller(&extensions)?;
        let keys = self
            .usecases
            .list_api_keys(caller, &client, req.include_revoked)
            .await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.iter().map(api_key_to_proto).collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let caller = caller(&extensions)?;
        let key = self
            .usecases
            .revoke_api_key(caller, &client, &req.key_id)
            .await?;
        Ok(Response::new(api_key_to_proto(&key)))
    }
}
