//! A minimal [W3C WebDriver](https://www.w3.org/TR/webdriver2/) client, over
//! `ureq`, driving Debian's `chromedriver` and a headless Chromium.
//!
//! Only what the dashboard tests need: open a page, find elements by CSS
//! selector (waiting for them), read their text and attributes, click them,
//! run a script, take a screenshot. Every call panics with a message saying
//! what it was doing, so a failing test reads as a sentence.
//!
//! Nothing but `127.0.0.1` is ever addressed: `chromedriver` listens on a
//! free loopback port and only accepts local connections.
//!
//! ```no_run
//! use sluice_tests::browser::Browser;
//! use std::time::Duration;
//!
//! let browser = Browser::start();
//! browser.goto("http://127.0.0.1:4040/");
//! browser.find("#start").click();
//! browser.wait_until(Duration::from_secs(30), "the heading to say hello", |b| {
//!     b.find("h1").text() == "hello"
//! });
//! ```

use serde_json::{Value, json};
use std::cell::RefCell;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key under which WebDriver passes an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long [`Browser::find`] waits for an element, unless told otherwise
/// with [`Browser::set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Debian puts `chromedriver` when it is not on `PATH`.
const DRIVER_PLACES: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

/// Where Debian puts Chromium when it is not on `PATH`: the program itself
/// first (`/usr/bin/chromium` is a shell wrapper around it).
const CHROMIUM_PLACES: &[&str] = &[
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
];

/// The arguments Chromium runs with: headless, no sandbox (containers
/// have no user namespaces), a tall window so a screenshot shows most of a
/// page.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
];

/// An error WebDriver answered with: its HTTP status, its error code
/// (`no such element`, `stale element reference`, ...) and its message.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The WebDriver error code, e.g. `no such element`.
    pub error: String,
    /// What the driver said about it.
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The first line only: Chromium appends a long native stack trace.
        let message = self.message.lines().next().unwrap_or_default();
        write!(f, "{} (HTTP {}): {message}", self.error, self.status)
    }
}

