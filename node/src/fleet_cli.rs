//! Commands for running a fleet: `golek drain` (a rolling restart's step).

use std::time::{Duration, Instant};

use crate::keys_cli::{call, NodeArgs};

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Wait until the node has stopped (at most this many seconds; 0: do not wait).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub wait_s: u64,
}

/// Tells a node to drain: it gossips that it is going, hands new requests to its peers,
/// finishes what it holds and exits 0 (as on SIGTERM).
pub fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let answer = call(&args.node, reqwest::Method::POST, "/admin/drain", None)?;
    match answer["started_now"].as_bool() {
        Some(false) => println!("{} was already draining", args.node.http),
        _ => println!("{} is draining", args.node.http),
    }
    if args.wait_s == 0 {
        return Ok(());
    }
    let url = format!("http://{}/healthz", args.node.http);
    let until = Instant::now() + Duration::from_secs(args.wait_s);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stopped = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        while Instant::now() < until {
            if client.get(&url).send().await.is_err() {
                return anyhow::Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(false)
    })?;
    if stopped {
        println!("{} has stopped", args.node.http);
        return Ok(());
    }
    anyhow::bail!(
        "{} still answers after {} s (in-flight requests may still be finishing)",
        args.node.http,
        args.wait_s
    )
}
