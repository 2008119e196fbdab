//! A real headless Chromium for the web UI's tests, screenshots and
//! benchmarks: Debian's `chromedriver` started as a [`Proc`] (so it and the
//! browser it starts die with the test), driven over WebDriver by a
//! fantoccini client on a runtime of its own, behind blocking calls like
//! the rest of the test helpers.
//!
//! Tests that need it are marked `#[cfg_attr(kha_skip_browser, ignore)]`
//! (see `tests/build.rs`): without chromium-driver they are reported as
//! ignored; a test that starts a browser anyway fails with what to install.

use crate::process::Proc;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Can this machine run the browser tests?
pub fn browser_available() -> bool {
    Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists()
}

/// Panics with what to do when there is no chromium to drive.
pub fn require_browser() {
    assert!(
        browser_available(),
        "this test drives a real headless chromium: install Debian's chromium and \
         chromium-driver (`deploy/test.sh` does), or set KHA_SKIP_BROWSER=1 when building \
         the tests to report them as ignored"
    );
}

/// How the browser is started.
#[derive(Debug, Clone)]
pub struct BrowserOpts {
    pub width: u32,
    pub height: u32,
    /// `prefers-color-scheme: dark` for every page.
    pub dark: bool,
}

impl Default for BrowserOpts {
    fn default() -> Self {
        BrowserOpts {
            width: 1280,
            height: 900,
            dark: false,
        }
    }
}

/// A chromedriver process and one WebDriver session with headless chromium.
/// Dropping it ends the session and kills both.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<fantoccini::Client>,
    // Declared after the client: the session ends before its driver dies.
    driver: Proc,
    /// chromium's profile and chromedriver's log.
    pub dir: tempfile::TempDir,
}

/// Chromium's own command line, as the capabilities carry it.
fn chrome_args(opts: &BrowserOpts, profile: &Path) -> Vec<String> {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-dev-shm-usage".into(),
        format!("--window-size={},{}", opts.width, opts.height),
        // Its own profile in the test's dir: nothing left in /tmp on a kill.
        format!("--user-data-dir={}", profile.display()),
        // No first-run, sync or update traffic: pages make the only requests.
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-extensions".into(),
        // Background tabs (a test keeps several pages open) must keep their
        // timers: the live updates are what is tested.
        "--disable-background-timer-throttling".into(),
        "--disable-renderer-backgrounding".into(),
        "--disable-backgrounding-occluded-windows".into(),
        // Screenshots the same on every machine.
        "--force-device-scale-factor=1".into(),
        "--hide-scrollbars".into(),
    ];
    if opts.dark {
        // Blink's preferred colour scheme: 0 is dark.
        args.push("--blink-settings=preferredColorScheme=0".into());
    }
    args
}

/// A free loopback port for chromedriver (which cannot bind port 0 and say
/// which it got); a lost race is retried by [`Browser::start`].
fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

impl Browser {
    /// A 1280×900 light browser.
    pub fn start() -> Browser {
        Browser::start_with(BrowserOpts::default())
    }

