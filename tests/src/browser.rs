//! A real, headless Chromium driven through chromedriver, for the
//! dashboard's tests. [`Browser::start`] returns `None` (after printing why)
//! where Debian's `chromium` and `chromium-driver` are not installed, and
//! fails under `CI=true`. Browser tests of one test binary take turns: two
//! Chromiums at once on a small machine make every wait flaky.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::proxy::TempDir;
use crate::services::unavailable;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a wait for an element lasts before the test fails naming it.
pub const ELEMENT_TIMEOUT: Duration = Duration::from_secs(10);

fn turn() -> Arc<Mutex<()>> {
    static TURN: OnceLock<Arc<Mutex<()>>> = OnceLock::new();
    TURN.get_or_init(|| Arc::new(Mutex::new(()))).clone()
}

/// A browser session, its chromedriver and where its screenshots go.
pub struct Browser {
    pub client: Client,
    driver_url: String,
    session: String,
    test: String,
    driver: Child,
    profile: TempDir,
    _turn: OwnedMutexGuard<()>,
}

impl Browser {
    /// A fresh headless Chromium at `width`x`height`, or `None` when the
    /// browser is not installed here.
    pub async fn start(test: &str, width: u32, height: u32) -> Option<Self> {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            if !std::path::Path::new(path).exists() {
                unavailable(
                    test,
                    &format!("{path} is not installed (apt-get install -y {package})"),
                );
                return None;
            }
        }
        let turn = turn().lock_owned().await;
        let port = free_port();
        // A process group of its own: dropping the browser ends chromedriver
        // and every Chromium process it started, not chromedriver alone.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        wait_until_ready(&driver_url).await;
        let profile = TempDir::new();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let capabilities: serde_json::Map<String, Value> =
            serde_json::from_value(capabilities).expect("capabilities are an object");
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("open a Chromium session through chromedriver");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        Some(Self {
            client,
            driver_url,
            session,
            test: test.to_owned(),
            driver,
            profile,
            _turn: turn,
        })
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The element matching `css`, waiting for it to appear; a test that
    /// never sees it fails naming `what` (and leaves a screenshot).
    pub async fn wait_for(&self, css: &str, what: &str) -> Element {
        self.wait_for_within(css, what, ELEMENT_TIMEOUT).await
    }

    /// Clicks the element matching `css` once it appears.
    pub async fn click(&self, css: &str, what: &str) {
        self.wait_for(css, what)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {what} (`{css}`): {e}"));
    }

    /// Types `text` into the element matching `css` once it appears.
    pub async fn type_into(&self, css: &str, what: &str, text: &str) {
        self.wait_for(css, what)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {what} (`{css}`): {e}"));
    }

    /// [`Browser::wait_for`] with its own time limit.
    pub async fn wait_for_within(&self, css: &str, what: &str, limit: Duration) -> Element {
        let started = Instant::now();
        loop {
            if let Ok(found) = self.client.find(Locator::Css(css)).await {
                return found;
            }
            if started.elapsed() > limit {
                let shot = self.screenshot("missing").await;
                panic!(
                    "the page shows no {what} (`{css}`) after {limit:?}; screenshot: {}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element matching `css` has text containing `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str, what: &str) -> String {
        let started = Instant::now();
        loop {
            if let Ok(found) = self.client.find(Locator::Css(css)).await
                && let Ok(shown) = found.text().await
                && shown.contains(text)
            {
                return shown;
            }
            if started.elapsed() > ELEMENT_TIMEOUT {
                let shot = self.screenshot("missing").await;
                panic!(
                    "{what} (`{css}`) never showed {text:?} within {ELEMENT_TIMEOUT:?}; screenshot: {}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("run a script in the page")
    }

    /// Saves a screenshot under the target directory, named after the test
    /// and `label`; returns its path.
    pub async fn screenshot(&self, label: &str) -> PathBuf {
        let dir = screenshot_dir();
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}-{label}.png", self.test));
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(&path, png);
        }
        path
    }

    /// Asks the page to render as the system's dark (or light) scheme would.
    pub async fn prefer_color_scheme(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let url = format!(
            "{}/session/{}/goog/cdp/execute",
            self.driver_url, self.session
        );
        reqwest::Client::new()
            .post(url)
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("a DevTools command through chromedriver")
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    /// Console messages of level SEVERE (errors) since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let url = format!("{}/session/{}/se/log", self.driver_url, self.session);
        let logs: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("read the browser's console log")
            .json()
            .await
            .unwrap_or(Value::Null);
        logs["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `<target dir>/dashboard-screenshots`: beside the binary's profile directory.
pub fn screenshot_dir() -> PathBuf {
    let bin = crate::conclave_bin();
    bin.parent()
        .and_then(std::path::Path::parent)
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf)
        .join("dashboard-screenshots")
}

impl Drop for Browser {
    /// Ends chromedriver's process group and the Chromium it started (which
    /// runs in a session of its own, found by its profile directory), so no
    /// browser outlives its test.
    fn drop(&mut self) {
        let mut kills = vec![vec![
            "-KILL".to_owned(),
            "-f".to_owned(),
            self.profile.path().display().to_string(),
        ]];
        if let Some(pid) = self.driver.id() {
            kills.push(vec!["-KILL".to_owned(), "-g".to_owned(), pid.to_string()]);
        }
        for args in kills {
            let _ = std::process::Command::new("pkill")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn wait_until_ready(driver_url: &str) {
    let started = Instant::now();
    let client = reqwest::Client::new();
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(r) = client.get(format!("{driver_url}/status")).send().await
            && let Ok(status) = r.json::<Value>().await
            && status["value"]["ready"] == true
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not become ready at {driver_url}");
}
