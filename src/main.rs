//! The `allegro-scheduler` binary: `serve` runs the service;
//! `create-admin-key` writes a client's first admin key.

use std::path::{Path, PathBuf};

use allegro_scheduler::observability::logging::{self, LogFormat};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use allegro_scheduler::billing::core_aria::{serve_standin, CoreAriaClient};
use allegro_scheduler::billing::demo::load_demo_ledger;
use allegro_scheduler::billing::jobs::catalogue::CATALOGUE;
use allegro_scheduler::db::Db;
use allegro_scheduler::embedded_pg::EmbeddedPg;
use allegro_scheduler::scheduling::domain::access::{ClientScope, Role};
use allegro_scheduler::scheduling::domain::config::{ConfigDraft, Frequency, JobSpec};
use allegro_scheduler::scheduling::store::{api_keys, configs};
use allegro_scheduler::scheduling::usecases::access::{issue_key, KeyRequest};
use allegro_scheduler::server;
use allegro_scheduler::settings::ServeSettings;

/// Job schedule control plane of Aria Allegro.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written: `text`, or `json` (one object per line,
    /// with the span fields, for log shippers).
    #[arg(
        long,
        global = true,
        env = "ALLEGRO_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API and run the engine.
    Serve(Box<ServeSettings>),
    /// Write an admin API key for a client directly in the database (the
    /// first key of a fresh install) and print it once.
    CreateAdminKey(CreateAdminKey),
}

/// Arguments of `create-admin-key`.
#[derive(clap::Args)]
struct CreateAdminKey {
    /// The client the key manages and acts for.
    #[arg(long)]
    client: String,
    /// The key's name (the actor of the action history).
    #[arg(long)]
    name: String,
    /// Make it a platform key acting for every client.
    #[arg(long, default_value_t = false)]
    all_clients: bool,
    /// PostgreSQL URL; when unset, the embedded cluster under `--data-dir`.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Where the embedded PostgreSQL cluster keeps its data.
    #[arg(long, env = "ALLEGRO_DATA_DIR", default_value = ".allegro-data")]
    data_dir: PathBuf,
    /// Port of the embedded PostgreSQL cluster.
    #[arg(long, env = "ALLEGRO_EMBEDDED_PG_PORT", default_value_t = 54329)]
    embedded_pg_port: u16,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let telemetry = logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::CreateAdminKey(args) => create_admin_key(args).await,
    };
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    // After the graceful shutdown: the spans of its last moments are sent
    // too.
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
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
    let url = settings.database_url.clone().ok_or("no database URL")?;
    // The engine's pool and the one migration run of the process: the
    // stand-in, the demo loader and the engine share them (API requests get
    // a pool of their own).
    let db = Db::with_options(&url, settings.engine_pool())?;
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
                settings.standin_control,
                standin_stop.clone(),
            )));
            format!("http://{addr}")
        }
    };
    if let Some(client) = &settings.demo_client {
        load_demo(&db, client, settings.demo_accounts).await?;
        if embedded.is_some() {
            demo_key(&db, client, &settings.data_dir).await?;
        }
    }
    let registry = allegro_scheduler::billing::catalogue_registry(CoreAriaClient::lazy(&core_url)?);
    let clock = std::sync::Arc::new(allegro_scheduler::clock::SystemClock);
    let result = match server::start_on(db, &settings, registry, clock, shutdown).await {
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

/// Name of the demo client's operator key.
const DEMO_KEY_NAME: &str = "demo-operator";

/// Gives the demo client an operator key on first start and writes it to
/// `<data dir>/demo-operator.key`; prints how to use it.
async fn demo_key(
    db: &Db,
    client: &str,
    data_dir: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let path = data_dir.join("demo-operator.key");
    if !path.exists() {
        let mut conn = db.conn().await?;
        // A key whose file is gone cannot be shown again: replace it.
        for old in api_keys::list_by_client(&mut conn, client, false).await? {
            if old.name == DEMO_KEY_NAME {
                api_keys::revoke(&mut conn, client, &old.key_id, chrono::Utc::now()).await?;
            }
        }
        let issued = issue_key(
            &mut conn,
            &KeyRequest {
                client_id: client.to_string(),
                name: DEMO_KEY_NAME.to_string(),
                role: Role::Operator,
                scope: ClientScope::one(client),
                expire_time: None,
                created_by: "demo".to_string(),
            },
        )
        .await?;
        write_secret_file(&path, &issued.key)?;
    }
    tracing::info!(
        client,
        key_file = %path.display(),
        "demo operator key: call with -H \"authorization: Bearer $(cat {})\"",
        path.display()
    );
    Ok(())
}

/// Writes `key` to `path`, readable by its owner only.
fn write_secret_file(path: &Path, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(key.as_bytes())
}

/// `create-admin-key`: writes the key in the database, prints it once.
async fn create_admin_key(args: CreateAdminKey) -> Result<(), Box<dyn std::error::Error>> {
    let client = allegro_scheduler::scheduling::api::client_id(&args.client)?;
    let mut embedded = None;
    let url = match args.database_url {
        Some(url) => url,
        None => {
            let (dir, port) = (args.data_dir.clone(), args.embedded_pg_port);
            let pg = tokio::task::spawn_blocking(move || EmbeddedPg::start(&dir, port)).await??;
            let url = pg.database_url().await?;
            embedded = Some(pg);
            url
        }
    };
    let result = async {
        let db = Db::new(&url, 1)?;
        db.migrate().await?;
        let mut conn = db.conn().await?;
        let scope = if args.all_clients {
            ClientScope::All
        } else {
            ClientScope::one(&client)
        };
        let issued = issue_key(
            &mut conn,
            &KeyRequest {
                client_id: client.clone(),
                name: args.name.clone(),
                role: Role::Admin,
                scope,
                expire_time: None,
                created_by: "cli".to_string(),
            },
        )
        .await?;
        eprintln!(
            "created admin key {} ({:?}) for {}; it is shown only now:",
            issued.row.key_id,
            issued.row.name,
            issued.row.scope()
        );
        println!("{}", issued.key);
        Ok::<(), Box<dyn std::error::Error>>(())
    }
    .await;
    if let Some(pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await?;
    }
    result
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        },
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; shutting down on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("SIGINT: shutting down");
        }
    }
    shutdown.cancel();
}
