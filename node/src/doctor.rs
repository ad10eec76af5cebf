//! `golek doctor`: checks the host a node is about to run on and prints each check as ok, warn
//! or fail with what to do. Exits non-zero when a check fails.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use golek_config::{NodeConfig, ProviderParams};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check's result: what was looked at, what was found, what to do about it.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Ok,
        detail: detail.into(),
    }
}
fn warn(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Warn,
        detail: detail.into(),
    }
}
fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Fail,
        detail: detail.into(),
    }
}

fn cpu() -> Check {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            ok("cpu", "AVX2 present (llama.cpp and ONNX Runtime use it)")
        } else {
            fail(
                "cpu",
                "no AVX2: this build's llama.cpp needs it; run on a newer CPU or build with GGML_NATIVE=OFF",
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        warn("cpu", "not x86_64: the AVX2 check does not apply")
    }
}

/// The bytes of the model files the configuration names (those that exist).
fn model_bytes(config: &NodeConfig) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    config
        .models
        .values()
        .map(|m| match &m.params {
            ProviderParams::Onnx(o) => size(&o.model_path),
            ProviderParams::Gguf(g) => size(&g.model_path),
            _ => 0,
        })
        .sum()
}

fn memory(config: &NodeConfig) -> Check {
    let Some(info) = golek_actors::machine::MemInfo::read() else {
        return warn("memory", "cannot read /proc/meminfo");
    };
    let available = info.bytes("MemAvailable").unwrap_or(0);
    let total = info.bytes("MemTotal").unwrap_or(0);
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    // A model takes about its file size again in buffers (KV cache, arenas).
    let needed = model_bytes(config).saturating_mul(2);
    let detail = format!(
        "{:.1} GiB available of {:.1} GiB; the configured models need about {:.1} GiB",
        gib(available),
        gib(total),
        gib(needed)
    );
    if available < needed {
        fail(
            "memory",
            format!("{detail}: free memory or serve fewer models"),
        )
    } else if available < needed.saturating_add(1 << 30) {
        warn("memory", format!("{detail}: under 1 GiB to spare"))
    } else {
        ok("memory", detail)
    }
}

fn gpus() -> Check {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output();
    let cuda = cfg!(feature = "cuda");
    match out {
        Ok(o) if o.status.success() => {
            let list = String::from_utf8_lossy(&o.stdout).trim().replace('\n', "; ");
            match cuda {
                true => ok("gpus", format!("{list} (this build uses CUDA)")),
                false => warn(
                    "gpus",
                    format!("{list} visible, but this build has no CUDA: build with `--features cuda` to use them"),
                ),
            }
        }
        _ if cuda => warn(
            "gpus",
            "this build uses CUDA but no GPU is visible (nvidia-smi missing or failing): models run on the CPU",
        ),
        _ => ok("gpus", "none visible; this build runs models on the CPU"),
    }
}

fn data_dir(dir: &Path) -> Check {
    let probe = dir.join(".golek-doctor");
    let result = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b"ok"));
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => ok("data dir", format!("{} is writable", dir.display())),
        Err(e) => fail(
            "data dir",
            format!(
                "{} is not writable ({e}): set node.data_dir to a folder the node's user owns",
                dir.display()
            ),
        ),
    }
}

fn tcp_port(addr: SocketAddr) -> Check {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => ok("http port", format!("{addr} (http.addr) is free")),
        Err(e) => fail(
            "http port",
            format!("cannot listen on {addr} (http.addr): {e}; another process holds it (`ss -ltnp 'sport = :{}'` shows which), or set http.addr", addr.port()),
        ),
    }
}

fn udp_port(addr: SocketAddr) -> Check {
    match std::net::UdpSocket::bind(addr) {
        Ok(_) => ok("quic port", format!("{addr} (cluster.quic_addr) is free")),
        Err(e) => fail(
            "quic port",
            format!("cannot bind {addr} (cluster.quic_addr): {e}; another process holds it (`ss -lunp 'sport = :{}'`), or set cluster.quic_addr", addr.port()),
        ),
    }
}

fn onnxruntime(config: &NodeConfig) -> Option<Check> {
    let needed = config
        .models
        .values()
        .any(|m| matches!(m.params, ProviderParams::Onnx(_)));
    let path = &config.runtime.onnxruntime_path;
    match (needed, path.exists()) {
        (false, _) => None,
        (true, true) => Some(ok("onnx runtime", format!("{}", path.display()))),
        (true, false) => Some(fail(
            "onnx runtime",
            format!(
                "{} is missing: run scripts/setup.sh, or set runtime.onnxruntime_path",
                path.display()
            ),
        )),
    }
}

