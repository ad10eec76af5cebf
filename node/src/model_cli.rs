//! `golek model deploy|undeploy|list`: run-time deployments through a running node's admin
//! API. A deployment is cluster-wide: made on any node, placed by every node alike.

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::keys_cli::{call, NodeArgs};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The name clients use.
    pub name: String,
    /// The provider kind (gguf, onnx, triton, openai).
    #[arg(long)]
    pub provider: String,
    /// A provider parameter, `KEY=VALUE` (repeat). Values are read as TOML (numbers, booleans,
    /// quoted strings) and otherwise taken as text.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// How many replicas: a number, or `all`.
    #[arg(long, default_value = "1")]
    pub replicas: String,
    /// Only nodes with this label, `KEY=VALUE` (repeat).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The model file's sha256.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Where the model file can be downloaded.
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub node: NodeArgs,
}

fn pair(text: &str, what: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = text
        .split_once('=')
        .with_context(|| format!("{what} {text:?}: expected KEY=VALUE"))?;
    anyhow::ensure!(!k.trim().is_empty(), "{what} {text:?}: the key is empty");
    Ok((k.trim().to_string(), v.to_string()))
}

/// A parameter value: TOML when it reads as one (`512`, `true`, `"x"`), else the text.
fn value(text: &str) -> Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("v").cloned())
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_else(|| Value::String(text.to_string()))
}

pub fn spec(args: &DeployArgs) -> anyhow::Result<Value> {
    let mut params = Map::new();
    for p in &args.params {
        let (k, v) = pair(p, "--param")?;
        params.insert(k, value(&v));
    }
    let mut labels = Map::new();
    for l in &args.labels {
        let (k, v) = pair(l, "--label")?;
        labels.insert(k, Value::String(v));
    }
    let replicas = match args.replicas.as_str() {
        "all" => Value::String("all".into()),
        n => Value::from(
            n.parse::<u64>()
                .with_context(|| format!("--replicas: expected a number or all, got {n:?}"))?,
        ),
    };
    let mut spec = json!({"name": args.name, "provider": args.provider, "params": params,
                          "replicas": replicas, "labels": labels});
    if let Some(s) = &args.sha256 {
        spec["model_sha256"] = s.clone().into();
    }
    if let Some(u) = &args.url {
        spec["model_url"] = u.clone().into();
    }
    Ok(spec)
}

fn replicas_line(d: &Value) -> String {
    d["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}:{}",
                r["node"].as_str().unwrap_or("?"),
                r["state"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let body = spec(&args)?;
    let made = call(
        &args.node,
        reqwest::Method::POST,
        "/admin/deployments",
        Some(body),
    )?;
    println!(
        "deployed {} ({} replicas wanted): {}",
        made["name"].as_str().unwrap_or("?"),
        made["wanted"],
        replicas_line(&made)
    );
    Ok(())
}

pub fn undeploy(name: &str, node: &NodeArgs) -> anyhow::Result<()> {
    let path = format!("/admin/deployments/{name}");
    call(node, reqwest::Method::DELETE, &path, None)?;
    println!("undeployed {name}: its replicas drain and stop on every node");
    Ok(())
}

pub fn list(node: &NodeArgs) -> anyhow::Result<()> {
    let listed = call(node, reqwest::Method::GET, "/admin/deployments", None)?;
    println!("{:<28} {:<8} {:>7}  replicas", "name", "provider", "wanted");
    for d in listed["deployments"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<8} {:>7}  {}",
            d["name"].as_str().unwrap_or("?"),
            d["provider"].as_str().unwrap_or("?"),
            d["wanted"].to_string().trim_matches('"'),
            replicas_line(d)
        );
    }
    Ok(())
}

pub fn pull(path: &std::path::Path, sha256: Option<&str>, node: &NodeArgs) -> anyhow::Result<()> {
    let text = path.to_string_lossy();
    let body = if text.starts_with("http://") || text.starts_with("https://") {
        json!({"url": text, "sha256": sha256})
    } else if golek_protocol::deploy::is_sha256(&text) && !path.exists() {
        json!({"sha256": text})
    } else {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        json!({"path": path.to_string_lossy()})
    };
    // A bar on a terminal while a fetch (by sha256 or URL) runs; a local file is only hashed.
    let fetched = body["path"].is_null().then(|| text.to_string());
    let ended = std::sync::atomic::AtomicBool::new(false);
    let got = std::thread::scope(|scope| {
        if let Some(source) = &fetched {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                scope.spawn(|| draw_progress(node, source, &ended));
            }
        }
        let got = call(
            node,
            reqwest::Method::POST,
            "/admin/models/pull",
            Some(body),
        );
        ended.store(true, std::sync::atomic::Ordering::SeqCst);
        got
    })?;
    println!(
        "stored {} ({} bytes) as {}",
        path.display(),
        got["bytes"],
        got["sha256"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Draws the progress of the pull of `source` (from `/admin/models/pulls`) until `ended`.
fn draw_progress(node: &NodeArgs, source: &str, ended: &std::sync::atomic::AtomicBool) {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    while !ended.load(std::sync::atomic::Ordering::SeqCst) {
        if let Ok(listed) = call(node, reqwest::Method::GET, "/admin/models/pulls", None) {
            let mine = listed["pulls"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["source"] == source));
            if let Some(p) = mine {
                let total = p["total_bytes"].as_u64().unwrap_or(0);
                if total > 0 {
                    bar.set_length(total);
                }
                bar.set_position(p["bytes"].as_u64().unwrap_or(0));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    bar.finish_and_clear();
}

pub fn gc(node: &NodeArgs) -> anyhow::Result<()> {
    let got = call(node, reqwest::Method::POST, "/admin/models/gc", None)?;
    let removed = got["removed"].as_array().cloned().unwrap_or_default();
    for r in &removed {
        println!(
            "removed {} ({} bytes)",
            r["file"].as_str().unwrap_or("?"),
            r["bytes"]
        );
    }
    println!("{} files removed", removed.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_read_as_toml_values_or_text() {
        assert_eq!(value("512"), json!(512));
        assert_eq!(value("true"), json!(true));
        assert_eq!(value("\"a b\""), json!("a b"));
        assert_eq!(value("models/x.gguf"), json!("models/x.gguf"));
        assert!(pair("novalue", "--param").is_err());
    }
}
