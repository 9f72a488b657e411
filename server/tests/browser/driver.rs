//! Headless Chromium through ChromeDriver, started by the test itself on
//! a free port, and small helpers over fantoccini.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Where Chromium and ChromeDriver are: `SAHEL_CHROMIUM` /
/// `SAHEL_CHROMEDRIVER`, else Debian's paths, else `PATH`.
fn find(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    for n in names {
        let p = Path::new("/usr/bin").join(n);
        if p.exists() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.exists())
}

/// True when a missing browser must fail the test (CI installs one).
fn browser_required() -> bool {
    sahel_server::testing::require_services()
        || matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

pub struct Driver {
    child: Child,
    port: u16,
    chromium: PathBuf,
    profile: PathBuf,
}

impl Driver {
    /// Starts ChromeDriver, or returns `None` (with a notice) when no
    /// browser is installed and none is required.
    pub fn start() -> Option<Driver> {
        let chromium = find(
            "SAHEL_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = find("SAHEL_CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            if browser_required() {
                panic!(
                    "the browser tests need Chromium and ChromeDriver: apt-get install chromium chromium-driver \
                     (or set SAHEL_CHROMIUM and SAHEL_CHROMEDRIVER)"
                );
            }
            // Straight to stderr, past the test harness's capture, so the
            // skip is seen even when the test "passes".
            let _ = writeln!(
                std::io::stderr(),
                "notice: skipping the browser tests: Chromium or ChromeDriver is not installed \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // A process group of its own: ChromeDriver's browsers are its
        // children, and a session left open (a failed test never reaches
        // `close`) would outlive a ChromeDriver killed alone.
        let child = Command::new(&driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
        let profile = std::env::temp_dir().join(format!(
            "sahel-chromium-{}",
            sahel_server::accounts::random_hex(6)
        ));
        let d = Driver {
            child,
            port,
            chromium,
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ChromeDriver did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(d)
    }

    /// A new browser session (a fresh profile, so no cookies) in a laptop
    /// window of this size, or emulating a phone of that size.
    pub async fn session(&self, width: u32, height: u32, phone: bool) -> Client {
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={width},{height}"),
            format!(
                "--user-data-dir={}",
                self.profile
                    .join(sahel_server::accounts::random_hex(4))
                    .display()
            ),
        ];
        let mut options = json!({ "binary": self.chromium, "args": args });
        if phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "touch": true },
            });
        }
        let caps = json!({ "browserName": "chrome", "goog:chromeOptions": options });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a ChromeDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Presses one key on whatever has the focus, as a person would.
pub async fn press(c: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.expect("key press");
}

pub const ENTER: char = '\u{E007}';

pub async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The element's text, or `None` while the page has no such element: also
/// when the page is replaced between finding it and reading it, which a
/// wait on a navigating page must take as "not yet".
pub async fn text_if_any(c: &Client, css: &str) -> Option<String> {
    let e = c
        .find_all(Locator::Css(css))
        .await
        .unwrap()
        .into_iter()
        .next()?;
    e.text().await.ok()
}

pub async fn exists(c: &Client, css: &str) -> bool {
    !c.find_all(Locator::Css(css)).await.unwrap().is_empty()
}

pub async fn visible(c: &Client, css: &str) -> bool {
    match c.find_all(Locator::Css(css)).await.unwrap().first() {
        Some(e) => e.is_displayed().await.unwrap_or(false),
        None => false,
    }
}

/// Waits (inside an async block) for a condition the page reaches by
/// itself, such as a fetch or a redirect: `wait_until!("what", cond)`
/// where `cond` may `.await`.
#[macro_export]
macro_rules! wait_until {
    ($what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !$cond {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }};
}

pub async fn path(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

/// Types into a field found by CSS, replacing what it held.
pub async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Accessibility basics: every form control has a label (or another
/// accessible name), and no id is used twice (labels point at ids).
pub async fn assert_controls_labelled(c: &Client) {
    let bad = c
        .execute(
            r#"const bad = [];
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button')) {
  const named = (el.labels && el.labels.length > 0)
    || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
    || (el.tagName === 'BUTTON' && el.textContent.trim() !== '');
  if (!named) bad.push(el.outerHTML.slice(0, 160));
}
const seen = new Set();
for (const el of document.querySelectorAll('[id]')) {
  if (seen.has(el.id)) bad.push('duplicate id ' + el.id);
  seen.add(el.id);
}
return bad;"#,
            vec![],
        )
        .await
        .unwrap();
    let page = path(c).await;
    assert_eq!(
        bad,
        json!([]),
        "unlabelled controls or duplicate ids on {page}"
    );
}

/// Saves a PNG of the whole page (the window grows to fit it, up to a
/// limit). With `SAHEL_UPDATE_SCREENSHOTS=1` it goes to `docs/screenshots/`
/// (what the README shows); otherwise to `target/screenshots/`, so an
/// ordinary test run leaves the checkout clean.
pub async fn screenshot(c: &Client, name: &str) {
    let (w, h) = c.get_window_size().await.unwrap();
    let tall = c
        .execute(
            "window.scrollTo(0, 0); return document.documentElement.scrollHeight",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(h);
    let grown = tall > h
        && !c
            .execute("return navigator.maxTouchPoints > 0", vec![])
            .await
            .unwrap()
            .as_bool()
            .unwrap_or(false);
    if grown {
        c.set_window_size(w as u32, tall.min(2400) as u32)
            .await
            .unwrap();
    }
    let png = c.screenshot().await.expect("a screenshot");
    if grown {
        c.set_window_size(w as u32, h as u32).await.unwrap();
    }
    let update = matches!(
        std::env::var("SAHEL_UPDATE_SCREENSHOTS").as_deref(),
        Ok("1" | "true")
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(if update {
        "../docs/screenshots"
    } else {
        "../target/screenshots"
    });
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}
