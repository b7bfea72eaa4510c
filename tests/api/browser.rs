//! A real browser for the passkey tests: Chromium driven by Playwright
//! (`tests/webauthn_browser.py`), with a virtual authenticator. Playwright is installed into
//! a venv under `~/.cache` on first use, and Debian's Chromium with apt when it is missing
//! (`PORTVAKT_CHROMIUM` names another Chromium instead).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const PLAYWRIGHT: &str = "playwright==1.65.2";
const CHROMIUM: &str = "/usr/bin/chromium";

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python with Playwright, and Chromium, made once per machine under a file lock.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let home = PathBuf::from(std::env::var("HOME").expect("HOME is set"));
            let cache = home.join(".cache");
            std::fs::create_dir_all(&cache).expect("create ~/.cache");
            let venv = cache.join("portvakt-browser-venv");
            let python = venv.join("bin/python");
            let lock = std::fs::File::create(cache.join("portvakt-browser-venv.lock"))
                .expect("create the venv lock file");
            lock.lock().expect("lock the venv lock file");
            let has_playwright = Command::new(&python)
                .args(["-c", "import playwright"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !has_playwright {
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "creating the browser venv",
                );
                run(
                    Command::new(&python).args(["-m", "pip", "install", "--quiet", PLAYWRIGHT]),
                    "installing Playwright",
                );
            }
            if std::env::var_os("PORTVAKT_CHROMIUM").is_none() && !Path::new(CHROMIUM).exists() {
                run(
                    Command::new("apt-get")
                        .args(["install", "-y", "--no-install-recommends", "chromium"])
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                    "installing Chromium (apt-get install chromium)",
                );
            }
            python
        })
        .clone()
}

/// One browser tab on an origin, with its own virtual authenticator.
pub struct Browser {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    /// A browser whose page runs on `origin` (e.g. `http://localhost:1234`).
    pub async fn open(origin: &str) -> Browser {
        let python = tokio::task::spawn_blocking(python).await.unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webauthn_browser.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .arg(origin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the browser");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the browser did not start within 60 s");
        assert_eq!(ready.unwrap().as_deref(), Some("ready"));
        Browser {
            _child: child,
            stdin,
            lines,
        }
    }

    async fn ask(&mut self, command: Value) -> Result<Value, String> {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the browser did not answer within 60 s")
            .unwrap()
            .expect("the browser quit");
        let mut answer: Value = serde_json::from_str(&answer).unwrap();
        match answer.get("error") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
            None => Ok(answer["ok"].take()),
        }
    }

    /// `navigator.credentials.create()` with these creation options (the `publicKey` part).
    pub async fn create(&mut self, options: &Value) -> Result<Value, String> {
        self.ask(json!({"op": "create", "options": options})).await
    }

    /// `navigator.credentials.get()` with these request options (the `publicKey` part).
    pub async fn get(&mut self, options: &Value) -> Result<Value, String> {
        self.ask(json!({"op": "get", "options": options})).await
    }

    /// The credentials the virtual authenticator holds.
    pub async fn credentials(&mut self) -> Vec<Value> {
        let all = self.ask(json!({"op": "credentials"})).await.unwrap();
        all.as_array().cloned().unwrap_or_default()
    }
}
