//! The embedded default database: when no `DATABASE_URL` is given, the
//! service initialises (once) and starts a private PostgreSQL cluster under
//! its data directory with the PostgreSQL binaries installed on the machine,
//! and stops it again on shutdown. The data survives restarts.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Name of the database the service uses inside the embedded cluster.
pub const DATABASE: &str = "allegro";

/// Why the embedded cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    /// No `initdb` was found.
    #[error(
        "no PostgreSQL server binaries found (looked in ALLEGRO_PG_BIN, /usr/lib/postgresql/*/bin \
         and PATH); install PostgreSQL (scripts/start.sh does) or set DATABASE_URL"
    )]
    NoBinaries,
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// What was run.
        command: String,
        /// What it printed.
        output: String,
    },
    /// File system trouble.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The database could not be created.
    #[error("creating database: {0}")]
    Connect(#[from] tokio_postgres::Error),
}

/// A running embedded cluster; [`EmbeddedPg::stop`] stops it.
pub struct EmbeddedPg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("ALLEGRO_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).or_else(|| {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").exists()))
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (the
/// server refuses to run as root).
fn run(bin: &Path, program: &str, args: &[&str]) -> Result<String, EmbeddedPgError> {
    let exe = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args);
    let out = cmd.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(EmbeddedPgError::Command {
            command: format!("{} {}", exe.display(), args.join(" ")),
            output: text,
        })
    }
}

impl EmbeddedPg {
    /// Initialises the cluster under `data_dir/pg` if needed, starts it on
    /// 127.0.0.1:`port` if it is not running, and creates the service's
    /// database. Blocking: call from a blocking context.
    pub fn start(data_dir: &Path, port: u16) -> Result<Self, EmbeddedPgError> {
        let bin = find_bin_dir().ok_or(EmbeddedPgError::NoBinaries)?;
        std::fs::create_dir_all(data_dir)?;
        let data = std::fs::canonicalize(data_dir)?.join("pg");
        let root = is_root();
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&data)?;
            if root {
                chown_postgres(&data)?;
            }
            tracing::info!(dir = %data.display(), "initialising embedded PostgreSQL cluster");
            run(
                &bin,
                "initdb",
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
            )?;
        }
        let pg = Self { bin, data, port };
        if run(
            &pg.bin,
            "pg_ctl",
            &["status", "-D", &pg.data.to_string_lossy()],
        )
        .is_err()
        {
            tracing::info!(port, "starting embedded PostgreSQL");
            let opts =
                format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''");
            let log = pg.data.join("server.log");
            run(
                &pg.bin,
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    &pg.data.to_string_lossy(),
                    "-l",
                    &log.to_string_lossy(),
                    "-o",
                    &opts,
                ],
            )?;
        }
        Ok(pg)
    }

    /// Creates the service's database if missing and returns its URL.
    pub async fn database_url(&self) -> Result<String, EmbeddedPgError> {
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
                .await?;
        }
        drop(client);
        let _ = driver.await;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{DATABASE}",
            self.port
        ))
    }

    /// Stops the cluster (fast shutdown). Blocking.
    pub fn stop(&self) {
        match run(
            &self.bin,
            "pg_ctl",
            &[
                "stop",
                "-m",
                "fast",
                "-w",
                "-D",
                &self.data.to_string_lossy(),
            ],
        ) {
            Ok(_) => tracing::info!("embedded PostgreSQL stopped"),
            Err(e) => tracing::warn!(error = %e, "stopping embedded PostgreSQL"),
        }
    }
}

fn chown_postgres(dir: &Path) -> Result<(), EmbeddedPgError> {
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(EmbeddedPgError::Command {
            command: format!("chown -R postgres {}", dir.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}
