//! A headless Chromium driven over WebDriver for the console's tests: one
//! chromedriver and ONE browser (one WebDriver session) for the whole test
//! binary. The browser tests take turns on it: each gets its own tab, with
//! the cookies of earlier turns gone, and closes it when done.
//!
//! Each `#[tokio::test]` runs on a runtime of its own that ends with it,
//! and a fantoccini session is a task on the runtime that created it. The
//! shared session is therefore created on a runtime of its own, on a
//! thread that lives as long as the binary; the tests only send it
//! commands (a [`Client`] is a channel to that task). It is ended when the
//! binary exits, so no Chromium outlives the tests.

use std::path::PathBuf;
use std::sync::{mpsc, Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MouseActions, PointerAction, MOUSE_BUTTON_LEFT,
};
use fantoccini::key::Key;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Mutex, MutexGuard, OnceCell};

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

/// The capabilities of the shared browser: headless Chromium (as root it
/// needs `--no-sandbox`) with its own profile directory.
fn capabilities(profile: &std::path::Path) -> serde_json::Map<String, Value> {
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
    caps
}

/// The browser of this test binary.
struct Shared {
    /// Commands to the session, which runs on the browser thread.
    client: Client,
    /// The session's first tab, kept open (closing a session's last window
    /// ends the session) and never used by a test.
    home: WindowHandle,
    /// One test at a time drives the browser.
    turn: Mutex<()>,
}

/// What ends the shared session when the binary exits: a signal to the
/// browser thread, and its answer once the session is closed.
static ENDING: StdMutex<Option<(oneshot::Sender<()>, mpsc::Receiver<()>)>> = StdMutex::new(None);

/// Called by the C runtime when the test binary exits (after the last
/// test, passed or failed): ends the WebDriver session, which quits
/// Chromium, before the chromedriver dies with the binary.
extern "C" fn end_shared_session() {
    let ending = ENDING.lock().ok().and_then(|mut e| e.take());
    if let Some((end, ended)) = ending {
        if end.send(()).is_ok() {
            let _ = ended.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// The shared browser, started on first use.
async fn shared() -> &'static Shared {
    static SHARED: OnceCell<Shared> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let (started_tx, started) = oneshot::channel();
            std::thread::Builder::new()
                .name("webdriver".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("the browser's runtime");
                    runtime.block_on(async move {
                        let profile = std::env::temp_dir()
                            .join(format!("allegro-chromium-{}", uuid::Uuid::new_v4()));
                        let client = ClientBuilder::new(HttpConnector::new())
                            .capabilities(capabilities(&profile))
                            .connect(webdriver_url())
                            .await
                            .expect("a WebDriver session");
                        let (end_tx, end) = oneshot::channel();
                        let (ended_tx, ended) = mpsc::channel();
                        *ENDING.lock().unwrap() = Some((end_tx, ended));
                        // SAFETY: registers a plain function without
                        // arguments to run at exit; it only uses channels.
                        #[allow(unsafe_code)]
                        unsafe {
                            libc::atexit(end_shared_session);
                        }
                        let _ = started_tx.send(client.clone());
                        // The session's task runs on this runtime until the
                        // binary exits.
                        let _ = end.await;
                        let _ = client.close().await;
                        let _ = std::fs::remove_dir_all(&profile);
                        let _ = ended_tx.send(());
                    });
                })
                .expect("the browser thread");
            let client = started.await.expect("the browser started");
            let home = client.window().await.expect("the first tab");
            Shared {
                client,
                home,
                turn: Mutex::new(()),
            }
        })
        .await
}

/// A test's turn on the shared browser: its own tab on the console at
/// `base`, signed out. Other browser tests wait until it is closed (or
/// dropped, when the test fails).
pub struct Browser {
    pub client: Client,
    pub base: String,
    home: WindowHandle,
    _turn: MutexGuard<'static, ()>,
}

impl Browser {
    /// Waits for the shared browser, then opens a new tab on the console at
    /// `addr`, with no cookie of an earlier turn (cookies belong to a host,
    /// not to a port: every test's console is on 127.0.0.1).
    pub async fn open(addr: std::net::SocketAddr) -> Self {
        let shared = shared().await;
        let turn = shared.turn.lock().await;
        let client = shared.client.clone();
        // Tabs a failed test left open (their pages still listen to a
        // stopped console).
        for window in client.windows().await.expect("the tabs") {
            if window != shared.home {
                client.switch_to_window(window).await.expect("switch tab");
                client.close_window().await.expect("close tab");
            }
        }
        let tab = client.new_window(true).await.expect("a new tab").handle;
        client
            .switch_to_window(tab)
            .await
            .expect("switch to the tab");
        let browser = Self {
            client,
            base: format!("http://{addr}"),
            home: shared.home.clone(),
            _turn: turn,
        };
        browser.goto("/signin").await;
        browser
            .client
            .delete_all_cookies()
            .await
            .expect("cookies deleted");
        browser
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

    /// Presses `key` on the element that has the focus, as a person at the
    /// keyboard would (key down, key up).
    pub async fn press(&self, key: Key) {
        let key: char = key.into();
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client
            .perform_actions(keys)
            .await
            .expect("key pressed");
    }

    /// Drags the element of `from` with the mouse and drops it on the
    /// upper part of the element of `to`, moving in small steps as a hand
    /// does (a drag starts only once the pointer has moved a little).
    pub async fn drag(&self, from: &str, to: &str) {
        let source = self
            .client
            .find(Locator::Css(from))
            .await
            .expect("the dragged element");
        let target = self
            .client
            .find(Locator::Css(to))
            .await
            .expect("the drop target");
        let step = Some(Duration::from_millis(50));
        let mut mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: source.clone(),
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            });
        for dy in [2.0, 5.0, 10.0] {
            mouse = mouse.then(PointerAction::MoveToElement {
                element: source.clone(),
                duration: step,
                x: 0.0,
                y: dy,
            });
        }
        for dy in [-8.0, -6.0, -4.0] {
            mouse = mouse.then(PointerAction::MoveToElement {
                element: target.clone(),
                duration: step,
                x: 0.0,
                y: dy,
            });
        }
        mouse = mouse.then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
        self.client.perform_actions(mouse).await.expect("dragged");
        let _ = self.client.release_actions().await;
    }

    /// Saves a screenshot `name.png` under [`screenshot_dir`].
    pub async fn shot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(screenshot_dir().join(format!("{name}.png")), png);
        }
    }

    /// Closes the tab and ends the turn (the browser stays for the next
    /// test).
    pub async fn close(self) {
        let _ = self.client.close_window().await;
        let _ = self.client.switch_to_window(self.home.clone()).await;
    }
}
