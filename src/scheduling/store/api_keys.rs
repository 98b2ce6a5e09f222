//! The SQL of API keys: create, find by id, list a client's keys, revoke,
//! note the last use.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::api_keys;
use super::DbError;
use crate::scheduling::domain::access::{ClientScope, Role};

/// Name of the unique index on a client's live key names.
pub const UNIQUE_LIVE_NAME: &str = "api_keys_live_name";

/// A stored key (never its secret, only the secret's hash).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKeyRow {
    /// The id in `ask_<key id>_<secret>`.
    pub key_id: String,
    /// The client whose admins manage the key.
    pub client_id: String,
    /// The actor written to the action history.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// The clients the key acts for; `None`: every client.
    pub clients: Option<Vec<String>>,
    /// HMAC of the secret.
    pub secret_hash: Vec<u8>,
    /// Who created it (a key name, or `cli` / `demo`).
    pub created_by: String,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expire_time: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoke_time: Option<DateTime<Utc>>,
    /// When it was last seen (updated at most about once a minute).
    pub last_use_time: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    /// The key's role; `None` for a row the CHECK constraint should have
    /// refused.
    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.role)
    }

    /// The clients the key acts for.
    pub fn scope(&self) -> ClientScope {
        match &self.clients {
            None => ClientScope::All,
            Some(list) => ClientScope::Clients(list.clone()),
        }
    }

    /// Whether the key works at `now`: not revoked, not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoke_time.is_none() && self.expire_time.is_none_or(|t| t > now)
    }
}

/// What a new key record holds.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    /// Its id.
    pub key_id: &'a str,
    /// The managing client.
    pub client_id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its role.
    pub role: Role,
    /// The clients it acts for.
    pub scope: &'a ClientScope,
    /// HMAC of its secret.
    pub secret_hash: &'a [u8],
    /// Who creates it.
    pub created_by: &'a str,
    /// When it expires, if ever.
    pub expire_time: Option<DateTime<Utc>>,
}

/// Inserts a key; a live key of the same name for the client is a unique
/// violation of [`UNIQUE_LIVE_NAME`].
pub async fn insert(
    conn: &mut AsyncPgConnection,
    key: &NewApiKey<'_>,
) -> Result<ApiKeyRow, DbError> {
    let clients = match key.scope {
        ClientScope::All => None,
        ClientScope::Clients(list) => Some(list.clone()),
    };
    Ok(diesel::insert_into(api_keys::table)
        .values((
            api_keys::key_id.eq(key.key_id),
            api_keys::client_id.eq(key.client_id),
            api_keys::name.eq(key.name),
            api_keys::role.eq(key.role.as_str()),
            api_keys::clients.eq(clients),
            api_keys::secret_hash.eq(key.secret_hash),
            api_keys::created_by.eq(key.created_by),
            api_keys::expire_time.eq(key.expire_time),
        ))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await?)
}

/// The key with this id, live or not.
pub async fn find(
    conn: &mut AsyncPgConnection,
    key_id: &str,
) -> Result<Option<ApiKeyRow>, DbError> {
    Ok(api_keys::table
        .find(key_id)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Every key a client manages, oldest first; revoked ones only when asked.
pub async fn list_by_client(
    conn: &mut AsyncPgConnection,
    client: &str,
    include_revoked: bool,
) -> Result<Vec<ApiKeyRow>, DbError> {
    let mut query = api_keys::table
        .filter(api_keys::client_id.eq(client))
        .order((api_keys::create_time, api_keys::key_id))
        .select(ApiKeyRow::as_select())
        .into_boxed();
    if !include_revoked {
        query = query.filter(api_keys::revoke_time.is_null());
    }
    Ok(query.load(conn).await?)
}

/// Revokes a client's key (idempotent: a revoked key keeps its first
/// revocation time). `None` when the client has no such key.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    client: &str,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<ApiKeyRow>, DbError> {
    let revoked = diesel::update(
        api_keys::table
            .filter(api_keys::key_id.eq(key_id))
            .filter(api_keys::client_id.eq(client))
            .filter(api_keys::revoke_time.is_null()),
    )
    .set(api_keys::revoke_time.eq(now))
    .returning(ApiKeyRow::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    if revoked.is_some() {
        return Ok(revoked);
    }
    Ok(find(conn, key_id).await?.filter(|k| k.client_id == client))
}

/// Notes that the key was used at `now`.
pub async fn touch(
    conn: &mut AsyncPgConnection,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(api_keys::table.find(key_id))
        .set(api_keys::last_use_time.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}
