//! Support for the dashboard tests: starting `queuectl dashboard` on a free port
//! ([`Dashboard`]), a minimal HTTP/1.1 client over `TcpStream` ([`Dashboard::request`],
//! so tests can send any header, `Origin` included), and a headless Chromium driven
//! over WebDriver ([`Browser`]: `chromedriver` started on a free port, closed with
//! its browser when the test ends, panicking or not).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::{Env, wait_until};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `queuectl dashboard` (killed with the test's [`Env`]).
pub struct Dashboard {
    pub port: u16,
}

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Dashboard {
    /// Starts the dashboard on a free port, with `token` if given, and waits until
    /// it answers. Retries on another port if the one picked was taken meanwhile.
    pub fn start(env: &mut Env, token: Option<&str>) -> Dashboard {
        for _ in 0..5 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut vars = vec![];
            if let Some(token) = token {
                vars.push(("QUEUECTL_DASHBOARD_TOKEN", token));
            }
            let pid = env.spawn_with(&["dashboard", "--listen", &listen], &vars);
            let dashboard = Dashboard { port };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && env.is_running(pid) {
                if dashboard
                    .try_request("GET", "/api/v1/session", &[], "")
                    .is_some()
                {
                    return dashboard;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("the dashboard did not start (see its log above)");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends one request; panics if the dashboard does not answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }

    pub fn get(&self, path: &str) -> Answer {
        self.request("GET", path, &[], "")
    }

    /// GET of an API path that must answer 200 with JSON.
    pub fn api(&self, path: &str) -> Value {
        let answer = self.get(&format!("/api/v1/{path}"));
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
        answer.json()
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<Answer> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("Host")) {
            text.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.port));
        }
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        stream.write_all(text.as_bytes()).ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Some(Answer {
            status,
            headers,
            body: body.to_owned(),
        })
    }
}

/// A headless Chromium session. `None` from [`Browser::start`] when chromedriver is
/// not installed and `CI` is unset (the test is then skipped, saying so).
pub struct Browser {
    pub rt: tokio::runtime::Runtime,
    pub client: Option<Client>,
    driver: Child,
}

impl Browser {
    pub fn start() -> Option<Browser> {
        let exists = Command::new("chromedriver")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromedriver is not installed (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: chromedriver is not installed");
            return None;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        for _ in 0..5 {
            let port = free_port();
            let mut driver = Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver");
            let ready = wait_for_port(port, &mut driver);
            if !ready {
                let _ = driver.kill();
                let _ = driver.wait();
                continue;
            }
            let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
                "goog:chromeOptions": {
                    "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                             "--disable-gpu", "--window-size=1280,1000"]
                }
            }))
            .expect("capabilities");
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let client = rt.block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            );
            match client {
                Ok(client) => {
                    return Some(Browser {
                        rt,
                        client: Some(client),
                        driver,
                    });
                }
                Err(e) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    panic!("cannot start a Chromium session: {e}");
                }
            }
        }
        panic!("chromedriver did not start on any free port");
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The text of the first element matching `css`, `None` if there is none.
    pub fn text(&self, css: &str) -> Option<String> {
        self.rt.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> usize {
        self.rt
            .block_on(self.client().find_all(Locator::Css(css)))
            .map_or(0, |all| all.len())
    }

    /// Polls until the element matching `css` has text that `check` accepts;
    /// returns that text.
    pub fn wait_text(&self, css: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let mut seen = None;
        wait_until(&format!("{css} on the page"), timeout, || {
            seen = self.text(css);
            seen.as_deref().is_some_and(&check)
        });
        seen.unwrap_or_default()
    }

    /// Clicks the element matching `css`. The page re-renders its lists every
    /// second, so an element found may be replaced before the click lands (a stale
    /// reference): then it is found again, until a deadline.
    pub fn click(&self, css: &str) {
        self.retrying(&format!("click {css}"), || async {
            let element = self.client().find(Locator::Css(css)).await?;
            element.click().await
        });
    }

    /// Types `text` into the element matching `css` (retried like [`Browser::click`]).
    pub fn type_into(&self, css: &str, text: &str) {
        self.retrying(&format!("type into {css}"), || async {
            let element = self.client().find(Locator::Css(css)).await?;
            element.send_keys(text).await
        });
    }

    fn retrying<F, Fut>(&self, what: &str, attempt: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.rt.block_on(attempt()) {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A PNG of the page as it is now.
    pub fn screenshot(&self) -> Vec<u8> {
        self.rt
            .block_on(self.client().screenshot())
            .expect("a screenshot")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the session: chromedriver quits its Chromium.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Waits until `port` accepts connections or `driver` exits; whether it is up.
fn wait_for_port(port: u16, driver: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if driver.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
