//! The README works as written: every `grpcurl` command in it is run, in
//! order, against the service started the way the README's start command
//! (`scripts/start.sh`) starts it on the embedded default.
//!
//! The service is the binary itself with `DATABASE_URL` unset and the
//! variables `scripts/start.sh` sets (`ALLEGRO_DEMO_CLIENT=demo`,
//! `ALLEGRO_STANDIN_CONTROL=true`): it initialises and starts its private
//! PostgreSQL cluster, loads the demo ledger and schedule and writes the demo
//! operator key, exactly as for an operator. Only the places differ, so the
//! test never meets another service on the machine: a temporary data
//! directory instead of `.allegro-data/`, a free port for the cluster, and
//! port 0 for the listeners; the README's `localhost:50051` and
//! `localhost:50052` are read as the gRPC and stand-in addresses the
//! service logged. The script itself is not run: it would build a release
//! binary (`cargo run --release`), which a test run cannot afford.
//!
//! grpcurl is not a Debian package (and its PyPI wrapper downloads it), so
//! the commands are replayed by a small grpcurl in Rust ([`grpc`]): the
//! README's shell ([`shell`]: quotes, continuation lines, the variables it
//! defines, `$(cat ...)`, `$(date -u +%F)`, and the `jq` filters it pipes
//! into), then each method and message resolved through the server's
//! reflection service and the JSON request decoded in the proto3 mapping,
//! unknown fields refused. Placeholders are resolved as the README says:
//! `<admin key>` is the key the README's `create-admin-key` command
//! printed (run before the service starts, on the fresh install), `<id>` the
//! `configId` the last CreateJobScheduleConfig answered, `<key id>` the
//! `keyId` of the last CreateApiKey, `<sequence>` the last `sequence` a
//! status stream sent. After an execution action the replay waits until
//! the execution no longer runs, as a reader would before the next
//! command. A command that does not parse, names an unknown method or
//! field, leaves a placeholder unresolved or answers anything but OK fails
//! the test; so does a README without grpcurl commands.

mod grpc;
mod shell;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::Channel;

use crate::service_process::ServiceProcess;
use shell::{Part, Pipeline, Word};

/// Commands in the README that the replay does not run, and why.
fn not_replayed(program: &str, args: &[String]) -> Option<&'static str> {
    match program {
        "scripts/start.sh" => Some("the replay's service is started as it starts one"),
        "scripts/test.sh" => Some("the test suite itself"),
        "cargo" if args.first().map(String::as_str) == Some("bench") => Some("a benchmark"),
        "cargo" if args.iter().any(|a| a == "create-admin-key") => {
            Some("run before the service starts, on the fresh install")
        }
        _ => None,
    }
}

/// The state of one replay.
struct Replay {
    vars: HashMap<String, String>,
    data_dir: PathBuf,
    grpc_addr: SocketAddr,
    standin_addr: SocketAddr,
    channels: HashMap<SocketAddr, Channel>,
    placeholders: HashMap<&'static str, String>,
    grpcurl_commands: usize,
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

impl Replay {
    /// A word expanded: variables, command substitutions, placeholders.
    fn expand<'a>(&'a mut self, word: &'a Word) -> Boxed<'a, Result<String, String>> {
        Box::pin(async move {
            let mut out = String::new();
            for part in &word.0 {
                match part {
                    Part::Lit(text) => out.push_str(text),
                    Part::Var(name) => out.push_str(
                        self.vars
                            .get(name)
                            .ok_or_else(|| format!("${name} is not defined before its use"))?,
                    ),
                    Part::Subst(inner) => {
                        let lines = shell::parse(inner, 0)?;
                        let [pipeline] = lines.as_slice() else {
                            return Err(format!("$({inner}) is not one command"));
                        };
                        let output = self.run(pipeline, true).await?;
                        out.push_str(output.trim_end_matches('\n'));
                    }
                }
            }
            Ok(out)
        })
    }

    fn resolve_placeholders(&self, text: &str) -> Result<String, String> {
        let mut text = text.to_string();
        for (name, value) in &self.placeholders {
            text = text.replace(name, value);
        }
        if let Some(start) = text.find('<') {
            if let Some(len) = text[start..].find('>') {
                let candidate = &text[start..=start + len];
                if candidate[1..len]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == ' ')
                {
                    return Err(format!(
                        "placeholder {candidate} has no value yet (not answered earlier)"
                    ));
                }
            }
        }
        Ok(text)
    }

