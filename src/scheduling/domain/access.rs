//! Who may call: API keys, their roles and client scopes. Pure rules, no I/O.
//!
//! A key is `ask_<key id>_<secret>`. The key id names the stored record; only
//! an HMAC-SHA256 of the secret (keyed by the key id) is stored, and the
//! comparison runs in constant time.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Prefix of every API key, so a leaked key is recognisable.
pub const KEY_PREFIX: &str = "ask_";

/// Length of a key id: 32 lowercase hex digits.
const KEY_ID_LEN: usize = 32;

/// Length of a secret: 64 lowercase hex digits (256 random bits).
const SECRET_LEN: usize = 64;

/// What a key may do. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads and the status stream.
    Viewer,
    /// Plus every execution action and configuration write.
    Operator,
    /// Plus key management.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `name` (as [`Role::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The clients a key acts for: its own client, an explicit list (a platform
/// service acting for several), or every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientScope {
    /// Exactly these clients (one for an ordinary client key).
    Clients(Vec<String>),
    /// Every client, present and future.
    All,
}

impl ClientScope {
    /// The scope of one client.
    pub fn one(client: &str) -> Self {
        ClientScope::Clients(vec![client.to_string()])
    }

    /// Whether `client` is inside the scope.
    pub fn contains(&self, client: &str) -> bool {
        match self {
            ClientScope::All => true,
            ClientScope::Clients(list) => list.iter().any(|c| c == client),
        }
    }

    /// Whether every client of `other` is inside this scope (so a key with
    /// this scope may manage a key with `other`).
    pub fn covers(&self, other: &ClientScope) -> bool {
        match (self, other) {
            (ClientScope::All, _) => true,
            (ClientScope::Clients(_), ClientScope::All) => false,
            (ClientScope::Clients(_), ClientScope::Clients(list)) => {
                list.iter().all(|c| self.contains(c))
            }
        }
    }
}

impl fmt::Display for ClientScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientScope::All => f.write_str("all clients"),
            ClientScope::Clients(list) => f.write_str(&list.join(", ")),
        }
    }
}

/// Why an authenticated caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The client is outside the key's scope.
    Client(String),
    /// The key's role is below the one the call needs.
    Role {
        /// What the call needs.
        needed: Role,
        /// What the key has.
        has: Role,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Client(client) => {
                write!(f, "client_id: this key may not act for client {client:?}")
            }
            Denied::Role { needed, has } => {
                write!(f, "this call needs the {needed} role; the key has {has}")
            }
        }
    }
}

/// The authenticated caller of a request, put there by the authentication
/// layer for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id.
    pub key_id: String,
    /// The key's name: the actor in the action history.
    pub name: String,
    /// The key's role.
    pub role: Role,
    /// The clients the key acts for.
    pub scope: ClientScope,
    /// Whom a platform key says it acts for (`x-on-behalf-of`), recorded
    /// beside the key's name.
    pub on_behalf_of: Option<String>,
}

impl Caller {
    /// Whether this caller may act for `client` with at least `role`.
    pub fn may(&self, client: &str, role: Role) -> Result<(), Denied> {
        if !self.scope.contains(client) {
            return Err(Denied::Client(client.to_string()));
        }
        self.has_role(role)
    }

    /// Whether the key's role is at least `role` (calls naming no client).
    pub fn has_role(&self, role: Role) -> Result<(), Denied> {
        if self.role < role {
            return Err(Denied::Role {
                needed: role,
                has: self.role,
            });
        }
        Ok(())
    }
}

/// A key as the caller presents it: which record, and the secret to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    /// The stored record's id.
    pub key_id: String,
    /// The secret part, checked against the stored hash.
    pub secret: String,
}

/// Why a presented key was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    /// It does not start with `ask_`.
    #[error("an API key starts with \"ask_\"")]
    Prefix,
    /// The parts after the prefix are missing or of the wrong shape.
    #[error("an API key is ask_<32 hex digits>_<64 hex digits>")]
    Shape,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses `ask_<key id>_<secret>`.
pub fn parse_key(key: &str) -> Result<PresentedKey, MalformedKey> {
    let rest = key.strip_prefix(KEY_PREFIX).ok_or(MalformedKey::Prefix)?;
    let (key_id, secret) = rest.split_once('_').ok_or(MalformedKey::Shape)?;
    if !is_lower_hex(key_id, KEY_ID_LEN) || !is_lower_hex(secret, SECRET_LEN) {
        return Err(MalformedKey::Shape);
    }
    Ok(PresentedKey {
        key_id: key_id.to_string(),
        secret: secret.to_string(),
    })
}

