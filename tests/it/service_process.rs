//! The `allegro-scheduler` binary run as a child process, the way an
//! operator runs it: for what only a whole process shows (its tracing
//! subscriber, set once per process; its OTLP export on shutdown; the
//! embedded default database). It logs JSON lines on stderr, which the
//! tests read to learn its addresses.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running service process; killed when dropped, stopped gracefully by
/// [`ServiceProcess::stop`].
pub struct ServiceProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<serde_json::Value>,
    /// Every line logged so far, for failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Runs the binary with `args` (after `--log-format json`) and `envs`;
    /// `DATABASE_URL` and the variables of the test run that would change
    /// it are removed unless given.
    pub fn start(args: &[&str], envs: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_allegro-scheduler"));
        command
            .args(["--log-format", "json"])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start the service binary");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = stderr.next_line().await {
                kept.lock().unwrap().push(line.clone());
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        Self { child, lines, log }
    }

    /// The fields of the first line from now whose message is `message`
    /// (guard: `within`).
    pub async fn wait_for_log(&mut self, message: &str, within: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no log line {message:?} within {within:?}; log:\n{}",
                        self.log.lock().unwrap().join("\n")
                    )
                })
                .unwrap_or_else(|| {
                    panic!(
                        "the service ended before logging {message:?}; log:\n{}",
                        self.log.lock().unwrap().join("\n")
                    )
                });
            if line["fields"]["message"] == message {
                return line["fields"].clone();
            }
        }
    }

    /// The address a `message` line logs in its `addr` field.
    pub async fn logged_addr(&mut self, message: &str, within: Duration) -> std::net::SocketAddr {
        let fields = self.wait_for_log(message, within).await;
        fields["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("{message:?} without an address: {fields}"))
            .parse()
            .unwrap()
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("still running") as i32;
        let sent = terminate(pid);
        assert!(sent, "SIGTERM sent");
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("the service stops within two minutes of SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "the service exited with {status}; log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }
}

/// Sends SIGTERM to `pid` with the `kill` command.
fn terminate(pid: i32) -> bool {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
