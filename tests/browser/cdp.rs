//! A headless Chromium driven over the DevTools protocol (CDP) on its WebSocket: navigate,
//! reload, evaluate a script (awaiting its promise) and take a screenshot. What the web device's
//! tests need (`tests/service/web.rs`), nothing more.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A Chromium of its own (profile directory, process), attached to its one page; killed when
/// dropped.
pub(crate) struct Chromium {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next: u64,
    child: Child,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts `binary` headless on an empty page, with a new profile.
    pub(crate) fn launch(binary: &Path) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args(super::HEADLESS)
            .args(["--remote-debugging-port=0", "--window-size=1200,900"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("chromium ended before it listened")
                .unwrap();
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                break url.trim().to_owned();
            }
        };
        // Chromium goes on writing to stderr: drained, or it would block on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let (socket, _) = tungstenite::connect(url.as_str()).unwrap();
        let mut browser = Self {
            socket,
            session: String::new(),
            next: 0,
            child,
            _profile: profile,
        };
        let targets = browser.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page")["targetId"]
            .clone();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser
    }

    /// Sends a command (to the page once attached) and returns its result; panics on an error.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut command = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            let message: Value = serde_json::from_str(text.as_str()).unwrap();
            if message["id"] == id {
                assert!(
                    message.get("error").is_none(),
                    "{method}: {}",
                    message["error"]
                );
                return message["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise): its value, or the message of
    /// what it threw.
    pub(crate) fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        match result.get("exceptionDetails") {
            Some(details) => Err(details["exception"]["description"]
                .as_str()
                .map_or_else(|| details.to_string(), str::to_owned)),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Evaluates `expression` until it is `true` or `limit` passes; whether it became true.
    pub(crate) fn wait_for(&mut self, expression: &str, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.eval(expression) == Ok(Value::Bool(true)) {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Opens `url` and waits until its document has loaded.
    pub(crate) fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        assert!(
            self.wait_for(
                "document.readyState === 'complete' && location.href !== 'about:blank'",
                Duration::from_secs(30)
            ),
            "{url} did not load"
        );
    }

    /// Reloads the page and waits until its document has loaded again.
    pub(crate) fn reload(&mut self) {
        self.eval("window.__before_reload = true").unwrap();
        self.call("Page.reload", json!({"ignoreCache": true}));
        assert!(
            self.wait_for(
                "document.readyState === 'complete' && !window.__before_reload",
                Duration::from_secs(30)
            ),
            "the page did not reload"
        );
    }

    /// A PNG of the page as it is shown.
    pub(crate) fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
