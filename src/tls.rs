//! The server's TLS settings, from the `--tls-*` flags, and the rule that a
//! server reachable from other hosts speaks TLS unless told otherwise.

use std::net::SocketAddr;
use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::settings::ServeSettings;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{flag}: cannot read {path}: {source}")]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Plaintext on a non-loopback address without `--insecure-plaintext`.
    #[error(
        "refusing to listen on {0} without TLS: give --tls-cert and --tls-key, or \
         --insecure-plaintext to accept plaintext"
    )]
    PlaintextRefused(SocketAddr),
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })
}

/// The TLS configuration the flags ask for, `None` for plaintext; refuses
/// plaintext on a non-loopback `listen` unless `--insecure-plaintext`.
pub fn server_tls(settings: &ServeSettings) -> Result<Option<ServerTlsConfig>, TlsError> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        if !settings.listen.ip().is_loopback() && !settings.insecure_plaintext {
            return Err(TlsError::PlaintextRefused(settings.listen));
        }
        return Ok(None);
    };
    let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &settings.tls_client_ca {
        config = config
            .client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?))
            .client_auth_optional(false);
    }
    Ok(Some(config))
}
