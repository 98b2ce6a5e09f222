//! Opaque page tokens. A token carries the last key of the page it follows
//! and a fingerprint of the query it belongs to (method, client, filters), so
//! a token from another client or another listing is refused instead of
//! silently paging the wrong data.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scheduling::Error;

#[derive(Serialize, Deserialize)]
struct Token<K> {
    /// Fingerprint of the query.
    q: String,
    /// Last key of the previous page.
    k: K,
}

fn fingerprint(scope: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in scope {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex(&hasher.finalize()[..12])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes the token of the page after `key` for the query `scope`.
pub fn encode<K: Serialize>(scope: &[&str], key: &K) -> String {
    let token = Token {
        q: fingerprint(scope),
        k: key,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("page token serializes"))
}

/// Decodes `token` for the query `scope`: `None` for an empty token (first
/// page), INVALID_ARGUMENT on `field` for a token that is malformed or was
/// issued for another query.
pub fn decode<K: DeserializeOwned>(
    field: &str,
    token: &str,
    scope: &[&str],
) -> Result<Option<K>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid(field, "not a page token issued by this listing");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let token: Token<K> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.q != fingerprint(scope) {
        return Err(Error::invalid(
            field,
            "this page token belongs to another client or another query; start again without it",
        ));
    }
    Ok(Some(token.k))
}

/// The page size to use: `requested` within 1..=`max`, `default` for 0,
/// INVALID_ARGUMENT for a negative value.
pub fn page_size(field: &str, requested: i32, default: i64, max: i64) -> Result<i64, Error> {
    match requested {
        0 => Ok(default),
        n if n < 0 => Err(Error::invalid(field, "must not be negative")),
        n => Ok(i64::from(n).min(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_its_scope_only() {
        let token = encode(&["list", "client-a"], &("name".to_string(), 7));
        let key: Option<(String, i32)> =
            decode("page_token", &token, &["list", "client-a"]).unwrap();
        assert_eq!(key, Some(("name".to_string(), 7)));
        let other = decode::<(String, i32)>("page_token", &token, &["list", "client-b"]);
        assert!(matches!(
            other,
            Err(Error::Domain(
                crate::scheduling::domain::Error::InvalidArgument(_)
            ))
        ));
        let garbage = decode::<(String, i32)>("page_token", "!!!", &["list", "client-a"]);
        assert!(matches!(
            garbage,
            Err(Error::Domain(
                crate::scheduling::domain::Error::InvalidArgument(_)
            ))
        ));
        assert_eq!(decode::<i32>("page_token", "", &["x"]).unwrap(), None);
    }

    #[test]
    fn page_size_clamps() {
        assert_eq!(page_size("page_size", 0, 50, 1000).unwrap(), 50);
        assert_eq!(page_size("page_size", 5000, 50, 1000).unwrap(), 1000);
        assert!(page_size("page_size", -1, 50, 1000).is_err());
    }
}
