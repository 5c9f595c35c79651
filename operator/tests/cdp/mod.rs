//! A small Chrome DevTools Protocol client for the overview's browser test: starts Debian's
//! `chromium` headless, opens one page, and sends commands over its websocket.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long one command or page load may take.
const STEP: Duration = Duration::from_secs(20);

/// A headless chromium and one of its pages.
pub struct Browser {
    child: Child,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    events: Vec<Value>,
    _profile: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts chromium with a fresh profile and a 1280x800 window, and opens a blank page.
    pub async fn start() -> Self {
        let profile = std::env::temp_dir().join(format!("hort-chromium-{}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--metrics-recording-only",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run chromium ({e}); install it with scripts/install-chromium.sh"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_url = rx.recv_timeout(STEP).expect("chromium printed its DevTools address");
        let (mut browser, _) = tokio_tungstenite::connect_async(&browser_url).await.unwrap();
        let base = browser_url.split("/devtools/").next().unwrap().to_string();
        // The page chromium opened with about:blank.
        browser
            .send(Message::text(
                json!({"id": 1, "method": "Target.getTargets"}).to_string(),
            ))
            .await
            .unwrap();
        let target = loop {
            let msg = tokio::time::timeout(STEP, browser.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let value: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            if value["id"] == 1 {
                let infos = value["result"]["targetInfos"].as_array().unwrap().clone();
                let page = infos.iter().find(|t| t["type"] == "page").expect("a page target");
                break page["targetId"].as_str().unwrap().to_string();
            }
        };
        let (page, _) = tokio_tungstenite::connect_async(format!("{base}/devtools/page/{target}"))
            .await
            .unwrap();
        let mut browser = Self {
            child,
            page,
            next_id: 1,
            events: Vec::new(),
            _profile: TempDir(profile),
        };
        browser.call("Page.enable", json!({})).await;
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// Sends command `method` and returns its result; panics on a protocol error.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.page.send(Message::text(msg)).await.unwrap();
        loop {
            let value = self.read().await;
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {}", value["error"]);
                return value["result"].clone();
            }
            self.events.push(value);
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(STEP, self.page.next())
                .await
                .expect("chromium answers")
                .expect("the page's websocket is open")
                .unwrap();
            if let Message::Text(text) = msg {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Waits for the next `Page.loadEventFired`, dropping earlier events.
    async fn loaded(&mut self) {
        if let Some(i) = self.events.iter().position(|e| e["method"] == "Page.loadEventFired") {
            self.events.drain(..=i);
            return;
        }
        self.events.clear();
        while self.read().await["method"] != "Page.loadEventFired" {}
    }

    /// Opens `url` and waits until it is loaded.
    pub async fn goto(&mut self, url: &str) {
        self.events.clear();
        let result = self.call("Page.navigate", json!({"url": url})).await;
        assert!(result["errorText"].is_null(), "{url}: {}", result["errorText"]);
        self.loaded().await;
    }

    /// Evaluates `script` in the page and returns its value.
    pub async fn eval(&mut self, script: &str) -> Value {
        let result = self
            .call("Runtime.evaluate", json!({"expression": script, "returnByValue": true}))
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{script}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `script`, which makes the page navigate (e.g. submits a form), and waits until
    /// the next page is loaded.
    pub async fn eval_and_wait(&mut self, script: &str) {
        self.events.clear();
        self.eval(script).await;
        self.loaded().await;
    }

    /// A PNG of the page as shown (1280x800).
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let result = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