    /// Runs a command line; its output (grpcurl's answers, `cat`'s file).
    /// Only `capture`d lines (substitutions) may be `cat`, `date` or piped.
    fn run<'a>(
        &'a mut self,
        line: &'a Pipeline,
        capture: bool,
    ) -> Boxed<'a, Result<String, String>> {
        Box::pin(async move {
            let mut input: Option<String> = None;
            for (index, stage) in line.stages.iter().enumerate() {
                let mut words = stage.as_slice();
                let mut env = Vec::new();
                while let Some((name, value)) = words.first().and_then(Word::assignment) {
                    env.push((name, value));
                    words = &words[1..];
                }
                if words.is_empty() {
                    if line.stages.len() > 1 || capture {
                        return Err("an assignment inside a pipeline".into());
                    }
                    for (name, value) in env {
                        let value = self.expand(&value).await?;
                        self.vars.insert(name, value);
                    }
                    return Ok(String::new());
                }
                let mut args = Vec::new();
                for word in words {
                    let arg = self.expand(word).await?;
                    args.push(arg);
                }
                let program = args.remove(0);
                let output = match (program.as_str(), index) {
                    ("grpcurl", 0) => self.grpcurl(&args).await?,
                    ("cat", 0) if args.len() == 1 => {
                        let path = self.local_path(&args[0]);
                        std::fs::read_to_string(&path)
                            .map_err(|e| format!("cat {}: {e}", path.display()))?
                    }
                    ("date", 0) if args == ["-u", "+%F"] => {
                        format!("{}\n", chrono::Utc::now().date_naive())
                    }
                    ("jq", i) if i > 0 && args.len() == 2 && args[0] == "-r" => {
                        let json: serde_json::Value =
                            serde_json::from_str(input.as_deref().unwrap_or_default())
                                .map_err(|e| format!("jq input is not JSON: {e}"))?;
                        let mut out = String::new();
                        for value in shell::jq(&args[1], &json)? {
                            match value {
                                serde_json::Value::String(s) => out.push_str(&s),
                                other => out.push_str(&other.to_string()),
                            }
                            out.push('\n');
                        }
                        out
                    }
                    (program, 0) if !capture && line.stages.len() == 1 => {
                        match not_replayed(program, &args) {
                            Some(why) => {
                                println!("-- not replayed ({why}): {}", line.text);
                                String::new()
                            }
                            None => {
                                return Err(format!(
                                    "`{program}` is not a command the replay knows"
                                ))
                            }
                        }
                    }
                    (program, _) => {
                        return Err(format!("`{program}` is not supported in this position"))
                    }
                };
                input = Some(output);
            }
            Ok(input.unwrap_or_default())
        })
    }

    /// `.allegro-data/...` is the replay's data directory.
    fn local_path(&self, path: &str) -> PathBuf {
        match path.strip_prefix(".allegro-data/") {
            Some(rest) => self.data_dir.join(rest),
            None => PathBuf::from(path),
        }
    }

    async fn channel(&mut self, address: &str) -> Result<Channel, String> {
        let addr = match address {
            "localhost:50051" | "127.0.0.1:50051" => self.grpc_addr,
            "localhost:50052" | "127.0.0.1:50052" => self.standin_addr,
            other => return Err(format!("unknown address {other}")),
        };
        if let Some(channel) = self.channels.get(&addr) {
            return Ok(channel.clone());
        }
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect to {address}: {e}"))?;
        self.channels.insert(addr, channel.clone());
        Ok(channel)
    }

    /// grpcurl's flags that the README uses, `list`, `describe` and calls.
    async fn grpcurl(&mut self, args: &[String]) -> Result<String, String> {
        self.grpcurl_commands += 1;
        let mut headers = Vec::new();
        let mut data = None;
        let mut emit_defaults = false;
        let mut positional = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-plaintext" | "-format-error" => {}
                "-emit-defaults" => emit_defaults = true,
                "-H" => {
                    let header =
                        self.resolve_placeholders(args.next().ok_or("-H without a value")?)?;
                    let (name, value) = header
                        .split_once(':')
                        .ok_or_else(|| format!("-H {header:?} is not `name: value`"))?;
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
                "-d" => {
                    data =
                        Some(self.resolve_placeholders(args.next().ok_or("-d without a value")?)?)
                }
                flag if flag.starts_with('-') => {
                    return Err(format!("unknown grpcurl flag {flag}"))
                }
                _ => positional.push(arg.clone()),
            }
        }
        let Some((address, rest)) = positional.split_first() else {
            return Err("grpcurl without an address".into());
        };
        let channel = self.channel(address).await?;
        match rest {
            [list] if list == "list" => Ok(grpc::list_services(&channel).await?.join("\n") + "\n"),
            [describe, symbol] if describe == "describe" => {
                let pool = grpc::pool_for(&channel, symbol).await?;
                match pool.get_service_by_name(symbol) {
                    Some(service) => Ok(format!(
                        "{} is a service with {} methods\n",
                        symbol,
                        service.methods().len()
                    )),
                    None => Err(format!("describe: no service {symbol}")),
                }
            }
            [method] => {
                let method = grpc::method(&channel, method).await?;
                let request = grpc::request(&method, data.as_deref().unwrap_or("{}"))?;
                let answers =
                    grpc::call(&channel, &method, request, &headers, Duration::from_secs(2))
                        .await
                        .map_err(|s| {
                            format!("{} answered {:?}: {}", method.name(), s.code(), s.message())
                        })?;
                let mut out = String::new();
                for answer in &answers {
                    let json = grpc::answer_json(answer, emit_defaults);
                    self.remember(method.name(), &json);
                    out.push_str(&serde_json::to_string_pretty(&json).unwrap_or_default());
                    out.push('\n');
                }
                if is_action(method.name()) {
                    let request: serde_json::Value =
                        serde_json::from_str(data.as_deref().unwrap_or("{}")).unwrap_or_default();
                    grpc::wait_until_settled(&channel, &headers, &request).await?;
                }
                Ok(out)
            }
            other => Err(format!("grpcurl {other:?} is not understood")),
        }
    }

    /// Keeps what later placeholders refer to.
    fn remember(&mut self, method: &str, answer: &serde_json::Value) {
        let keep = |key: &str| answer[key].as_str().map(str::to_string);
        match method {
            "CreateJobScheduleConfig" => {
                if let Some(id) = keep("configId") {
                    self.placeholders.insert("<id>", id);
                }
            }
            "CreateApiKey" => {
                if let Some(id) = answer["apiKey"]["keyId"]
                    .as_str()
                    .or_else(|| answer["keyId"].as_str())
                {
                    self.placeholders.insert("<key id>", id.to_string());
                }
            }
            "WatchExecutions" => {
                if let Some(sequence) = keep("sequence") {
                    self.placeholders.insert("<sequence>", sequence);
                }
            }
            _ => {}
        }
    }
}