/// A headless Chromium driven through `chromedriver`: one WebDriver
/// session. Dropping it ends the session and the driver.
pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT`, where `chromedriver` listens.
    driver_base: String,
    /// The session's id.
    session: String,
    agent: ureq::Agent,
    timeout: Duration,
    /// Holds `chromedriver`'s log while the browser lives.
    log_dir: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port and opens a headless
    /// Chromium session in it.
    ///
    /// Panics if `chromedriver` or Chromium cannot be found, or if the
    /// driver does not become ready or refuses the session (with the tail
    /// of its log).
    pub fn start() -> Browser {
        let driver_path = find_program("chromedriver", DRIVER_PLACES).unwrap_or_else(|| {
            panic!(
                "chromedriver not found: install Debian's `chromium` and `chromium-driver` (`.ci/run` does)"
            )
        });
        let chromium = find_program("chromium", CHROMIUM_PLACES).unwrap_or_else(|| {
            panic!(
                "chromium not found: install Debian's `chromium` and `chromium-driver` (`.ci/run` does)"
            )
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let log_dir = tempfile::tempdir().expect("a directory for chromedriver's log");
        let log = log_dir.path().join("chromedriver.log");

        // The port is free when we look; if someone takes it before the
        // driver binds it, the driver exits and we try another one.
        let mut tries = 0;
        let (driver, driver_base) = loop {
            tries += 1;
            let port = free_port();
            let mut driver = Command::new(&driver_path)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=")
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_path.display()));
            let base = format!("http://127.0.0.1:{port}");
            match wait_ready(&agent, &base, &mut driver, Duration::from_secs(30)) {
                Ok(()) => break (driver, base),
                Err(why) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    assert!(
                        tries < 3,
                        "chromedriver on port {port} never became ready: {why}\n{}",
                        log_tail(&log)
                    );
                }
            }
        };

        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": CHROMIUM_ARGS,
                    }
                }
            }
        });
        let mut browser = Browser {
            driver,
            driver_base,
            session: String::new(),
            agent,
            timeout: DEFAULT_TIMEOUT,
            log_dir,
        };
        let created = browser
            .raw("POST", "/session", Some(capabilities))
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver refused a session with {}: {e}\n{}",
                    chromium.display(),
                    log_tail(&browser.log_path())
                )
            });
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a new session without an id: {created}"))
            .to_string();
        browser
    }

    /// Sets how long [`Browser::find`] waits for an element to appear.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Opens `url` (which must be on `127.0.0.1`) and waits for it to load.
    pub fn goto(&self, url: &str) {
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("http://127.0.0.1/"),
            "the test browser only opens pages on 127.0.0.1, not {url}"
        );
        self.command(
            "POST",
            "/url",
            Some(json!({ "url": url })),
            &format!("open {url}"),
        );
    }

    /// The address of the page the browser shows.
    pub fn url(&self) -> String {
        self.command("GET", "/url", None, "read the page's address")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching the CSS selector `css`, waiting (polling)
    /// for one to exist for up to the browser's timeout.
    pub fn find(&self, css: &str) -> Element<'_> {
        let started = Instant::now();
        loop {
            match self.try_find(css) {
                Ok(Some(element)) => return element,
                Ok(None) => {}
                Err(e) => panic!("looking for `{css}`: {e}"),
            }
            assert!(
                started.elapsed() < self.timeout,
                "waited {:?} for an element matching `{css}` on {}; none appeared",
                self.timeout,
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every element matching `css` now (perhaps none): no waiting.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self
            .session_call("POST", "/elements", Some(by_css(css)))
            .unwrap_or_else(|e| panic!("looking for all of `{css}`: {e}"));
        found
            .as_array()
            .unwrap_or_else(|| panic!("`{css}`: elements answered {found}"))
            .iter()
            .enumerate()
            .map(|(index, e)| Element::new(self, css, index, element_id(e)))
            .collect()
    }

    /// The first element matching `css` if there is one now.
    fn try_find(&self, css: &str) -> Result<Option<Element<'_>>, WebDriverError> {
        match self.session_call("POST", "/element", Some(by_css(css))) {
            Ok(e) => Ok(Some(Element::new(self, css, 0, element_id(&e)))),
            Err(e) if e.error == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `script` (a function body: `return ...` gives the value) in the
    /// page, synchronously, with `args` as `arguments`, and returns what it
    /// returned. Panics if it throws.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
            &format!("run the script `{}`", one_line(script)),
        )
    }

    /// Saves a PNG screenshot of the browser's window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.command("GET", "/screenshot", None, "take a screenshot");
        let encoded = encoded
            .as_str()
            .unwrap_or_else(|| panic!("a screenshot that is not a string: {encoded:.200}"));
        let png = decode_base64(encoded).unwrap_or_else(|e| panic!("the screenshot: {e}"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Waits until `done(browser)` holds, checking every 200 ms, for up to
    /// `timeout`; panics saying it waited for `what` if it never does.
    pub fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&Browser) -> bool) {
        let started = Instant::now();
        loop {
            if done(self) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "waited {timeout:?} for {what} on {}; it never happened",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A session command that must succeed; `doing` says what it was for
    /// when it does not.
    fn command(&self, method: &str, path: &str, body: Option<Value>, doing: &str) -> Value {
        self.session_call(method, path, body)
            .unwrap_or_else(|e| panic!("cannot {doing}: {e}"))
    }

    /// `method /session/ID{path}`.
    fn session_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    /// One WebDriver request: its `value` when it succeeds, its error when
    /// not. Transport failures panic: the driver is gone.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
        call(&self.agent, &self.driver_base, method, path, body)
    }

    fn log_path(&self) -> PathBuf {
        self.log_dir.path().join("chromedriver.log")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the page, found by a CSS selector.
///
/// The dashboard redraws parts of itself on every poll, which makes
/// WebDriver's reference to an element stale; an `Element` then finds its
/// selector's match at the same position again and retries, once.
pub struct Element<'b> {
    browser: &'b Browser,
    css: String,
    index: usize,
    id: RefCell<String>,
}

impl<'b> Element<'b> {
    fn new(browser: &'b Browser, css: &str, index: usize, id: String) -> Element<'b> {
        Element {
            browser,
            css: css.to_string(),
            index,
            id: RefCell::new(id),
        }
    }

    /// The selector this element was found by.
    pub fn selector(&self) -> &str {
        &self.css
    }

    /// Its rendered text (what a reader sees, as `innerText`).
    pub fn text(&self) -> String {
        let v = self.call("GET", "/text", None, "read the text");
        v.as_str().unwrap_or_default().to_string()
    }

    /// The attribute (or property) `name`, if it has one.
    pub fn attribute(&self, name: &str) -> Option<String> {
        let v = self.call(
            "GET",
            &format!("/attribute/{name}"),
            None,
            &format!("read the attribute `{name}`"),
        );
        v.as_str().map(str::to_string)
    }

    /// Clicks it (WebDriver scrolls it into view first).
    pub fn click(&self) {
        self.call("POST", "/click", Some(json!({})), "click");
    }

    /// Types `text` into it, as keystrokes (after what it holds).
    pub fn type_text(&self, text: &str) {
        self.call(
            "POST",
            "/value",
            Some(json!({ "text": text })),
            "type into it",
        );
    }

    /// Empties an input.
    pub fn clear(&self) {
        self.call("POST", "/clear", Some(json!({})), "clear it");
    }

    /// Whether it is displayed (not hidden, not of zero size).
    pub fn displayed(&self) -> bool {
        self.call("GET", "/displayed", None, "ask whether it is displayed")
            .as_bool()
            .unwrap_or(false)
    }

    /// `method /session/ID/element/EID{path}`, finding the element again if
    /// its reference went stale.
    fn call(&self, method: &str, path: &str, body: Option<Value>, doing: &str) -> Value {
        let mut refound = false;
        loop {
            let id = self.id.borrow().clone();
            let result =
                self.browser
                    .session_call(method, &format!("/element/{id}{path}"), body.clone());
            match result {
                Ok(v) => return v,
                Err(e) if e.error == "stale element reference" && !refound => {
                    refound = true;
                    let again = self.browser.find_all(&self.css);
                    let Some(fresh) = again.get(self.index) else {
                        panic!(
                            "cannot {doing} `{}` (match {}): it left the page ({} matches now)",
                            self.css,
                            self.index,
                            again.len()
                        );
                    };
                    let fresh_id = fresh.id.borrow().clone();
                    *self.id.borrow_mut() = fresh_id;
                }
                Err(e) => panic!("cannot {doing} `{}` (match {}): {e}", self.css, self.index),
            }
        }
    }
}

/// `{using: "css selector", value: css}`.
fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

/// The id in a WebDriver element reference.
fn element_id(reference: &Value) -> String {
    reference[ELEMENT_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("not an element reference: {reference}"))
        .to_string()
}

/// One request to the driver at `base`: the answer's `value`, or the
/// WebDriver error it carries.
fn call(
    agent: &ureq::Agent,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, WebDriverError> {
    debug_assert!(base.starts_with("http://127.0.0.1:"));
    let url = format!("{base}{path}");
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("Accept", "application/json");
    let bytes = match body {
        Some(b) => {
            request = request.header("Content-Type", "application/json; charset=utf-8");
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let request = request
        .body(bytes)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let mut response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {url}: chromedriver did not answer: {e}"));
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_else(|e| panic!("{method} {url}: reading the answer: {e}"));
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {url}: HTTP {status}, not JSON ({e}): {text:.500}"));
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    Err(WebDriverError {
        status,
        error: value["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string(),
        message: value["message"].as_str().unwrap_or_default().to_string(),
    })
}

/// Polls `GET /status` until the driver says it is ready, it exits, or
/// `within` passes.
fn wait_ready(
    agent: &ureq::Agent,
    base: &str,
    driver: &mut Child,
    within: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        // Not `call`: while the driver starts, the connection is refused.
        if let Ok(mut response) = agent.get(format!("{base}/status")).call() {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let status: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status["value"]["ready"] == Value::Bool(true) {
                return Ok(());
            }
            last = text;
        }
        if started.elapsed() > within {
            return Err(format!("after {within:?}, /status said: {last}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `name` on `PATH`, else the first of `places` that exists.
fn find_program(name: &str, places: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let fixed = places.iter().map(PathBuf::from);
    // For Chromium, the program itself beats `PATH`'s shell wrapper.
    let candidates: Vec<PathBuf> = if name == "chromium" {
        fixed.chain(on_path).collect()
    } else {
        on_path.into_iter().chain(fixed).collect()
    };
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last lines of the driver's log, for a panic message.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!(
        "chromedriver's log ({}), last lines:\n{tail}",
        path.display()
    )
}

/// A script on one line, shortened, for a panic message.
fn one_line(script: &str) -> String {
    let flat = script.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 120 {
        format!("{}...", flat.chars().take(120).collect::<String>())
    } else {
        flat
    }
}

/// Decodes standard base64 (`A-Z a-z 0-9 + /`, `=` padding), skipping
/// whitespace.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let symbols: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = symbols
        .iter()
        .rposition(|&c| c != b'=')
        .map_or(&symbols[..0], |last| &symbols[..=last]);
    if symbols.len() - data.len() > 2 {
        return Err("more than two `=` of padding".into());
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, &c) in data.iter().enumerate() {
        let v = sextet(c).ok_or_else(|| format!("not base64: byte {c:#04x} at {i}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("a base64 text of impossible length".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm9vYg").unwrap(), b"foob");
        assert_eq!(decode_base64("Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(decode_base64("Zm9v!").is_err());
        assert!(decode_base64("Z").is_err());
    }
}
