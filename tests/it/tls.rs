//! TLS with certificates made in the test: a TLS client connects, plaintext
//! to the TLS port fails, a required client certificate is enforced, and a
//! server reachable from other hosts refuses to start in plaintext unless
//! told to.

use std::path::PathBuf;

use allegro_scheduler::proto::v1 as pb;
use allegro_scheduler::scheduling::api::bearer::BearerKey;
use allegro_scheduler::server::{self, ServerError};
use allegro_scheduler::tls::TlsError;
use pb::job_schedule_config_service_client::JobScheduleConfigServiceClient;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::support::*;

/// A CA, a server certificate for `localhost` and a client certificate,
/// all PEM, written under a fresh directory.
struct Pki {
    dir: PathBuf,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client_cert = CertificateParams::new(vec!["billing-service".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let dir =
            std::env::temp_dir().join(format!("allegro-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self {
            dir,
            ca: ca.pem(),
            client_cert: client_cert.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    fn settings(
        &self,
        url: &str,
        require_client_cert: bool,
    ) -> allegro_scheduler::settings::ServeSettings {
        let mut settings = test_settings(url);
        settings.tls_cert = Some(self.dir.join("server.pem"));
        settings.tls_key = Some(self.dir.join("server.key"));
        if require_client_cert {
            settings.tls_client_ca = Some(self.dir.join("ca.pem"));
        }
        settings
    }

    fn client_tls(&self, with_client_cert: bool) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        if with_client_cert {
            config.identity(Identity::from_pem(&self.client_cert, &self.client_key))
        } else {
            config
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ListJobScheduleConfigs over `channel` with `key`.
async fn list(channel: Channel, key: &str) -> Result<usize, tonic::Status> {
    JobScheduleConfigServiceClient::new(InterceptedService::new(channel, BearerKey::new(key)?))
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: CLIENT.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().configs.len())
}

async fn connect(
    uri: String,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Channel::from_shared(uri).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

async fn start(
    settings: &allegro_scheduler::settings::ServeSettings,
) -> (server::RunningServer, CancellationToken) {
    let shutdown = CancellationToken::new();
    let running = server::start(settings, catalogue_jobs(), shutdown.clone())
        .await
        .expect("server starts");
    (running, shutdown)
}

#[tokio::test]
async fn a_tls_client_connects_and_plaintext_to_the_tls_port_fails() {
    let pki = Pki::new();
    let url = fresh_database().await;
    let (running, shutdown) = start(&pki.settings(&url, false)).await;
    let key = platform_key(&url).await;
    let port = running.addr.port();

    let tls = connect(
        format!("https://localhost:{port}"),
        Some(pki.client_tls(false)),
    )
    .await
    .expect("TLS connects");
    assert_eq!(list(tls, &key).await.unwrap(), 0);

    let plaintext = match connect(format!("http://127.0.0.1:{port}"), None).await {
        Err(_) => None,
        Ok(channel) => Some(list(channel, &key).await),
    };
    assert!(
        !matches!(plaintext, Some(Ok(_))),
        "plaintext was answered on the TLS port"
    );
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn a_required_client_certificate_is_enforced() {
    let pki = Pki::new();
    let url = fresh_database().await;
    let (running, shutdown) = start(&pki.settings(&url, true)).await;
    let key = platform_key(&url).await;
    let uri = format!("https://localhost:{}", running.addr.port());

    let with_cert = connect(uri.clone(), Some(pki.client_tls(true)))
        .await
        .unwrap();
    assert_eq!(list(with_cert, &key).await.unwrap(), 0);

    let without = match connect(uri, Some(pki.client_tls(false))).await {
        Err(_) => None,
        Ok(channel) => Some(list(channel, &key).await),
    };
    assert!(
        !matches!(without, Some(Ok(_))),
        "a client without a certificate was answered"
    );
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn plaintext_beyond_loopback_needs_insecure_plaintext() {
    let url = fresh_database().await;
    let mut settings = test_settings(&url);
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let refused = server::start(&settings, catalogue_jobs(), CancellationToken::new()).await;
    assert!(
        matches!(
            refused,
            Err(ServerError::Tls(TlsError::PlaintextRefused(_)))
        ),
        "started in plaintext on 0.0.0.0"
    );
    settings.insecure_plaintext = true;
    let (running, shutdown) = start(&settings).await;
    shutdown.cancel();
    running.wait().await.unwrap();
}
