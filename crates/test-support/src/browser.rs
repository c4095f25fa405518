//! A real browser for tests: Debian's Chromium, headless, driven over WebDriver by its
//! `chromedriver` (`./dev browser-setup` installs both; `./dev test` does it too).
//!
//! [`Browser::start`] runs a `chromedriver` of its own on a free port, in a process group of its
//! own, and opens one session with a fresh temporary profile: no state is shared between tests,
//! and tests may run browsers side by side. The helpers wait with a deadline and name what they
//! waited for when they fail; [`Browser::client`] gives the whole WebDriver API (fantoccini)
//! for the rest.
//!
//! Ending a browser: [`Browser::close`] ends the session (chromedriver quits Chromium and reaps
//! it), then chromedriver. A browser dropped without it (a test that failed half-way) does the
//! same from `Drop`, over a plain socket, and then kills the whole process group, so a failing
//! test leaves no Chromium behind either. Only a test process killed outright (SIGKILL) can
//! leave them running.
//!
//! Where the binaries are: `$CHROMEDRIVER` and `$CHROMIUM` when set, else `chromedriver` and
//! `chromium` on `PATH`, else `/usr/bin/`.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub use fantoccini;

/// How long a helper waits for what it is told to wait for, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A resource the page loaded (`performance.getEntriesByType("resource")`), or the page itself.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub url: String,
    /// `http:`, `https:`, `data:`, `blob:`, …
    pub protocol: String,
    /// Empty for `data:` and `blob:` URLs.
    pub hostname: String,
}

