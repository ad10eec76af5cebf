//! A harness that runs the real `golek` binary on a loopback port with its own data dir.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod plugins;

pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Serve golek-tiny, not the default SmolLM2 (flags put before a test's own).
pub const TINY_INSTEAD_OF_SMOLLM2: [&str; 4] = [
    "--set",
    "models.golek-tiny.enabled=true",
    "--set",
    "models.smollm2-135m-instruct.enabled=false",
];

pub struct TestNode {
    pub child: Child,
    pub base: String,
    pub data_dir: tempfile::TempDir,
    pub client: reqwest::Client,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestNode {
    /// Starts `golek serve` with `args` and waits until `/readyz` answers 200. Tests run on
    /// the fast random-weight `golek-tiny` instead of the default chat model unless they ask
    /// for it ([`TestNode::start_default_models`]).
    pub async fn start(args: &[&str]) -> TestNode {
        ensure_test_models();
        let mut all = TINY_INSTEAD_OF_SMOLLM2.to_vec();
        all.extend_from_slice(args);
        Self::start_in(tempfile::tempdir().unwrap(), &all).await
    }

    /// Starts a node with the default configuration's models (SmolLM2 and MiniLM).
    pub async fn start_default_models(args: &[&str]) -> TestNode {
        Self::start_in(tempfile::tempdir().unwrap(), args).await
    }

    /// Same, reusing a data dir (to test what persists across restarts).
    pub async fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> TestNode {
        Self::start_bound(data_dir, "127.0.0.1", args).await
    }

    /// Same, listening on `host` (`0.0.0.0` to be reached on other addresses too); the test
    /// itself talks to it on loopback.
    pub async fn start_bound(data_dir: tempfile::TempDir, host: &str, args: &[&str]) -> TestNode {
        let port = free_port();
        let log = data_dir.path().join("golek.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_golek"))
            .arg("serve")
            .arg("--http-addr")
            .arg(format!("{host}:{port}"))
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("golek starts");
        let node = TestNode {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data_dir,
            client: reqwest::Client::new(),
            log,
        };
        let ready = node
            .wait_until(READY_TIMEOUT, || async {
                matches!(node.client.get(node.url("/readyz")).send().await, Ok(r) if r.status() == 200)
            })
            .await;
        assert!(ready, "node not ready in time; log:\n{}", node.log());
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Polls `predicate` until it holds or `timeout` passes.
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, predicate: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        golek_cluster_tests::wait_until(timeout, predicate).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON answer")
    }

    /// The value of a Prometheus sample (exact name with labels), if present.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Hands back the data dir of a node that has exited.
    pub fn into_data_dir(mut self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// Stops the node and hands back its data dir.
    pub fn stop(mut self) -> tempfile::TempDir {
        let code = self.terminate();
        assert_eq!(code, Some(0), "clean exit; log:\n{}", self.log());
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the default `golek-tiny` GGUF where the default config looks for it, if missing.
pub fn ensure_test_models() {
    // One writer per process (tests run on threads); the pid in the temporary name keeps
    // concurrent test processes apart.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = golek_config::default_assets_dir().join("models/golek-tiny.gguf");
    if !path.exists() {
        let unique = path.with_extension(format!("{}.gguf", std::process::id()));
        golek_providers::gguf::write_test_gguf(
            &unique,
            &golek_providers::gguf::TestModelSpec::tiny(),
        )
        .expect("write golek-tiny");
        // Rename is atomic: concurrent test binaries all end with the same complete file.
        std::fs::rename(&unique, &path).expect("move golek-tiny into place");
    }
}

pub fn embedding(response: &serde_json::Value, index: usize) -> Vec<f32> {
    response["data"][index]["embedding"]
        .as_array()
        .expect("a float array")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
