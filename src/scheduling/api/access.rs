//! `AccessService`: create, list and revoke a client's API keys. The
//! authentication layer lets only admin keys in; here a key manages only the
//! keys of a client it acts for, and only keys whose clients it holds.

use tonic::{Request, Response, Status};

use super::{authorized_client, caller, convert::timestamp};
use crate::db::Db;
use crate::proto::v1 as pb;
use crate::proto::v1::access_service_server::AccessService;
use crate::scheduling::access::{issue_key, KeyRequest};
use crate::scheduling::domain::access::{Caller, ClientScope, Role};
use crate::scheduling::domain::Error;
use crate::scheduling::store::api_keys::{self, ApiKeyRow};

/// Serves key management from the database.
pub struct AccessApi {
    db: Db,
}

impl AccessApi {
    /// A key management service on `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
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
pub fn api_key_to_proto(row: &ApiKeyRow) -> pb::ApiKey {
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

/// PERMISSION_DENIED unless the caller holds every client of `scope`.
fn may_manage(caller: &Caller, scope: &ClientScope) -> Result<(), Error> {
    if caller.scope.covers(scope) {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        reason: "SCOPE_NOT_HELD",
        message: format!(
            "clients: this key acts for {}, not for every client of {scope}",
            caller.scope
        ),
    })
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
        let scope = requested_scope(&client, &req)?;
        may_manage(caller, &scope)?;
        let role = role_from_proto(req.role)?;
        let expire_time = match req.expire_time {
            None => None,
            Some(ts) => Some(
                chrono::DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
                    .filter(|t| *t > chrono::Utc::now())
                    .ok_or_else(|| Error::invalid("expire_time", "must be in the future"))?,
            ),
        };
        let mut conn = self.db.conn().await.map_err(Error::from)?;
        let issued = issue_key(
            &mut conn,
            &KeyRequest {
                client_id: client.clone(),
                name: req.name.clone(),
                role,
                scope,
                expire_time,
                created_by: caller.name.clone(),
            },
        )
        .await?;
        tracing::info!(client = %client, key_id = %issued.row.key_id, name = %issued.row.name, role = %role, by = %caller.name, "created API key");
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
        let mut conn = self.db.conn().await.map_err(Error::from)?;
        let rows = api_keys::list_by_client(&mut conn, &client, req.include_revoked)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: rows
                .iter()
                .filter(|row| caller.scope.covers(&row.scope()))
                .map(api_key_to_proto)
                .collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let (_, extensions, req) = request.into_parts();
        let client = authorized_client(&extensions, &req.client_id)?;
        let caller = caller(&extensions)?;
        if req.key_id.is_empty() {
            return Err(Error::invalid("key_id", "required").into());
        }
        let not_found = || Error::NotFound {
            resource: "API key",
            id: req.key_id.clone(),
        };
        let mut conn = self.db.conn().await.map_err(Error::from)?;
        let existing = api_keys::find(&mut conn, &req.key_id)
            .await
            .map_err(Error::from)?
            .filter(|row| row.client_id == client)
            .ok_or_else(not_found)?;
        may_manage(caller, &existing.scope())?;
        let row = api_keys::revoke(&mut conn, &client, &req.key_id, chrono::Utc::now())
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        tracing::info!(client = %client, key_id = %row.key_id, name = %row.name, by = %caller.name, "revoked API key");
        Ok(Response::new(api_key_to_proto(&row)))
    }
}
