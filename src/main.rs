//! The `allegro-scheduler` binary: `serve` runs the service.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use allegro_scheduler::billing::core_aria::{serve_standin, CoreAriaClient};
use allegro_scheduler::billing::demo::load_demo_ledger;
use allegro_scheduler::billing::jobs::catalogue::CATALOGUE;
use allegro_scheduler::db::Db;
use allegro_scheduler::embedded_pg::EmbeddedPg;
use allegro_scheduler::scheduling::domain::config::{ConfigDraft, Frequency, JobSpec};
use allegro_scheduler::scheduling::store::configs;
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
    let url = settings
        .database_url
        .clone()
        .expect("database URL set above");
    let db = Db::new(&url, 4)?;
    db.migrate().await?;
    // Core Aria: the given address, else the stand-in, in-process. The sync
    // jobs connect lazily: a core that is down only fails their batches
    // (SYNC_ENDPOINT_UNAVAILABLE). The stand-in stops only after the server
    // (and the batches it had in flight) did.
    let standin_stop = CancellationToken::new();
    let mut standin = None;
    let core_url = match &settings.core_aria_url {
        Some(url) => url.clone(),
        None => {
            let listener = tokio::net::TcpListener::bind(settings.standin_listen).await?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "starting the stand-in core Aria in-process");
            standin = Some(tokio::spawn(serve_standin(
                db.clone(),
                listener,
                standin_stop.clone(),
            )));
            format!("http://{addr}")
        }
    };
    if let Some(client) = &settings.demo_client {
        load_demo(&db, client, settings.demo_accounts).await?;
    }
    let registry = allegro_scheduler::billing::catalogue_registry(CoreAriaClient::lazy(&core_url)?);
    let result = match server::start(&settings, registry, shutdown).await {
        Ok(running) => running.wait().await.map_err(Into::into),
        Err(e) => Err(e.into()),
    };
    standin_stop.cancel();
    if let Some(standin) = standin {
        let _ = standin.await;
    }
    if let Some(pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await?;
    }
    result
}

/// Loads the demo ledger for `client` and creates its DAILY schedule, unless
/// the client already has a configuration.
async fn load_demo(
    db: &Db,
    client: &str,
    accounts: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = db.conn().await?;
    if !configs::list_page(&mut conn, client, None, 1)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let today = chrono::Utc::now().date_naive();
    tracing::info!(client, accounts, %today, "loading the demo ledger");
    let ledger = load_demo_ledger(db, client, accounts, today).await?;
    let jobs = CATALOGUE
        .iter()
        .map(|entry| JobSpec {
            job_type: entry.name.to_string(),
            manual: false,
        })
        .collect();
    let draft = ConfigDraft {
        name: "end-of-day".into(),
        description: "Demo daily schedule: the recommended sequence".into(),
        frequency: Frequency::Daily,
        scheduled_time: None,
        exception_window: None,
        time_zone: chrono_tz::UTC,
        recurrence_rule: None,
        jobs,
        automatic_runs_paused: false,
        rule_start_date: None,
    };
    let row = configs::insert(&mut conn, client, &draft, chrono::Utc::now()).await?;
    let config: allegro_scheduler::scheduling::domain::config::JobScheduleConfig =
        row.try_into()?;
    tracing::info!(
        client,
        config_id = %config.config_id,
        due_anniversary_days = ?ledger.due_days,
        "demo ready: process it with ProcessExecution (see README)"
    );
    Ok(())
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
