//! A headless Chromium driven over WebDriver for the console's tests: one
//! chromedriver per test binary (started on first use, or the one named by
//! `ALLEGRO_WEBDRIVER_URL`), a browser session per test.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// The chromedriver of this test binary: the URL given by
/// `ALLEGRO_WEBDRIVER_URL`, else one started here (ended with the binary).
fn webdriver_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("ALLEGRO_WEBDRIVER_URL") {
            return url;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let (tx, rx) = std::sync::mpsc::channel();
        // Spawned from a thread that lives as long as the binary: the
        // driver is told to die with the thread that started it.
        std::thread::spawn(move || {
            use std::os::unix::process::CommandExt;
            let mut command = std::process::Command::new("chromedriver");
            command
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            // SAFETY: prctl is async-signal-safe; nothing else runs in
            // the child before exec.
            // The driver dies with the test process (no orphan Chromium).
            #[allow(unsafe_code)]
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command.spawn();
            let _ = tx.send(child.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if let Ok(mut child) = child {
                let _ = child.wait();
            }
        });
        rx.recv()
            .expect("chromedriver thread")
            .expect("chromedriver runs (scripts/test.sh installs the chromium-driver package)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("http://127.0.0.1:{port}")
    })
}

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// One browser session on a console.
pub struct Browser {
    pub client: Client,
    pub base: String,
    profile: PathBuf,
}

impl Browser {
    /// A fresh headless Chromium (its own profile) on the console at `addr`.
    pub async fn open(addr: std::net::SocketAddr) -> Self {
        let profile =
            std::env::temp_dir().join(format!("allegro-chromium-{}", uuid::Uuid::new_v4()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(webdriver_url())
            .await
            .expect("a WebDriver session");
        Self {
            client,
            base: format!("http://{addr}"),
            profile,
        }
    }

    /// Opens a console path.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    /// The path of the page shown.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_string()
    }

    /// Runs a script and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("script runs")
    }

    /// Waits until `script` returns true (a live page may take its time).
    pub async fn until(&self, what: &str, script: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.client.execute(script, vec![]).await.ok() == Some(Value::Bool(true)) {
                return;
            }
            if Instant::now() > deadline {
                self.shot(&format!("timeout-{}", what.replace(' ', "-")))
                    .await;
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element of a CSS selector (found again on each try: a live
    /// page swaps its elements).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await.is_ok(),
                Err(_) => false,
            };
            if clicked {
                return;
            }
            assert!(Instant::now() < deadline, "could not click {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the field of a CSS selector, replacing its text (found
    /// again on each try, as [`Browser::click`]).
    pub async fn type_into(&self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(field) = self.client.find(Locator::Css(css)).await {
                if field.clear().await.is_ok() && field.send_keys(text).await.is_ok() {
                    let typed = field.prop("value").await.ok().flatten();
                    if typed.as_deref() == Some(text) {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "could not type into {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot `name.png` under [`screenshot_dir`].
    pub async fn shot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(screenshot_dir().join(format!("{name}.png")), png);
        }
    }

    /// Ends the session and its browser.
    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