/// The execution actions, after which a reader waits for the work to end.
fn is_action(method: &str) -> bool {
    matches!(
        method,
        "ProcessExecution" | "ReprocessExecution" | "RetryJob" | "TriggerJob" | "ResetExecution"
    )
}

/// A free port on loopback (for the embedded cluster, which cannot take
/// port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The README's `create-admin-key` commands, run against the fresh data
/// directory before the service starts; the last key printed.
async fn create_admin_keys(lines: &[Pipeline], data_dir: &Path, port: u16) -> Option<String> {
    let mut key = None;
    for line in lines {
        let words: Vec<String> = line.stages[0].iter().filter_map(Word::literal).collect();
        let Some(at) = words.iter().position(|w| w == "create-admin-key") else {
            continue;
        };
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_allegro-scheduler"))
            .args(&words[at..])
            .env_remove("DATABASE_URL")
            .env("ALLEGRO_DATA_DIR", data_dir)
            .env("ALLEGRO_EMBEDDED_PG_PORT", port.to_string())
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "README line {}: {}\n{}",
            line.line,
            line.text,
            String::from_utf8_lossy(&output.stderr)
        );
        key = Some(String::from_utf8_lossy(&output.stdout).trim().to_string());
    }
    key
}

/// The replay's data directory (in place of `.allegro-data/`); dropping it
/// stops an embedded cluster still running there (its service was killed)
/// and removes it.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("allegro-readme-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let pid_file = self.0.join("pg").join("postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_string))
        {
            // Fast shutdown of the orphaned postmaster.
            let _ = std::process::Command::new("kill")
                .args(["-INT", pid.trim()])
                .status();
            std::thread::sleep(Duration::from_secs(1));
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn every_grpcurl_command_of_the_readme_works_as_written() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let mut lines = Vec::new();
    for (first_line, block) in shell::code_blocks(&readme) {
        match shell::parse(&block, first_line) {
            Ok(parsed) => lines.extend(parsed),
            Err(e) => panic!("README block at line {first_line} does not parse: {e}"),
        }
    }

    // Declared before the service: dropped after it, so a failed run
    // stops the cluster the killed service left and removes its data.
    let data = DataDir::new();
    let data_dir = data.0.clone();
    let pg_port = free_port();
    let admin_key = create_admin_keys(&lines, &data_dir, pg_port)
        .await
        .expect("the README shows how to create the first admin key");
    let data_path = data_dir.to_string_lossy().to_string();
    let port = pg_port.to_string();
    let mut service = ServiceProcess::start(
        &[
            "serve",
            "--data-dir",
            &data_path,
            "--embedded-pg-port",
            &port,
            "--listen",
            "127.0.0.1:0",
            "--standin-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[
            ("ALLEGRO_DEMO_CLIENT", "demo".to_string()),
            ("ALLEGRO_STANDIN_CONTROL", "true".to_string()),
        ],
    );
    let within = Duration::from_secs(300);
    let standin_addr = service
        .logged_addr("serving the core Aria stand-in", within)
        .await;
    let grpc_addr = service.logged_addr("serving gRPC", within).await;

    let mut replay = Replay {
        vars: HashMap::new(),
        data_dir: data_dir.clone(),
        grpc_addr,
        standin_addr,
        channels: HashMap::new(),
        placeholders: HashMap::from([("<admin key>", admin_key)]),
        grpcurl_commands: 0,
    };
    let mut failures = Vec::new();
    for line in &lines {
        println!("$ {}", line.text);
        match replay.run(line, false).await {
            Ok(output) => print!("{output}"),
            Err(e) => {
                println!("FAILED: {e}");
                failures.push(format!(
                    "README line {}: {}\n  -> {e}",
                    line.line, line.text
                ));
            }
        }
    }
    let commands = replay.grpcurl_commands;
    drop(replay);
    service.stop().await;
    drop(data);
    assert!(commands >= 20, "only {commands} grpcurl commands found");
    assert!(
        failures.is_empty(),
        "{} README commands failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