    pub fn start_with(opts: BrowserOpts) -> Browser {
        require_browser();
        Browser::try_start_with(opts).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Like [`Browser::start_with`], with an error instead of a panic (for
    /// kha-bench, which must not die of one).
    pub fn try_start_with(opts: BrowserOpts) -> anyhow::Result<Browser> {
        if !browser_available() {
            anyhow::bail!(
                "no {CHROMEDRIVER} and {CHROMIUM}: install Debian's chromium and chromium-driver"
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let dir = tempfile::Builder::new().prefix("kha-browser-").tempdir()?;
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": chrome_args(&opts, &dir.path().join("profile")),
            }),
        );
        let mut tries = 0;
        loop {
            let port = free_port()?;
            let log = dir.path().join(format!("chromedriver-{port}.log"));
            let mut cmd = Command::new(CHROMEDRIVER);
            cmd.arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()));
            let mut driver = Proc::spawn(&mut cmd, dir.path().join("chromedriver.stderr"));
            let url = format!("http://127.0.0.1:{port}");
            let until = Instant::now() + Duration::from_secs(30);
            let client = loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                let r = rt.block_on(
                    fantoccini::ClientBuilder::new(connector)
                        .capabilities(caps.clone())
                        .connect(&url),
                );
                match r {
                    Ok(c) => break Ok(c),
                    Err(e) => {
                        let exited = matches!(driver.child.try_wait(), Ok(Some(_)));
                        if exited || Instant::now() > until {
                            break Err(e);
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            };
            match client {
                Ok(c) => {
                    return Ok(Browser {
                        rt,
                        client: Some(c),
                        driver,
                        dir,
                    })
                }
                // Most likely someone else took the port in between.
                Err(_) if tries < 3 => {
                    tries += 1;
                    driver.kill_tree();
                }
                Err(e) => anyhow::bail!(
                    "chromedriver did not start a chromium session: {e}\n{}\n{}",
                    driver.log_text(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
    }

    fn client(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("a live WebDriver session")
    }

    /// Opens `url` in the current tab and waits for its `load` event.
    pub fn goto(&self, url: &str) {
        self.try_goto(url).unwrap_or_else(|e| panic!("{e:#}"));
    }

    pub fn try_goto(&self, url: &str) -> anyhow::Result<()> {
        self.rt
            .block_on(self.client().goto(url))
            .map_err(|e| anyhow::anyhow!("opening {url}: {e}"))
    }

    pub fn current_url(&self) -> String {
        self.rt
            .block_on(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("current URL: {e}"))
    }

    /// Runs `script` (a function body: `return …` gives the value) in the
    /// page, with `arguments` = `args`.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.rt
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("running script {script:?}: {e}"))
    }

    /// Like [`Browser::js`], but an error (no page yet, a navigation under
    /// way, a script that threw) is returned instead of a panic.
    pub fn try_js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.rt
            .block_on(self.client().execute(script, args))
            .map_err(|e| anyhow::anyhow!("running script {script:?}: {e}"))
    }

    /// Polls `script` every 50 ms until it returns something other than
    /// `null`, `undefined` or `false`, and returns that. On a timeout the
    /// page is kept as a screenshot and its text printed before the panic.
    pub fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Value {
        self.try_wait_js(what, timeout, script)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn try_wait_js(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
    ) -> anyhow::Result<Value> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(v) = self.try_js(script, vec![]) {
                if !(v.is_null() || v == Value::Bool(false)) {
                    return Ok(v);
                }
            }
            if Instant::now() > until {
                let shot = self.dir.path().join("timeout.png");
                self.try_screenshot(&shot);
                let text = self
                    .try_js(
                        "return document.body ? document.body.innerText : ''",
                        vec![],
                    )
                    .unwrap_or_default();
                let text = text.as_str().unwrap_or_default();
                let tail: String = text
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let url = self
                    .rt
                    .block_on(self.client().current_url())
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for {what} on {url} ({script}); \
                     screenshot in {}; the page says:\n{tail}",
                    shot.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until an element matches `css`.
    pub fn wait_css(&self, css: &str, timeout: Duration) {
        self.wait_js(
            &format!("an element {css}"),
            timeout,
            &format!("return document.querySelector({}) !== null", json!(css)),
        );
    }

    /// The text a user sees in the first element matching `css`
    /// (`innerText`), or `None` when there is none.
    pub fn try_text(&self, css: &str) -> Option<String> {
        let v = self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            vec![json!(css)],
        );
        v.as_str().map(str::to_string)
    }

    /// The text of the first element matching `css`; panics without one.
    pub fn text(&self, css: &str) -> String {
        self.try_text(css)
            .unwrap_or_else(|| panic!("no element {css} on {}", self.current_url()))
    }

    /// The texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let v = self.js(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);",
            vec![json!(css)],
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An attribute of the first element matching `css`.
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let v = self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(css), json!(name)],
        );
        v.as_str().map(str::to_string)
    }

