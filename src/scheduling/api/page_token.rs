//! Opaque, tamper-proof page tokens. A token carries the last key of the
//! page it follows and a fingerprint of the query it belongs to (method,
//! client, filters), signed with HMAC-SHA256 under the service's key (kept in
//! the database, so every replica accepts another's tokens). A token the
//! service did not issue, or issued for another client or listing, or altered
//! in any way, is refused with INVALID_ARGUMENT instead of paging the wrong
//! data or reaching the database with a forged key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scheduling::domain::limits::{self, MAX_PAGE_SIZE};
use crate::scheduling::domain::Error;

type HmacSha256 = Hmac<Sha256>;

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

/// Issues and checks page tokens with the service's signing key.
#[derive(Clone)]
pub struct PageTokens {
    /// HMAC state keyed with the service's key, cloned for each token.
    keyed: HmacSha256,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens { key: <secret> }")
    }
}

/// The signing key was refused (HMAC takes keys of any length, so this
/// does not happen with the key the database keeps).
#[derive(Debug, thiserror::Error)]
#[error("page token key: {0}")]
pub struct KeyError(String);

impl PageTokens {
    /// Tokens signed with `key` (the database's `service_secrets` key).
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        let keyed =
            <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self { keyed })
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    /// Encodes the token of the page after `key` for the query `scope`.
    pub fn encode<K: Serialize>(&self, scope: &[&str], key: &K) -> String {
        let token = Token {
            q: fingerprint(scope),
            k: key,
        };
        // Invariant: page keys are tuples of strings, numbers, UUIDs and
        // dates, which always serialize to JSON.
        #[allow(clippy::expect_used)]
        let payload = serde_json::to_vec(&token).expect("page keys serialize");
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Decodes `token` for the query `scope`: `None` for an empty token
    /// (first page), INVALID_ARGUMENT on `field` for a token that is
    /// malformed, not signed by this service, or issued for another query.
    pub fn decode<K: DeserializeOwned>(
        &self,
        field: &str,
        token: &str,
        scope: &[&str],
    ) -> Result<Option<K>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        limits::PAGE_TOKEN.check(field, token)?;
        let bad = || {
            Error::invalid(
                field,
                "not a page token issued by this listing; start again without it",
            )
        };
        let (payload, tag) = token.split_once('.').ok_or_else(bad)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad())?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| bad())?;
        let token: Token<K> = serde_json::from_slice(&payload).map_err(|_| bad())?;
        if token.q != fingerprint(scope) {
            return Err(Error::invalid(
                field,
                "this page token belongs to another client or another query; start again \
                 without it",
            ));
        }
        Ok(Some(token.k))
    }
}

/// The page size to use: `requested` within 1..=`max` (at most
/// [`MAX_PAGE_SIZE`]), `default` for 0, INVALID_ARGUMENT for a negative
/// value.
pub fn page_size(field: &str, requested: i32, default: i64, max: i64) -> Result<i64, Error> {
    match requested {
        0 => Ok(default),
        n if n < 0 => Err(Error::invalid(field, "must not be negative")),
        n => Ok(i64::from(n).min(max).min(MAX_PAGE_SIZE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn refused<K: DeserializeOwned + std::fmt::Debug>(tokens: &PageTokens, token: &str) {
        match tokens.decode::<K>("page_token", token, &["list", "client-a"]) {
            Err(Error::InvalidArgument(v)) => assert_eq!(v[0].field, "page_token"),
            other => panic!("{token:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn round_trips_within_its_scope_only() {
        let t = tokens();
        let token = t.encode(&["list", "client-a"], &("name".to_string(), 7));
        let key: Option<(String, i32)> = t
            .decode("page_token", &token, &["list", "client-a"])
            .unwrap();
        assert_eq!(key, Some(("name".to_string(), 7)));
        let other = t.decode::<(String, i32)>("page_token", &token, &["list", "client-b"]);
        assert!(matches!(other, Err(Error::InvalidArgument(_))));
        refused::<(String, i32)>(&t, "!!!");
        assert_eq!(t.decode::<i32>("page_token", "", &["x"]).unwrap(), None);
    }

    #[test]
    fn another_replica_with_the_same_key_accepts_the_token() {
        let token = tokens().encode(&["list", "client-a"], &42);
        let replica = tokens();
        assert_eq!(
            replica
                .decode::<i32>("page_token", &token, &["list", "client-a"])
                .unwrap(),
            Some(42)
        );
    }

    #[test]
    fn forged_and_altered_tokens_are_refused() {
        let t = tokens();
        let token = t.encode(&["list", "client-a"], &42);
        // Signed with another key.
        let foreign = PageTokens::new(b"another key")
            .unwrap()
            .encode(&["list", "client-a"], &42);
        refused::<i32>(&t, &foreign);
        // The old unsigned format: base64 JSON with a forged key.
        let unsigned = URL_SAFE_NO_PAD.encode(format!(
            "{{\"q\":\"{}\",\"k\":\"-100000-01-01\"}}",
            fingerprint(&["list", "client-a"])
        ));
        refused::<chrono::NaiveDate>(&t, &unsigned);
        // Payload altered, signature kept.
        let (payload, tag) = token.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let last = bytes.len() - 2;
        bytes[last] = b'3';
        refused::<i32>(&t, &format!("{}.{tag}", URL_SAFE_NO_PAD.encode(bytes)));
        // Signature cut or missing.
        refused::<i32>(&t, &token[..token.len() - 2]);
        refused::<i32>(&t, payload);
        refused::<i32>(&t, &format!("{token}\0"));
        refused::<i32>(&t, &"A".repeat(100_000));
    }

    #[test]
    fn page_size_clamps() {
        assert_eq!(page_size("page_size", 0, 50, 1000).unwrap(), 50);
        assert_eq!(page_size("page_size", 5000, 50, 1000).unwrap(), 1000);
        assert_eq!(page_size("page_size", i32::MAX, 50, 1000).unwrap(), 1000);
        assert!(page_size("page_size", -1, 50, 1000).is_err());
        assert!(page_size("page_size", i32::MIN, 50, 1000).is_err());
    }
}