/// A newly generated key: the full text to hand over once, and what to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The record's id.
    pub key_id: String,
    /// `ask_<key id>_<secret>`: shown once, never stored.
    pub full: String,
    /// HMAC of the secret: the only thing stored.
    pub secret_hash: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Generates a key from `random` (48 random bytes: 16 for the id, 32 for
/// the secret).
pub fn new_key(random: &[u8; 48]) -> NewKey {
    let key_id = hex(&random[..16]);
    let secret = hex(&random[16..]);
    NewKey {
        full: format!("{KEY_PREFIX}{key_id}_{secret}"),
        secret_hash: hash_secret(&key_id, &secret),
        key_id,
    }
}

// Invariant: HMAC accepts keys of any length.
#[allow(clippy::expect_used)]
fn mac(key_id: &str, secret: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key_id.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(secret.as_bytes());
    mac
}

/// The stored form of a secret: HMAC-SHA256 keyed by the key id.
pub fn hash_secret(key_id: &str, secret: &str) -> Vec<u8> {
    mac(key_id, secret).finalize().into_bytes().to_vec()
}

/// Whether `presented` matches the stored hash, compared in constant time.
pub fn verify(presented: &PresentedKey, stored_hash: &[u8]) -> bool {
    mac(&presented.key_id, &presented.secret)
        .verify_slice(stored_hash)
        .is_ok()
}

/// Longest key name (it becomes the actor of the action history).
pub const MAX_NAME_LEN: usize = 100;

/// Checks a key name: 1 to 100 printable characters, no surrounding blanks.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.trim() != name {
        return Err("required, without leading or trailing blanks".into());
    }
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(format!("at most {MAX_NAME_LEN} printable characters"));
    }
    Ok(())
}

/// Checks an `x-on-behalf-of` value: 1 to 200 printable characters. Returns
/// the trimmed value.
pub fn check_on_behalf_of(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
        return Err("must be 1 to 200 printable characters".into());
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, scope: ClientScope) -> Caller {
        Caller {
            key_id: "k".into(),
            name: "ops".into(),
            role,
            scope,
            on_behalf_of: None,
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn may_checks_client_then_role() {
        let viewer = caller(Role::Viewer, ClientScope::one("a"));
        assert!(viewer.may("a", Role::Viewer).is_ok());
        assert_eq!(
            viewer.may("a", Role::Operator),
            Err(Denied::Role {
                needed: Role::Operator,
                has: Role::Viewer
            })
        );
        assert_eq!(
            viewer.may("b", Role::Viewer),
            Err(Denied::Client("b".into()))
        );
        let platform = caller(
            Role::Operator,
            ClientScope::Clients(vec!["a".into(), "b".into()]),
        );
        assert!(platform.may("a", Role::Operator).is_ok());
        assert!(platform.may("b", Role::Operator).is_ok());
        assert!(platform.may("c", Role::Viewer).is_err());
        let all = caller(Role::Admin, ClientScope::All);
        assert!(all.may("anyone", Role::Admin).is_ok());
    }

    #[test]
    fn scopes_cover() {
        let ab = ClientScope::Clients(vec!["a".into(), "b".into()]);
        assert!(ab.covers(&ClientScope::one("a")));
        assert!(ab.covers(&ab));
        assert!(!ClientScope::one("a").covers(&ab));
        assert!(!ab.covers(&ClientScope::All));
        assert!(ClientScope::All.covers(&ab));
    }

    #[test]
    fn keys_round_trip_and_verify() {
        let key = new_key(&[7u8; 48]);
        let presented = parse_key(&key.full).unwrap();
        assert_eq!(presented.key_id, key.key_id);
        assert!(verify(&presented, &key.secret_hash));
        let mut wrong = presented.clone();
        wrong.secret.replace_range(
            0..1,
            if wrong.secret.starts_with('0') {
                "1"
            } else {
                "0"
            },
        );
        assert!(!verify(&wrong, &key.secret_hash));
        assert!(!verify(&presented, &key.secret_hash[..31]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = new_key(&[0xabu8; 48]).full;
        assert!(parse_key(&good).is_ok());
        assert_eq!(parse_key("garbage"), Err(MalformedKey::Prefix));
        assert_eq!(parse_key("ask_"), Err(MalformedKey::Shape));
        assert_eq!(
            parse_key(&good.to_uppercase().replace("ASK_", "ask_")),
            Err(MalformedKey::Shape)
        );
        assert_eq!(parse_key(&format!("{good}0")), Err(MalformedKey::Shape));
        assert_eq!(
            parse_key(&good.replacen('_', "-", 2)),
            Err(MalformedKey::Prefix)
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("billing-service").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(" x").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
        assert_eq!(check_on_behalf_of("  jane@acme "), Ok("jane@acme".into()));
        assert!(check_on_behalf_of("a\nb").is_err());
    }
}
