//! Failover benchmark (not a test): three nodes, two replicas of golek-tiny, steady load
//! (streaming and not) through the third; one replica is killed with `kill -9` every
//! `--kill-every` seconds and restarted, for `--seconds`. Reports failed requests of each kind,
//! p50/p99 against the same run with no faults, and how long throughput takes to recover
//! after each kill. Real `golek` processes on loopback, release build.
//!
//!   bash bench/failover.sh
//!   cargo bench -p golek-node --bench failover -- --seconds 120 --kill-every 20 --clients 8

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use golek_cluster_tests::{serves, Ca, Models, Node, NodeSpec};
use serde_json::json;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// One finished request: streaming or not, whether it failed, its latency, when it ended.
struct Done {
    stream: bool,
    failed: bool,
    latency: Duration,
    at: Duration,
}

async fn request(client: &reqwest::Client, url: &str, stream: bool) -> bool {
    let body = json!({"model": "golek-tiny", "prompt": "failover", "max_tokens": 32,
                      "temperature": 0, "ignore_eos": true, "stream": stream});
    let Ok(response) = client.post(url).json(&body).send().await else {
        return false;
    };
    let ok = response.status() == 200;
    let Ok(text) = response.text().await else {
        return false;
    };
    let good = ok
        && if stream {
            text.contains("data: [DONE]") && !text.contains("\"error\"")
        } else {
            text.contains("\"finish_reason\"")
        };
    if !good && std::env::var_os("FAILOVER_SHOW").is_some() {
        eprintln!(
            "failed ({}): {}",
            if stream { "stream" } else { "json" },
            &text[text.len().saturating_sub(400)..]
        );
    }
    good
}

async fn run(seconds: u64, kill_every: Option<u64>, clients: usize) -> (Vec<Done>, Vec<Duration>) {
    let ca = Ca::new();
    let b = Node::start(NodeSpec::new("b", ca.issue("b"), Models::Generation)).await;
    let c =
        Node::start(NodeSpec::new("c", ca.issue("c"), Models::Generation).seed(b.spec.quic)).await;
    let a = Node::start(NodeSpec::new("a", ca.issue("a"), Models::None).seed(b.spec.quic)).await;
    while !(serves(&a.cluster().await, "b") && serves(&a.cluster().await, "c")) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let (stop, done) = (stop.clone(), done.clone());
            let url = a.url("/v1/completions");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let stream = w % 2 == 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = request(&client, &url, stream).await;
                    done.lock().unwrap().push(Done {
                        stream,
                        failed: !ok,
                        latency: t.elapsed(),
                        at: start.elapsed(),
                    });
                }
            })
        })
        .collect();
    let mut kills = Vec::new();
    // Restarted, b joins through c (as a configured node would through its seeds).
    let mut b = b;
    b.spec.seeds.push(c.spec.quic);
    let mut replicas = [b, c];
    let deadline = start + Duration::from_secs(seconds);
    let mut next = 0;
    while Instant::now() < deadline {
        let wait = kill_every.map_or(Duration::from_secs(seconds), Duration::from_secs);
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        if kill_every.is_none() || Instant::now() >= deadline {
            break;
        }
        kills.push(start.elapsed());
        replicas[next % 2].restart().await;
        next += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let done = std::mem::take(&mut *done.lock().unwrap());
    if std::env::var_os("FAILOVER_SHOW").is_some() {
        for (name, node) in [("b", &replicas[0]), ("c", &replicas[1])] {
            for line in node
                .log()
                .lines()
                .filter(|l| l.contains("panic") || l.contains("ERROR") || l.contains("WARN"))
            {
                eprintln!("{name}: {line}");
            }
        }
        for line in a.log().lines().filter(|l| {
            l.contains("panic")
                || l.contains("ERROR")
                || l.contains("WARN")
                || l.contains("cluster:")
        }) {
            eprintln!("a: {line}");
        }
    }
    (done, kills)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(done: &[Done]) -> (usize, usize, usize, Duration, Duration) {
    let failed = |s: bool| done.iter().filter(|d| d.stream == s && d.failed).count();
    let mut latencies: Vec<Duration> = done
        .iter()
        .filter(|d| !d.failed)
        .map(|d| d.latency)
        .collect();
    latencies.sort();
    (
        done.len(),
        failed(false),
        failed(true),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// Seconds after each kill until a one-second window again completes 90 % of the fault-free
/// run's mean throughput.
fn recovery(done: &[Done], kills: &[Duration], baseline_per_s: f64) -> Vec<f64> {
    kills
        .iter()
        .map(|&k| {
            let mut t = k;
            loop {
                let n = done
                    .iter()
                    .filter(|d| d.at >= t && d.at < t + Duration::from_secs(1))
                    .count();
                if n as f64 >= 0.9 * baseline_per_s || t > k + Duration::from_secs(20) {
                    return (t - k).as_secs_f64();
                }
                t += Duration::from_millis(100);
            }
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seconds: u64 = arg("--seconds", "120").parse().unwrap();
    let kill_every: u64 = arg("--kill-every", "20").parse().unwrap();
    let clients: usize = arg("--clients", "8").parse().unwrap();

    let (calm, _) = run(seconds, None, clients).await;
    let (faulty, kills) = run(seconds, Some(kill_every), clients).await;
    let (n0, f0, s0, p50_0, p99_0) = summary(&calm);
    let (n1, f1, s1, p50_1, p99_1) = summary(&faulty);
    let baseline = n0 as f64 / seconds as f64;
    let rec = recovery(&faulty, &kills, baseline);
    println!("# Failover: kill -9 a replica every {kill_every} s for {seconds} s ({clients} clients, half streaming)\n");
    println!("| run | requests | failed (non-streaming) | failed (streaming) | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    println!("| no faults | {n0} | {f0} | {s0} | {p50_0:.1?} | {p99_0:.1?} |");
    println!("| kill -9 every {kill_every} s | {n1} | {f1} | {s1} | {p50_1:.1?} | {p99_1:.1?} |");
    println!(
        "\nkills: {}; seconds to recover 90 % of the fault-free throughput ({baseline:.0}/s) after each: {:?}",
        kills.len(),
        rec.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>()
    );
    println!(
        "targets: 0 failed of either kind ({}), p99 within 2x of the fault-free run ({:.2}x)",
        if f1 + s1 == 0 { "met" } else { "missed" },
        p99_1.as_secs_f64() / p99_0.as_secs_f64().max(1e-9)
    );
}
