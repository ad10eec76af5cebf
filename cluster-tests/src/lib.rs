//! A harness for multi-node scenarios: real `golek` processes on loopback addresses, each with
//! its own data dir and certificate, and waits on predicates with timeouts.
//!
//! The `golek` binary is the one `cargo test --workspace` builds next to the test executables
//! (`target/<profile>/golek`).

pub mod netns;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `golek` binary: `CLUSTER_TESTS_GOLEK_BIN` when set (benchmarks point it at the release build), else
/// the one beside this test executable.
pub fn golek_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CLUSTER_TESTS_GOLEK_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("golek");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p golek-node` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Runs `golek ARGS` to completion; its output, failing the test if it fails.
pub fn golek(args: &[&str]) -> String {
    let out = Command::new(golek_bin())
        .args(args)
        .output()
        .expect("golek runs");
    assert!(
        out.status.success(),
        "golek {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cluster CA in a temporary folder, and node certificates issued by it.
pub struct Ca {
    pub dir: tempfile::TempDir,
}

impl Ca {
    pub fn new() -> Ca {
        let dir = tempfile::tempdir().unwrap();
        golek(&["cluster", "init", &dir.path().join("ca").to_string_lossy()]);
        Ca { dir }
    }

    /// The CA folder (ca.pem, ca.key).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// A join token from `golek cluster token`.
    pub fn token(&self) -> String {
        golek(&["cluster", "token", &self.ca_dir().to_string_lossy()])
            .trim()
            .to_string()
    }

    /// Issues a certificate for `node_id`; returns the folder to pass as `--tls-dir`.
    pub fn issue(&self, node_id: &str) -> PathBuf {
        let out = self.dir.path().join(format!("node-{node_id}"));
        golek(&[
            "cluster",
            "issue",
            &self.dir.path().join("ca").to_string_lossy(),
            "--node-id",
            node_id,
            "--out",
            &out.to_string_lossy(),
        ]);
        out
    }
}

impl Default for Ca {
    fn default() -> Self {
        Self::new()
    }
}

/// Ports for test nodes come from below the kernel's ephemeral range (32768 and up on Linux),
/// which the kernel never hands out on its own, and from one counter per process, so two nodes
/// of a test never get the same port (binding port 0 and releasing it can give the same port
/// twice, or one another socket takes next). Each process starts at its own offset.
fn next_free_port(free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % SPAN) as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

/// A free TCP port on loopback for a node's HTTP API.
pub fn free_tcp_port() -> u16 {
    next_free_port(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A free UDP address on loopback for a node's QUIC endpoint.
pub fn free_quic_addr() -> SocketAddr {
    let port = next_free_port(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Which default models a node serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Models {
    None,
    Embeddings,
    Generation,
}

/// How to start a node.
#[derive(Clone)]
pub struct NodeSpec {
    pub id: String,
    pub tls_dir: PathBuf,
    pub quic: SocketAddr,
    pub http_port: u16,
    pub seeds: Vec<SocketAddr>,
    pub models: Models,
    pub env: Vec<(String, String)>,
    /// Extra `golek serve` arguments.
    pub args: Vec<String>,
    /// Run in this network namespace, listening (HTTP and QUIC) on this address of it.
    pub netns: Option<(String, std::net::IpAddr)>,
}

impl NodeSpec {
    pub fn new(id: &str, tls_dir: PathBuf, models: Models) -> NodeSpec {
        NodeSpec {
            id: id.to_string(),
            tls_dir,
            quic: free_quic_addr(),
            http_port: free_tcp_port(),
            seeds: Vec::new(),
            models,
            env: Vec::new(),
            args: Vec::new(),
            netns: None,
        }
    }

    /// The node runs in network namespace `ns` on `ip` (HTTP and QUIC on that address).
    pub fn in_netns(mut self, ns: &str, ip: std::net::IpAddr) -> NodeSpec {
        self.quic = SocketAddr::new(ip, self.quic.port());
        self.netns = Some((ns.to_string(), ip));
        self
    }

    fn http_host(&self) -> std::net::IpAddr {
        self.netns
            .as_ref()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |(_, ip)| *ip)
    }

    pub fn seed(mut self, addr: SocketAddr) -> NodeSpec {
        self.seeds.push(addr);
        self
    }
}

/// A running `golek serve` process.
pub struct Node {
    pub spec: NodeSpec,
    pub base: String,
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
    client: reqwest::Client,
}

impl Node {
    /// Starts the process (does not wait for it to be ready).
    pub fn spawn(spec: NodeSpec) -> Node {
        ensure_test_model();
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut node = Node {
            base: format!("http://{}:{}", spec.http_host(), spec.http_port),
            spec,
            child: None,
            log: dir.path().join("golek.log"),
            data_dir,
            _dir: Some(dir),
            client: reqwest::Client::new(),
        };
        node.start_process();
        node
    }

    fn start_process(&mut self) {
        let s = &self.spec;
        let mut cmd = match &s.netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(golek_bin());
                c
            }
            None => Command::new(golek_bin()),
        };
        cmd.arg("serve")
            .arg("--http-addr")
            .arg(format!("{}:{}", s.http_host(), s.http_port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--node-id")
            .arg(&s.id)
            .arg("--quic-addr")
            .arg(s.quic.to_string())
            .arg("--tls-dir")
            .arg(&s.tls_dir)
            .args(["--set", "cluster.gossip_interval_ms=100"]);
        for seed in &s.seeds {
            cmd.arg("--seed").arg(seed.to_string());
        }
        if s.netns.is_some() {
            // The test talks to it from the host's namespace, not from its loopback.
            cmd.args(["--set", "http.admin_from_anywhere=true"]);
        }
        let (embeddings, generation) = match s.models {
            Models::None => (false, false),
            Models::Embeddings => (true, false),
            Models::Generation => (false, true),
        };
        cmd.arg("--set")
            .arg(format!("models.all-minilm-l6-v2.enabled={embeddings}"))
            .arg("--set")
            .arg(format!("models.golek-tiny.enabled={generation}"))
            .args(["--set", "models.smollm2-135m-instruct.enabled=false"]);
        cmd.args(&s.args);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = cmd
            .envs(s.env.iter().cloned())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("golek starts");
        self.child = Some(child);
    }

    /// Starts a node and waits until it answers `/readyz`. Its ports were free when chosen;
    /// should another process take one before the node binds it, the start is retried on new
    /// ports, so tests and benchmarks never flake on it.
    pub async fn start(spec: NodeSpec) -> Node {
        let mut node = Node::spawn(spec);
        for _ in 0..5 {
            let seen = node.log().len();
            let settled = wait_until(Duration::from_secs(60), || async {
                node.is_ready().await || node.exited()
            })
            .await;
            let lost_port = node.exited() && node.log()[seen..].contains("already in use");
            if !(settled && lost_port) {
                break;
            }
            node.child = None;
            node.spec.quic = SocketAddr::new(node.spec.quic.ip(), free_quic_addr().port());
            node.spec.http_port = free_tcp_port();
            node.base = format!("http://{}:{}", node.spec.http_host(), node.spec.http_port);
            node.start_process();
        }
        node.wait_ready().await;
        node
    }

    async fn is_ready(&self) -> bool {
        matches!(self.client.get(self.url("/readyz")).send().await, Ok(r) if r.status() == 200)
    }

    /// Whether the process has ended.
    fn exited(&self) -> bool {
        // `try_wait` needs `&mut`; `/proc` tells without reaping.
        match &self.child {
            Some(child) => {
                !std::path::Path::new(&format!("/proc/{}", child.id())).exists()
                    || std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                        .is_ok_and(|stat| stat.contains(") Z "))
            }
            None => true,
        }
    }

    pub async fn wait_ready(&self) {
        let ready = wait_until(Duration::from_secs(60), || async {
            matches!(self.client.get(self.url("/readyz")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        assert!(
            ready,
            "node {} not ready; log:\n{}",
            self.spec.id,
            self.log()
        );
    }

    /// The node's data dir (its registry and model store).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status once the process has ended on its own (within `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Whether the process still runs.
    pub fn running(&self) -> bool {
        !self.exited()
    }

    /// SIGTERM: a graceful stop.
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// `kill -9`: no goodbye to the cluster.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same id, addresses, data dir and certificate.
    pub async fn restart(&mut self) {
        self.kill9();
        self.start_process();
        self.wait_ready().await;
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `/admin/cluster`, or Null while the node does not answer.
    pub async fn cluster(&self) -> Value {
        match self.client.get(self.url("/admin/cluster")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Ids of the members this node sees alive.
    pub async fn alive(&self) -> Vec<String> {
        alive_members(&self.cluster().await)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The actor at `path` (names below the root) in a node's `/admin/actors` tree.
pub fn actor<'a>(tree: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut at = tree;
    for name in path {
        at = at["children"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == *name)?;
    }
    Some(at)
}

pub fn alive_members(view: &Value) -> Vec<String> {
    let mut ids: Vec<String> = view["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["alive"] == true)
        .filter_map(|m| m["node_id"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// Polls `predicate` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, predicate: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if predicate().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Writes the default `golek-tiny` GGUF where the default config looks for it, once.
pub fn ensure_test_model() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = golek_config::default_assets_dir().join("models/golek-tiny.gguf");
        if !path.exists() {
            let unique = path.with_extension(format!("{}.gguf", std::process::id()));
            golek(&["model", "make-test-gguf", &unique.to_string_lossy()]);
            std::fs::rename(&unique, &path).expect("move golek-tiny into place");
        }
    });
}

/// Whether `view` (a node's `/admin/cluster`) shows `node` alive with `model` ready.
pub fn serves_model(view: &Value, node: &str, model: &str) -> bool {
    view["members"].as_array().into_iter().flatten().any(|m| {
        m["node_id"] == node
            && m["alive"] == true
            && m["models"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["name"] == model && x["state"] == "ready")
    })
}

/// Whether `view` shows `node` alive with golek-tiny ready.
pub fn serves(view: &Value, node: &str) -> bool {
    serves_model(view, node, "golek-tiny")
}

/// `node`'s `/metrics` page.
pub async fn metrics_text(node: &Node) -> String {
    reqwest::get(node.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every sample of `metric` on `node`, by the value of its first label, summed.
pub async fn metric_by_label(node: &Node, metric: &str) -> std::collections::BTreeMap<String, f64> {
    let text = metrics_text(node).await;
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(metric)) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = labels.split('"').nth(1).unwrap_or("").to_string();
        *out.entry(label).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// The value of one Prometheus sample (exact name with labels) on `node`; 0 when absent.
pub async fn metric(node: &Node, sample: &str) -> f64 {
    let text = metrics_text(node).await;
    text.lines()
        .find_map(|l| l.strip_prefix(sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `spec` with the fault switches on (`debug.fault_injection`).
pub fn faulty(spec: NodeSpec) -> NodeSpec {
    faulty_with(spec, &[])
}

/// `spec` with the fault switches on and `settings` (`key=value`) set.
pub fn faulty_with(mut spec: NodeSpec, settings: &[&str]) -> NodeSpec {
    for kv in std::iter::once(&"debug.fault_injection=true").chain(settings) {
        spec.args.push("--set".into());
        spec.args.push(kv.to_string());
    }
    spec
}

/// Two replicas of golek-tiny, `b` and `c` (their specs passed through `replica`), and an
/// entry node `a` that serves nothing (through `entry`), started and converged: `a` sees both
/// ready. Returned as `(a, b, c)`.
pub async fn replicas_behind_an_entry(
    replica: impl Fn(NodeSpec) -> NodeSpec,
    entry: impl Fn(NodeSpec) -> NodeSpec,
) -> (Node, Node, Node) {
    let ca = Ca::new();
    let b = Node::start(replica(NodeSpec::new(
        "b",
        ca.issue("b"),
        Models::Generation,
    )))
    .await;
    let c = Node::start(replica(
        NodeSpec::new("c", ca.issue("c"), Models::Generation).seed(b.spec.quic),
    ))
    .await;
    let a = Node::start(entry(
        NodeSpec::new("a", ca.issue("a"), Models::None).seed(b.spec.quic),
    ))
    .await;
    let converged = wait_until(Duration::from_secs(20), || async {
        let view = a.cluster().await;
        serves(&view, "b") && serves(&view, "c")
    })
    .await;
    assert!(converged, "{}", a.cluster().await);
    (a, b, c)
}