    /// Clicks the first element matching `css` as a user would (WebDriver
    /// scrolls it into view and clicks its centre).
    pub fn click(&self, css: &str) {
        self.rt
            .block_on(async {
                let e = self.client().find(fantoccini::Locator::Css(css)).await?;
                e.click().await
            })
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Clicks a button that submits a form and waits for the page the
    /// answer leads to, so that a following `goto` is not overtaken by the
    /// form's own navigation.
    pub fn submit(&self, css: &str) {
        self.js("window.__before = 1;", vec![]);
        self.click(css);
        self.wait_js(
            "the next page",
            Duration::from_secs(30),
            "return window.__before === undefined && document.readyState === 'complete' && !!document.querySelector('main');",
        );
    }

    /// Types `keys` (e.g. [`fantoccini::key::Key::Enter`] as a char) into
    /// the first element matching `css`.
    pub fn send_keys(&self, css: &str, keys: &str) {
        self.rt
            .block_on(async {
                let e = self.client().find(fantoccini::Locator::Css(css)).await?;
                e.send_keys(keys).await
            })
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// The visible part of the page as a PNG file.
    pub fn screenshot(&self, path: &Path) {
        let png = self
            .rt
            .block_on(self.client().screenshot())
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("screenshot dir");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    fn try_screenshot(&self, path: &Path) {
        if let Ok(png) = self.rt.block_on(self.client().screenshot()) {
            if let Err(e) = std::fs::write(path, png) {
                eprintln!("{}: {e}", path.display());
            }
        }
    }

    /// Resizes the window (the viewport follows).
    pub fn resize(&self, width: u32, height: u32) {
        self.rt
            .block_on(self.client().set_window_size(width, height))
            .unwrap_or_else(|e| panic!("resizing the window: {e}"));
    }

    /// Opens a new tab and switches to it; returns the handle of the tab
    /// that was current, for [`Browser::switch_to`].
    pub fn new_tab(&self) -> Tab {
        self.rt
            .block_on(async {
                let before = self.client().window().await?;
                let t = self.client().new_window(true).await?;
                self.client().switch_to_window(t.handle).await?;
                Ok::<_, fantoccini::error::CmdError>(Tab(before))
            })
            .unwrap_or_else(|e| panic!("opening a tab: {e}"))
    }

    /// The current tab.
    pub fn tab(&self) -> Tab {
        self.rt
            .block_on(self.client().window())
            .map(Tab)
            .unwrap_or_else(|e| panic!("the current tab: {e}"))
    }

    pub fn switch_to(&self, tab: &Tab) {
        self.rt
            .block_on(self.client().switch_to_window(tab.0.clone()))
            .unwrap_or_else(|e| panic!("switching tabs: {e}"));
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver's
    /// `goog/cdp/execute` (e.g. `Emulation.setEmulatedMedia`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        let c = Cdp {
            cmd: cmd.into(),
            params,
        };
        self.rt
            .block_on(self.client().issue_cmd(c))
            .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
    }

    /// Where chromedriver keeps its files for this browser.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// A browser tab, to come back to.
#[derive(Debug, Clone)]
pub struct Tab(fantoccini::wd::WindowHandle);

/// chromedriver's own endpoint for DevTools commands.
#[derive(Debug)]
struct Cdp {
    cmd: String,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params }).to_string();
        (http::Method::POST, Some(body))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Inside another runtime (an async caller dropping it) the session
        // cannot be ended politely; killing the driver ends it all the same.
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        if let Some(c) = self.client.take().filter(|_| !in_runtime) {
            // End the session politely (chromium removes its profile lock);
            // the driver and what it started are killed below regardless.
            let r = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), c.close()).await });
            if !matches!(r, Ok(Ok(()))) && !std::thread::panicking() {
                eprintln!("ending the WebDriver session: {r:?}");
            }
        }
        self.driver.kill_tree();
    }
}
