//! The `allegro-scheduler` binary: `serve` runs the service.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use allegro_scheduler::core_aria::{CoreAriaClient, DEFAULT_CORE_ARIA_ENDPOINT};
use allegro_scheduler::embedded_pg::EmbeddedPg;
use allegro_scheduler::jobs::JobRegistry;
use allegro_scheduler::server;
use allegro_scheduler::settings::ServeSettings;

/// Job schedule control plane of Aria Allegro.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API and run the engine.
    Serve(ServeSettings),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(settings) => serve(settings).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(mut settings: ServeSettings) -> Result<(), Box<dyn std::error::Error>> {
    let mut embedded = None;
    if settings.database_url.is_none() {
        let (dir, port) = (settings.data_dir.clone(), settings.embedded_pg_port);
        let pg = tokio::task::spawn_blocking(move || EmbeddedPg::start(&dir, port)).await??;
        settings.database_url = Some(pg.database_url().await?);
        embedded = Some(pg);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    // Core Aria's address; the sync jobs connect lazily, so a core that is
    // not up yet only fails their batches (SYNC_ENDPOINT_UNAVAILABLE).
    let core_url = std::env::var("ALLEGRO_CORE_ARIA_URL")
        .unwrap_or_else(|_| DEFAULT_CORE_ARIA_ENDPOINT.to_string());
    let registry = JobRegistry::catalogue(CoreAriaClient::lazy(&core_url)?);
    let result = match server::start(&settings, registry, shutdown).await {
        Ok(running) => running.wait().await.map_err(Into::into),
        Err(e) => Err(e.into()),
    };
    if let Some(pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await?;
    }
    result
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}
