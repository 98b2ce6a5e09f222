//! Assembles and runs the gRPC server: the scheduling services, key
//! management, health, reflection (v1 and v1alpha), the authentication layer,
//! TLS, the engine's workers, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::db::{Db, DbError};
use crate::proto::v1::access_service_server::AccessServiceServer;
use crate::proto::v1::execution_service_server::ExecutionServiceServer;
use crate::proto::v1::job_catalogue_service_server::JobCatalogueServiceServer;
use crate::proto::v1::job_schedule_config_service_server::JobScheduleConfigServiceServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::scheduling::api::access::AccessApi;
use crate::scheduling::api::auth::AuthLayer;
use crate::scheduling::api::catalogue::CatalogueApi;
use crate::scheduling::api::configs::ConfigApi;
use crate::scheduling::api::executions::ExecutionApi;
use crate::scheduling::api::page_token::{KeyError, PageTokens};
use crate::scheduling::engine::Engine;
use crate::scheduling::job::JobRegistry;
use crate::scheduling::usecases::access::KeyDirectory;
use crate::scheduling::usecases::UseCases;
use crate::scheduling::watch::EventHub;
use crate::settings::ServeSettings;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be set up.
    #[error(transparent)]
    Store(#[from] DbError),
    /// No `DATABASE_URL` was given to a server that cannot start its own.
    #[error("no database URL")]
    NoDatabase,
    /// The listen address could not be bound.
    #[error("cannot listen: {0}")]
    Bind(#[from] std::io::Error),
    /// Reflection could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS settings cannot be used, or plaintext was refused.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The page token key from the database was refused.
    #[error(transparent)]
    PageTokenKey(#[from] KeyError),
}

/// A server that is running. Dropping it does not stop it: call
/// [`RunningServer::shutdown`] or cancel the token it was started with.
pub struct RunningServer {
    /// The address it listens on (the real port when started on port 0).
    pub addr: SocketAddr,
    /// The engine behind it.
    pub engine: Engine,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Asks for a graceful shutdown and waits for it: in-flight requests and
    /// batches finish, streams end.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops (after its shutdown token is cancelled).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => panic!("server task panicked: {e}"),
        }
    }
}

/// Migrates the database, binds `settings.listen` and serves until
/// `shutdown` is cancelled.
pub async fn start(
    settings: &ServeSettings,
    registry: JobRegistry,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    start_with_clock(settings, registry, Arc::new(SystemClock), shutdown).await
}

/// [`start`] with an injected clock.
pub async fn start_with_clock(
    settings: &ServeSettings,
    registry: JobRegistry,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    let url = settings
        .database_url
        .as_deref()
        .ok_or(ServerError::NoDatabase)?;
    let tls = crate::tls::server_tls(settings)?;
    // Requests and the engine draw on separate pools: reads under load
    // never starve workers of the connections that settle batches.
    let requests_db = Db::with_options(url, settings.pool())?;
    let db = Db::with_options(url, settings.engine_pool())?;
    db.migrate().await?;
    let tokens = PageTokens::new(&db.page_token_key().await?)?;
    let engine = Engine::new(db, registry, settings.engine(), clock);

    let listener = TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<JobScheduleConfigServiceServer<ConfigApi>>()
        .await;
    health_reporter
        .set_serving::<ExecutionServiceServer<ExecutionApi>>()
        .await;
    health_reporter
        .set_serving::<JobCatalogueServiceServer<CatalogueApi>>()
        .await;
    health_reporter
        .set_serving::<AccessServiceServer<AccessApi>>()
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let hub = EventHub::start(url.to_string(), engine.db().clone(), shutdown.clone());
    let usecases =
        UseCases::new(engine.clone(), hub, shutdown.clone()).with_request_pool(requests_db.clone());
    let mut workers = engine.spawn_workers(shutdown.clone());
    workers.push(tokio::spawn(prune_events(
        engine.clone(),
        settings.event_retention_hours,
        shutdown.clone(),
    )));
    if engine.settings().scheduler {
        workers.push(tokio::spawn(engine.clone().run_scheduler(shutdown.clone())));
    }

    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(settings.max_streams_per_connection.max(1));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .trace_fn(|request| tracing::info_span!("grpc", path = %request.uri().path()))
        .layer(crate::catch_panic::layer())
        .layer(crate::scheduling::api::codec::decode_failures_layer())
        // Bounded calls in flight, deadlines, each call on its own task.
        .layer(crate::load::LoadLayer::new(settings.load()))
        // Every call but health and reflection is authenticated here.
        .layer(AuthLayer::new(
            KeyDirectory::new(requests_db),
            settings.limits(),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(JobCatalogueServiceServer::new(CatalogueApi::new(
            engine.registry().clone(),
        )))
        .add_service(JobScheduleConfigServiceServer::new(ConfigApi::new(
            usecases.clone(),
            tokens.clone(),
        )))
        .add_service(ExecutionServiceServer::new(ExecutionApi::new(
            usecases.clone(),
            tokens,
        )))
        .add_service(AccessServiceServer::new(AccessApi::new(usecases)));

    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        tracing::info!(%addr, "serving gRPC");
        let served = router
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY, responses larger than a segment wait
                // on delayed ACKs (a 40 ms stall per page of results).
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                token.cancelled(),
            )
            .await;
        health_reporter
            .set_not_serving::<JobScheduleConfigServiceServer<ConfigApi>>()
            .await;
        tracing::info!("gRPC server stopped; waiting for engine workers to settle");
        for worker in workers {
            let _ = worker.await;
        }
        tracing::info!("engine stopped");
        served.map_err(ServerError::from)
    });

    Ok(RunningServer {
        addr,
        engine,
        shutdown,
        task,
    })
}

/// Deletes status events older than the retention, every ten minutes.
async fn prune_events(engine: Engine, retention_hours: u64, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match engine.db().conn().await {
            Ok(mut conn) => {
                match crate::scheduling::store::events::prune(
                    &mut conn,
                    retention_hours as f64 * 3600.0,
                )
                .await
                {
                    Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned old status events"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning status events failed"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "pruning status events failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
        }
    }
}