fn model_files(config: &NodeConfig) -> Vec<Check> {
    let mut out = Vec::new();
    for (name, m) in &config.models {
        let path = match &m.params {
            ProviderParams::Onnx(o) => &o.model_path,
            ProviderParams::Gguf(g) => &g.model_path,
            _ => continue,
        };
        if !path.exists() {
            out.push(fail(
                "model file",
                format!("{name}: {} is missing (run scripts/setup.sh, or fix models.{name}.params.model_path)", path.display()),
            ));
        }
    }
    if out.is_empty() {
        out.push(ok(
            "model files",
            format!("{} configured model(s) found", config.models.len()),
        ));
    }
    out
}

fn certificate(dir: &Path) -> Check {
    let path = dir.join(golek_actors::cluster::tls::NODE_CERT);
    match golek_actors::cluster::tls::not_after(&path) {
        Ok(until) => {
            let left = until
                .duration_since(SystemTime::now())
                .map(|d| d.as_secs() / 86_400)
                .ok();
            match left {
                None => fail(
                    "certificate",
                    format!("{} has expired: issue a new one (`golek cluster issue`)", path.display()),
                ),
                Some(days) if days < 14 => warn(
                    "certificate",
                    format!("{} expires in {days} days: issue a new one; the node reloads it when the file changes", path.display()),
                ),
                Some(days) => ok("certificate", format!("{} valid for {days} more days", path.display())),
            }
        }
        Err(e) => fail(
            "certificate",
            format!("{e}: issue one with `golek cluster issue`, or join with a token"),
        ),
    }
}

fn clock() -> Check {
    let out = std::process::Command::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output();
    match out {
        Ok(o) if o.status.success() => match String::from_utf8_lossy(&o.stdout).trim() {
            "yes" => ok("clock", "synchronised by NTP"),
            _ => warn(
                "clock",
                "not synchronised by NTP: certificates and traces need a right clock (enable systemd-timesyncd or chrony)",
            ),
        },
        _ => warn("clock", "cannot tell whether NTP synchronises the clock (no timedatectl)"),
    }
}

async fn seeds(config: &NodeConfig) -> Vec<Check> {
    let Some(dir) = &config.cluster.tls_dir else {
        return vec![];
    };
    if config.cluster.seeds.is_empty() {
        return vec![ok(
            "seeds",
            "none configured (this node starts a cluster or waits to be found)",
        )];
    }
    let Ok(identity) = golek_actors::cluster::tls::NodeIdentity::load(dir) else {
        return vec![warn("seeds", "not checked: no usable certificate")];
    };
    let tasks = golek_actors::Tasks::new();
    let any: SocketAddr = ([0, 0, 0, 0], 0).into();
    let node = match golek_actors::cluster::transport::QuicNode::bind(any, identity, None, tasks) {
        Ok(n) => n,
        Err(e) => return vec![fail("seeds", format!("cannot open a QUIC socket: {e}"))],
    };
    let mut out = Vec::new();
    for seed in &config.cluster.seeds {
        let addr = match tokio::net::lookup_host(seed.as_str())
            .await
            .map(|mut a| a.next())
        {
            Ok(Some(a)) => a,
            _ => {
                out.push(fail(
                    "seed",
                    format!("{seed}: cannot resolve it (check cluster.seeds)"),
                ));
                continue;
            }
        };
        let tried = tokio::time::timeout(
            Duration::from_secs(3),
            node.connect(addr, &node.peer_client()),
        )
        .await;
        out.push(match tried {
            Ok(Ok((_, id))) => ok("seed", format!("{seed} answers over QUIC as node {id:?}")),
            Ok(Err(e)) => fail(
                "seed",
                format!("{seed}: {e} (is a node running there, from the same cluster CA?)"),
            ),
            Err(_) => fail(
                "seed",
                format!(
                    "{seed}: no answer in 3 s (a firewall on UDP {}?)",
                    addr.port()
                ),
            ),
        });
    }
    out
}

/// Every check for `config`, in the order printed.
pub async fn checks(config: &NodeConfig) -> Vec<Check> {
    let mut out = vec![
        cpu(),
        memory(config),
        gpus(),
        data_dir(&config.node.data_dir),
    ];
    out.push(tcp_port(config.http.addr));
    if config.cluster.enabled() {
        out.push(udp_port(config.cluster.quic_addr));
    }
    out.extend(onnxruntime(config));
    out.extend(model_files(config));
    if let Some(dir) = &config.cluster.tls_dir {
        out.push(certificate(dir));
    }
    out.push(clock());
    out.extend(seeds(config).await);
    out
}

/// Prints the checks; an error when one failed.
pub fn run(config: &NodeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(checks(config));
    for c in &results {
        let word = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{word} {:<13} {}", c.name, c.detail);
    }
    let failed = results.iter().filter(|c| c.level == Level::Fail).count();
    let warned = results.iter().filter(|c| c.level == Level::Warn).count();
    match failed {
        0 => {
            println!(
                "{} checks: {} ok, {warned} warnings",
                results.len(),
                results.len() - warned
            );
            Ok(())
        }
        n => anyhow::bail!("{n} of {} checks failed", results.len()),
    }
}
