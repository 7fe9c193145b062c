//! Headless Chromium for the dashboard's test and benchmark: Debian's
//! `chromium` driven by its `chromedriver` over WebDriver (fantoccini).
//! The driver is a child process stopped by its PID; the browser session
//! is closed first (a driver killed with a session open leaves Chromium
//! running).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{free_port, wait_for, Proc};

/// Where Debian installs them.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// Whether the browser and its driver are installed.
pub fn installed() -> bool {
    Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists()
}

/// A headless Chromium session on its own chromedriver.
pub struct Browser {
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
    _driver: Proc,
    /// Screenshots go here.
    pub artifacts: PathBuf,
}

impl Browser {
    /// Start chromedriver on a free loopback port and open a session
    /// (1400×900, no network beyond loopback).
    pub fn start(log_dir: &Path, artifacts: PathBuf) -> Browser {
        let port = free_port();
        let driver = Proc::spawn(
            Command::new(CHROMEDRIVER).arg(format!("--port={port}")),
            &log_dir.join("chromedriver.log"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let rt = crate::runtime();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1400,900",
                    "--disable-component-update",
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                ],
            },
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("an object literal"),
        };
        let client = wait_for(Duration::from_secs(20), || {
            rt.block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&url),
            )
            .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "chromedriver did not start a session: {}",
                driver.log_tail()
            )
        });
        std::fs::create_dir_all(&artifacts).expect("artifacts directory");
        Browser {
            rt,
            client,
            _driver: driver,
            artifacts,
        }
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client.goto(url))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Run a script in the page; its return value.
    pub fn eval(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client.execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// The text of every element `css` selects (read in one script, so a
    /// redraw cannot come between two of them).
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.strings(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)",
            css,
            "",
        )
    }

    /// An attribute of every element `css` selects (in one script).
    pub fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        self.strings(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]) || '')",
            css,
            attr,
        )
    }

    fn strings(&self, script: &str, css: &str, attr: &str) -> Vec<String> {
        let v = self
            .rt
            .block_on(self.client.execute(script, vec![json!(css), json!(attr)]))
            .unwrap_or_else(|e| panic!("reading {css}: {e}"));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Click the first element `css` selects. The page redraws its tables
    /// as the cluster changes, so an element found may be replaced before
    /// the click lands: then it is found again (a few times, briefly).
    pub fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..20 {
            let done = self.rt.block_on(async {
                let e = self.client.find(Locator::Css(css)).await?;
                e.click().await
            });
            match done {
                Ok(()) => return,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("click {css}: {last}");
    }

    /// Save a screenshot as `<artifacts>/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .rt
            .block_on(self.client.screenshot())
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // close the session before the driver goes (see the module note)
        let client = self.client.clone();
        let _ = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), client.close()).await
        });
    }
}
