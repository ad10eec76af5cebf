//! What both benchmarks share: a real node process on a free loopback port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `golek serve` process with its own data dir; stopped with SIGTERM on drop.
pub struct BenchNode {
    pub child: Child,
    pub base: String,
    _data: tempfile::TempDir,
}

impl BenchNode {
    /// Starts the node with `--set` overrides.
    #[allow(dead_code)]
    pub fn start(sets: &[String]) -> BenchNode {
        Self::start_under(sets, &[])
    }

    /// [`BenchNode::start`] run by `wrapper` (a command and its arguments, e.g. valgrind's),
    /// which gets the `golek` path after them.
    pub fn start_under(sets: &[String], wrapper: &[String]) -> BenchNode {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = tempfile::tempdir().unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_golek"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_golek")),
        };
        cmd.args([
            "serve",
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data.path());
        for s in sets {
            cmd.args(["--set", s]);
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(if wrapper.is_empty() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("golek starts");
        BenchNode {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _data: data,
        }
    }

    /// Waits until `/readyz` answers 200.
    #[allow(dead_code)]
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        self.wait_ready_within(client, Duration::from_secs(60))
            .await
    }

    /// [`BenchNode::wait_ready`] for up to `within`.
    pub async fn wait_ready_within(&self, client: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        while !matches!(client.get(format!("{}/readyz", self.base)).send().await, Ok(r) if r.status() == 200)
        {
            assert!(Instant::now() < deadline, "node not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A small runtime for the load generator (one thread: the node gets the other cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The value after `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