/// A line of the page's console, or an error the browser logged for it (a failed load, a
/// Content-Security-Policy violation, an uncaught exception).
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO` or `DEBUG`.
    pub level: String,
    pub message: String,
}

/// One headless Chromium with its chromedriver. See the module documentation.
pub struct Browser {
    client: Client,
    driver: Driver,
    timeout: Duration,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of 1280×900.
    pub async fn start() -> anyhow::Result<Browser> {
        let chromedriver = binary("CHROMEDRIVER", "chromedriver")?;
        let chromium = binary("CHROMIUM", "chromium")?;
        let dir = std::env::temp_dir().join(format!("shop-browser-{}", uuid::Uuid::new_v4()));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("creating {}", profile.display()))?;
        let port = free_port()?;
        let log_path = dir.join("chromedriver.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                // Chromium writes to its home too (crash reports, caches): here, into the
                // browser's directory, removed with it.
                .env("HOME", &dir)
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Chromium and its helpers inherit the group: one signal reaches them all.
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", chromedriver.display()))?
        };
        let mut driver = Driver {
            child,
            port,
            dir,
            session: None,
        };
        driver.wait_until_ready().await?;

        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,900",
                    // No request of Chromium's own to the internet (component updates,
                    // field trials, sign-in): the machine may have none, and tests check
                    // what pages load.
                    "--disable-component-update",
                    "--disable-background-networking",
                    "--disable-sync",
                    "--no-first-run",
                    "--no-default-browser-check",
                ],
            }),
        );
        // The console and the browser's own errors, for [`Browser::console`].
        capabilities.insert("goog:loggingPrefs".to_owned(), json!({"browser": "ALL"}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .with_context(|| {
                format!(
                    "opening a Chromium session ({})",
                    driver.log_tail().unwrap_or_default()
                )
            })?;
        driver.session = client.session_id().await?;
        Ok(Browser {
            client,
            driver,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How long the helpers wait from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The PID of chromedriver, whose process group holds Chromium's processes too.
    pub fn driver_pid(&self) -> u32 {
        self.driver.child.id()
    }

    /// The temporary directory of this browser (its profile and chromedriver's log), removed
    /// when the browser ends.
    pub fn dir(&self) -> &Path {
        &self.driver.dir
    }

    /// Opens `url` and waits for its `load` event.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// The page's visible text (`document.body.innerText`).
    pub async fn text(&self) -> anyhow::Result<String> {
        let text = self
            .eval(
                "return document.body ? document.body.innerText : '';",
                vec![],
            )
            .await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body: `return …` gives the value; `arguments[i]` the args).
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.client
            .execute(script, args)
            .await
            .with_context(|| format!("running {script}"))
    }

    /// Waits until `check` gives a value, polling until the browser's timeout.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        crate::eventually(self.timeout, what, check).await
    }

    /// Waits until the page's visible text contains `text`; a live page may take its time.
    pub async fn wait_for_text(&self, text: &str) -> anyhow::Result<()> {
        let waited = self
            .wait_for(&format!("the text {text:?} on the page"), || async {
                Ok(self.text().await?.contains(text).then_some(()))
            })
            .await;
        self.explain(waited).await
    }

    /// Waits until the page's visible text no longer contains `text`.
    pub async fn wait_for_no_text(&self, text: &str) -> anyhow::Result<()> {
        let waited = self
            .wait_for(&format!("the text {text:?} to leave the page"), || async {
                Ok((!self.text().await?.contains(text)).then_some(()))
            })
            .await;
        self.explain(waited).await
    }

    /// Waits until an element matches the CSS `selector` and is displayed; returns it.
    pub async fn wait_for_element(&self, selector: &str) -> anyhow::Result<Element> {
        let waited = self
            .wait_for(&format!("a displayed element {selector}"), || async {
                for element in self.client.find_all(Locator::Css(selector)).await? {
                    if element.is_displayed().await.unwrap_or(false) {
                        return Ok(Some(element));
                    }
                }
                Ok(None)
            })
            .await;
        self.explain(waited).await
    }

    /// Whether an element matches the CSS `selector` now (displayed or not).
    pub async fn exists(&self, selector: &str) -> anyhow::Result<bool> {
        Ok(!self
            .client
            .find_all(Locator::Css(selector))
            .await?
            .is_empty())
    }

    /// Clicks the element the CSS `selector` matches, once it is displayed.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let element = self.wait_for_element(selector).await?;
        element
            .click()
            .await
            .with_context(|| format!("clicking {selector}"))
    }

    /// Clicks the button or link whose visible text is `text` (trimmed), once there is one.
    pub async fn click_text(&self, text: &str) -> anyhow::Result<()> {
        let element = self
            .wait_for(&format!("a button or link {text:?}"), || async {
                let candidates = self
                    .client
                    .find_all(Locator::Css(
                        "button, a, input[type=submit], input[type=button]",
                    ))
                    .await?;
                for element in candidates {
                    let label = match element.tag_name().await?.as_str() {
                        "input" => element.attr("value").await?.unwrap_or_default(),
                        _ => element.text().await?,
                    };
                    if label.trim() == text && element.is_displayed().await.unwrap_or(false) {
                        return Ok(Some(element));
                    }
                }
                Ok(None)
            })
            .await;
        let element = self.explain(element).await?;
        element
            .click()
            .await
            .with_context(|| format!("clicking {text:?}"))
    }

    /// Replaces the value of the input the CSS `selector` matches with `value`, typed as a user
    /// would (the page sees the key events).
    pub async fn fill(&self, selector: &str, value: &str) -> anyhow::Result<()> {
        let element = self.wait_for_element(selector).await?;
        element.clear().await?;
        element
            .send_keys(value)
            .await
            .with_context(|| format!("typing into {selector}"))
    }

    /// Types into the fields of the form the CSS `form` matches, by their `name`, and submits
    /// it as its submit button would (`requestSubmit`: the page's handlers and the browser's
    /// validation run). Hidden fields are the page's own: a test that forges one uses [`eval`].
    ///
    /// [`eval`]: Browser::eval
    pub async fn submit_form(&self, form: &str, fields: &[(&str, &str)]) -> anyhow::Result<()> {
        self.wait_for_element(form).await?;
        for (name, value) in fields {
            self.fill(&format!("{form} [name=\"{name}\"]"), value)
                .await?;
        }
        self.eval(
            "document.querySelector(arguments[0]).requestSubmit();",
            vec![json!(form)],
        )
        .await
        .with_context(|| format!("submitting {form}"))?;
        Ok(())
    }

    /// Saves a PNG of the window to `path` (its directories are made).
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let path = path.as_ref();
        let png = self.client.screenshot().await?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Resizes the window (a phone: 390×844).
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        Ok(self.client.set_window_size(width, height).await?)
    }

    /// The cookies of the current page, as the browser holds them (`HttpOnly` ones included).
    pub async fn cookies(&self) -> anyhow::Result<Vec<fantoccini::cookies::Cookie<'static>>> {
        Ok(self.client.get_all_cookies().await?)
    }

    /// The page itself and every resource it loaded, by URL.
    pub async fn loaded(&self) -> anyhow::Result<Vec<Loaded>> {
        let entries = self
            .eval(
                "return [location.href]
                    .concat(performance.getEntriesByType('resource').map(e => e.name))
                    .map(u => { const p = new URL(u); return [u, p.protocol, p.hostname]; });",
                vec![],
            )
            .await?;
        let entries: Vec<(String, String, String)> = serde_json::from_value(entries)?;
        Ok(entries
            .into_iter()
            .map(|(url, protocol, hostname)| Loaded {
                url,
                protocol,
                hostname,
            })
            .collect())
    }

    /// What the browser logged since the last call (the console, failed loads, policy
    /// violations, uncaught exceptions).
    pub async fn console(&self) -> anyhow::Result<Vec<ConsoleEntry>> {
        let entries = self.client.issue_cmd(BrowserLog).await?;
        let entries = entries.as_array().cloned().unwrap_or_default();
        Ok(entries
            .into_iter()
            .map(|entry| ConsoleEntry {
                level: entry["level"].as_str().unwrap_or_default().to_owned(),
                message: entry["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Ends the session (chromedriver quits Chromium), then chromedriver.
    pub async fn close(self) -> anyhow::Result<()> {
        let Browser {
            client, mut driver, ..
        } = self;
        let closed = client.close().await;
        if closed.is_ok() {
            driver.session = None;
        }
        drop(driver);
        Ok(closed?)
    }

    /// A failed wait names the page it waited on and the start of its text.
    async fn explain<T>(&self, waited: anyhow::Result<T>) -> anyhow::Result<T> {
        let Err(error) = waited else {
            return waited;
        };
        let url = self.current_url().await.unwrap_or_default();
        let text = self.text().await.unwrap_or_default();
        let start: String = text.chars().take(600).collect();
        Err(error.context(format!("on {url}, whose text begins: {start:?}")))
    }
}

/// `POST /session/{id}/se/log`: chromedriver's log of the page (`goog:loggingPrefs`), not part
/// of the W3C protocol and so not of fantoccini's API.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// chromedriver, its session and its temporary directory; ends all three when dropped.
struct Driver {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// The session still open, if any.
    session: Option<String>,
}

impl Driver {
    /// Waits until chromedriver answers `/status` ready, or fails at once if it exited.
    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/status", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "chromedriver exited ({status}) before it was ready: {}",
                    self.log_tail().unwrap_or_default()
                );
            }
            if let Ok(response) = client.get(&url).send().await {
                let body = response.json::<Value>().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "chromedriver did not answer on port {} within 20 s: {}",
                    self.port,
                    self.log_tail().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_tail(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).ok()?;
        let lines: Vec<&str> = log.lines().collect();
        Some(lines[lines.len().saturating_sub(20)..].join("\n"))
    }

    /// `DELETE /session/{id}` over a plain socket: `Drop` cannot wait on the async client, and
    /// a session ended this way has chromedriver quit Chromium and reap its processes.
    fn end_session(&self, session: &str) -> std::io::Result<()> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        // chromedriver answers once Chromium has quit; the head of the answer is enough (it
        // keeps the connection open whatever `Connection` says).
        let mut answer = Vec::new();
        let mut chunk = [0_u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(chunk.get(..read).unwrap_or_default());
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self.end_session(&session);
        }
        // Whatever is left of the group (chromedriver itself, a Chromium that did not quit).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$VARIABLE`, else `name` on `PATH`, else `/usr/bin/name`.
fn binary(variable: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    let candidate = on_path.unwrap_or_else(|| Path::new("/usr/bin").join(name));
    if candidate.is_file() {
        Ok(candidate)
    } else {
        bail!(
            "{name} not found (on PATH, in /usr/bin, or in ${variable}): `./dev browser-setup` \
             installs Debian's chromium and chromium-driver"
        )
    }
}

/// A port nobody listens on now. Another process could take it before chromedriver does; the
/// start then fails with chromedriver's own message.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
