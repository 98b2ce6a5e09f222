//! Issuing API keys: the one path by which a key comes to exist, shared by
//! `AccessService.CreateApiKey`, the `create-admin-key` command (a fresh
//! install's first key) and the embedded demo's operator key.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use super::UseCases;
use crate::db::{Db, DbError};
use crate::scheduling::domain;
use crate::scheduling::domain::access::{self, Caller, ClientScope, Role};
use crate::scheduling::store::api_keys::{self, NewApiKey};
use crate::scheduling::Error;

/// A stored API key: who it is, its role and clients, its life; never the
/// secret (only its hash is stored).
pub use crate::scheduling::store::api_keys::ApiKeyRow as ApiKey;

/// What to issue.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// The managing client.
    pub client_id: String,
    /// The key's name (the actor of the action history).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The clients it acts for (must contain `client_id` unless all).
    pub scope: ClientScope,
    /// When it stops working, if ever.
    pub expire_time: Option<DateTime<Utc>>,
    /// Who issues it.
    pub created_by: String,
}

/// A key just issued: its record and the key text, which exists only here.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The stored record.
    pub row: ApiKey,
    /// `ask_<key id>_<secret>`, to hand over once.
    pub key: String,
}

/// Generates a key and stores its hash. ALREADY_EXISTS when the client has
/// a live key of that name.
pub async fn issue_key(
    conn: &mut AsyncPgConnection,
    request: &KeyRequest,
) -> Result<IssuedKey, Error> {
    access::check_name(&request.name).map_err(|e| Error::invalid("name", e))?;
    let mut random = [0u8; 48];
    getrandom::fill(&mut random)
        .map_err(|e| Error::internal(format!("no randomness for a key: {e}")))?;
    let new = access::new_key(&random);
    let row = api_keys::insert(
        conn,
        &NewApiKey {
            key_id: &new.key_id,
            client_id: &request.client_id,
            name: &request.name,
            role: request.role,
            scope: &request.scope,
            secret_hash: &new.secret_hash,
            created_by: &request.created_by,
            expire_time: request.expire_time,
        },
    )
    .await
    .map_err(|e| match e.unique_violation() {
        Some(api_keys::UNIQUE_LIVE_NAME) => domain::Error::AlreadyExists {
            reason: "DUPLICATE_KEY_NAME",
            field: "name",
            message: format!(
                "name: client {} already has a live API key named {:?}",
                request.client_id, request.name
            ),
        }
        .into(),
        _ => Error::Store(e),
    })?;
    Ok(IssuedKey { row, key: new.full })
}

/// PERMISSION_DENIED unless the caller holds every client of `scope`.
fn may_manage(caller: &Caller, scope: &ClientScope) -> Result<(), Error> {
    if caller.scope.covers(scope) {
        return Ok(());
    }
    Err(domain::Error::PermissionDenied {
        reason: "SCOPE_NOT_HELD",
        message: format!(
            "clients: this key acts for {}, not for every client of {scope}",
            caller.scope
        ),
    }
    .into())
}

impl UseCases {
    /// CreateApiKey: `caller` issues a key of `request.client_id`; it may
    /// hand out only clients it holds itself. The key text is returned once.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        request: KeyRequest,
    ) -> Result<IssuedKey, Error> {
        may_manage(caller, &request.scope)?;
        let mut conn = self.conn().await?;
        let issued = issue_key(&mut conn, &request).await?;
        tracing::info!(client = %request.client_id, key_id = %issued.row.key_id, name = %issued.row.name, role = %request.role, by = %caller.name, "created API key");
        Ok(issued)
    }

    /// ListApiKeys: the keys of `client` the caller could manage.
    pub async fn list_api_keys(
        &self,
        caller: &Caller,
        client: &str,
        include_revoked: bool,
    ) -> Result<Vec<ApiKey>, Error> {
        let mut conn = self.conn().await?;
        let rows = api_keys::list_by_client(&mut conn, client, include_revoked).await?;
        Ok(rows
            .into_iter()
            .filter(|row| caller.scope.covers(&row.scope()))
            .collect())
    }

    /// RevokeApiKey: the key stops working (within the authentication
    /// cache's second).
    pub async fn revoke_api_key(
        &self,
        caller: &Caller,
        client: &str,
        key_id: &str,
    ) -> Result<ApiKey, Error> {
        if key_id.is_empty() {
            return Err(Error::invalid("key_id", "required"));
        }
        let not_found = || Error::not_found("API key", key_id.to_string());
        let mut conn = self.conn().await?;
        let existing = api_keys::find(&mut conn, key_id)
            .await?
            .filter(|row| row.client_id == client)
            .ok_or_else(not_found)?;
        may_manage(caller, &existing.scope())?;
        let row = api_keys::revoke(&mut conn, client, key_id, chrono::Utc::now())
            .await?
            .ok_or_else(not_found)?;
        tracing::info!(client, key_id = %row.key_id, name = %row.name, by = %caller.name, "revoked API key");
        Ok(row)
    }
}

/// How the authentication layer finds keys: by id, and noting their last
/// use. A front end holds one; it reads the database directly because it
/// runs before any use case (and outside their error handling).
#[derive(Clone)]
pub struct KeyDirectory {
    db: Db,
}

impl KeyDirectory {
    /// A directory on the service's database.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The key `key_id`, live or not, if it exists.
    pub async fn find(&self, key_id: &str) -> Result<Option<ApiKey>, DbError> {
        let mut conn = self.db.conn().await?;
        api_keys::find(&mut conn, key_id).await
    }

    /// Notes that `key_id` was used at `now`.
    pub async fn touch(&self, key_id: &str, now: DateTime<Utc>) -> Result<(), DbError> {
        let mut conn = self.db.conn().await?;
        api_keys::touch(&mut conn, key_id, now).await.map(|_| ())
    }
}

/// Why a presented key does not authenticate anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefused {
    /// No record of that id, or the secret does not match it.
    #[error("unknown API key")]
    Unknown,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The key expired.
    #[error("the API key expired")]
    Expired,
    /// The stored role is not one this build knows (a bug).
    #[error("the API key's stored role is unknown")]
    UnknownRole,
}

/// The caller a presented key stands for, given its stored record (as
/// looked up by id) at `now`. Every front end that accepts API keys (the
/// gRPC authentication layer, the console's sign-in) decides here.
pub fn authenticate(
    presented: &access::PresentedKey,
    row: Option<&ApiKey>,
    now: DateTime<Utc>,
) -> Result<Caller, KeyRefused> {
    let row = row
        .filter(|row| access::verify(presented, &row.secret_hash))
        .ok_or(KeyRefused::Unknown)?;
    if row.revoke_time.is_some() {
        return Err(KeyRefused::Revoked);
    }
    if !row.is_live(now) {
        return Err(KeyRefused::Expired);
    }
    let role = row.role().ok_or_else(|| {
        tracing::error!(key_id = %row.key_id, role = %row.role, "stored key has an unknown role");
        KeyRefused::UnknownRole
    })?;
    Ok(Caller {
        key_id: row.key_id.clone(),
        name: row.name.clone(),
        role,
        scope: row.scope(),
        on_behalf_of: None,
    })
}
