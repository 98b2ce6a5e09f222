//! Assembles and runs the gRPC server: the scheduling services, key
//! management, health, reflection (v1 and v1alpha), the authentication layer,
//! TLS, the engine's workers, its liveness lock and reaper, the operator
//! console, and graceful shutdown in order (claims stop, batches in flight
//! settle, status streams end with UNAVAILABLE).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::console::Console;
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
use crate::scheduling::engine::liveness::Liveness;
use crate::scheduling::engine::runtime::EngineRuntime;
use crate::scheduling::engine::Engine;
use crate::scheduling::job::JobRegistry;
use crate::scheduling::usecases::access::KeyDirectory;
use crate::scheduling::usecases::UseCases;
use crate::scheduling::watch::config_cache::ConfigCache;
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
    /// The server task itself panicked (a bug).
    #[error("server task panicked: {0}")]
    Panicked(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS settings cannot be used, or plaintext was refused.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The page token key from the database was refused.
    #[error(transparent)]
    PageTokenKey(#[from] KeyError),
    /// The serving task ended abnormally.
    #[error("server task: {0}")]
    Stopped(String),
}

/// A server that is running. Dropping it does not stop it: call
/// [`RunningServer::shutdown`] or cancel the token it was started with.
pub struct RunningServer {
    /// The address it listens on (the real port when started on port 0).
    pub addr: SocketAddr,
    /// The operator console's address, when it is served.
    pub console_addr: Option<SocketAddr>,
    /// Where `/metrics` is served (the real port when started on port 0).
    pub metrics_addr: SocketAddr,
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
            Err(e) => Err(ServerError::Panicked(e.to_string())),
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
    // The engine's pool; the requests get their own in `start_on`.
    let db = Db::with_options(url, settings.engine_pool())?;
    db.migrate().await?;
    start_on(db, settings, registry, clock, shutdown).await
}

/// [`start_with_clock`] on a pool the caller already made and migrated (the
/// binary shares one pool between the server, the stand-in core and the
/// demo loader).
pub async fn start_on(
    db: Db,
    settings: &ServeSettings,
    registry: JobRegistry,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    let url = db.url().to_string();
    let url = url.as_str();
    let tls = crate::tls::server_tls(settings)?;
    // Requests and the engine draw on separate pools: reads under load
    // never starve workers of the connections that settle batches.
    let requests_db = Db::with_options(url, settings.pool())?;
    let tokens = PageTokens::new(&db.page_token_key().await?)?;
    let engine = Engine::new(db, registry, settings.engine(), clock);

    let listener = TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let console_listener = if settings.console {
        if !settings.console_listen.ip().is_loopback() && !settings.insecure_plaintext {
            return Err(crate::tls::TlsError::PlaintextRefused(settings.console_listen).into());
        }
        Some(TcpListener::bind(settings.console_listen).await?)
    } else {
        None
    };
    let console_addr = console_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;

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
            // google.rpc.Status and the error details our refusals carry, so
            // grpcurl decodes them.
            .register_encoded_file_descriptor_set(crate::proto::GOOGLE_RPC_FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    // Liveness first: every lease this process takes is covered by it.
    let liveness = Liveness::hold(url, engine.worker_id()).await?;
    // Status streams outlive the workers: they end (UNAVAILABLE) only once
    // in-flight batches have settled, so watchers see those settle.
    let streams = CancellationToken::new();
    let config_cache = ConfigCache::new(std::time::Duration::from_secs(settings.config_cache_secs));
    let hub = EventHub::start(
        url.to_string(),
        engine.db().clone(),
        config_cache,
        streams.clone(),
    );
    let usecases = UseCases::new(engine.clone(), hub.clone(), streams.clone())
        .with_request_pool(requests_db.clone())
        .with_read_gate(
            settings.reads_while_processing,
            std::time::Duration::from_millis(settings.db_pool_wait_ms),
        );
    let engine_runtime = match settings.engine_threads {
        0 => None,
        threads => Some(EngineRuntime::start(threads)?),
    };
    let mut workers = engine.spawn_workers(
        engine_runtime
            .as_ref()
            .and_then(EngineRuntime::handle)
            .as_ref(),
        shutdown.clone(),
    );
    workers.push(engine.spawn_reaper(shutdown.clone()));
    workers.push(tokio::spawn(prune_events(
        engine.clone(),
        settings.event_retention_hours,
        shutdown.clone(),
    )));
    workers.push(tokio::spawn(
        engine
            .clone()
            .run_retention(settings.retention(), shutdown.clone()),
    ));
    if engine.settings().scheduler {
        workers.push(tokio::spawn(engine.clone().run_scheduler(shutdown.clone())));
    }

    let (metrics_layer, metrics_addr) =
        crate::observability::start(settings.metrics_listen, &engine, &hub, shutdown.clone())
            .await?;

    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(settings.max_streams_per_connection.max(1));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        // Outermost: every layer below and the handler run in the call's
        // span (method, client).
        .layer(crate::observability::trace::RpcSpanLayer::new())
        .layer(metrics_layer)
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
        .add_service(AccessServiceServer::new(AccessApi::new(usecases.clone())));

    if let Some(listener) = console_listener {
        let console = Console::new(usecases, KeyDirectory::new(engine.db().clone()));
        let token = shutdown.clone();
        workers.push(tokio::spawn(async move {
            tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving the operator console");
            if let Err(e) = crate::console::serve(listener, console, token).await {
                tracing::error!(error = %e, "the operator console stopped");
            }
        }));
    }

    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        tracing::info!(%addr, "serving gRPC");
        let stopping = token.clone();
        let mut serving = tokio::spawn(router.serve_with_incoming_shutdown(
            // Without TCP_NODELAY, responses larger than a segment wait on
            // delayed ACKs (a 40 ms stall per page of results).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move { stopping.cancelled().await },
        ));
        // Shutdown order: stop accepting and claiming; let the batches in
        // flight settle (the job's own clients, e.g. core Aria, are still
        // up: the caller stops them after this); then end the status
        // streams with UNAVAILABLE; then let go of the liveness lock.
        let early = tokio::select! {
            _ = token.cancelled() => None,
            served = &mut serving => Some(served),
        };
        health_reporter
            .set_not_serving::<JobScheduleConfigServiceServer<ConfigApi>>()
            .await;
        tracing::info!("shutting down: no new claims; waiting for batches in flight");
        token.cancel();
        for worker in workers {
            let _ = worker.await;
        }
        tracing::info!("engine stopped; ending status streams");
        streams.cancel();
        let served = match early {
            Some(served) => served,
            None => serving.await,
        };
        liveness.release().await;
        drop(engine_runtime);
        match served {
            Ok(served) => served.map_err(ServerError::from),
            Err(e) => Err(ServerError::Stopped(e.to_string())),
        }
    });

    Ok(RunningServer {
        addr,
        console_addr,
        metrics_addr,
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
