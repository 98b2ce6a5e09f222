//! Issuing API keys: the one path by which a key comes to exist, shared by
//! `AccessService.CreateApiKey`, the `create-admin-key` command (a fresh
//! install's first key) and the embedded demo's operator key.

use chrono::{DateTime, Utc};

use crate::scheduling::domain::access::{self, ClientScope, Role};
use crate::scheduling::domain::Error;
use crate::scheduling::store::api_keys::{self, ApiKeyRow, NewApiKey};
use diesel_async::AsyncPgConnection;

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
    pub row: ApiKeyRow,
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
        .map_err(|e| Error::Internal(format!("no randomness for a key: {e}")))?;
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
        Some(api_keys::UNIQUE_LIVE_NAME) => Error::AlreadyExists {
            reason: "DUPLICATE_KEY_NAME",
            field: "name",
            message: format!(
                "name: client {} already has a live API key named {:?}",
                request.client_id, request.name
            ),
        },
        _ => Error::Store(e),
    })?;
    Ok(IssuedKey { row, key: new.full })
}
