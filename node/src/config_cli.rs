//! `golek config show|set|unset|reload|reset`: the configuration of a file and flags, or of a
//! running node through its admin API.

use anyhow::Context;
use serde_json::Value;

use crate::cli::ConfigCommand;
use crate::keys_cli::{call, NodeArgs};

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show {
            args,
            http: None,
            json: _,
        } => {
            let loaded = args.load()?;
            print!("{}", loaded.show());
            Ok(())
        }
        ConfigCommand::Show {
            http: Some(http),
            json,
            ..
        } => {
            let node = NodeArgs {
                http,
                key: std::env::var("GOLEK_API_KEY").ok(),
            };
            let report = call(&node, reqwest::Method::GET, "/admin/config", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", show_report(&report));
            }
            Ok(())
        }
        ConfigCommand::Set { path, value, node } => {
            let document = golek_config::runtime::pair_document(&path, &value)?;
            let body = serde_json::to_value(&document).context("cannot encode the change")?;
            let report = call(&node, reqwest::Method::PUT, "/admin/config", Some(body))?;
            print!("{}", change_report(&report));
            Ok(())
        }
        ConfigCommand::Unset { path, node } => {
            let route = format!("/admin/config/{path}");
            let report = call(&node, reqwest::Method::DELETE, &route, None)?;
            print!("{}", change_report(&report));
            Ok(())
        }
        ConfigCommand::Reload { node } => {
            let report = call(&node, reqwest::Method::POST, "/admin/config/reload", None)?;
            print!("{}", change_report(&report));
            Ok(())
        }
        ConfigCommand::Reset { data_dir } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let store = golek_actors::Store::open(&data_dir)?;
                store.set_runtime_config("").await?;
                Ok::<_, anyhow::Error>(())
            })?;
            println!("run-time changes in {} removed", data_dir.display());
            Ok(())
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn pending_lines(report: &Value) -> String {
    let mut out = String::new();
    for p in report["pending"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "pending restart: {} = {} (running: {})\n",
            p["key"].as_str().unwrap_or("?"),
            p["next"].as_str().unwrap_or("(unset)"),
            p["running"].as_str().unwrap_or("(unset)")
        ));
    }
    out
}

/// What a change did, for a person.
fn change_report(report: &Value) -> String {
    let changed = strings(&report["changed"]);
    let applied = strings(&report["applied"]);
    let mut out = if changed.is_empty() {
        "nothing changed\n".to_string()
    } else {
        format!(
            "changed: {}\napplied now: {}\n",
            changed.join(", "),
            if applied.is_empty() {
                "-".to_string()
            } else {
                applied.join(", ")
            }
        )
    };
    out.push_str(&pending_lines(report));
    out
}

/// A running node's configuration: `key = value  # layer`, then what is pending.
fn show_report(report: &Value) -> String {
    let mut out = String::new();
    for e in report["entries"].as_array().into_iter().flatten() {
        let hot = if e["hot"].as_bool() == Some(true) {
            ", hot"
        } else {
            ""
        };
        out.push_str(&format!(
            "{} = {}  # {}{hot}\n",
            e["key"].as_str().unwrap_or("?"),
            e["value"].as_str().unwrap_or("?"),
            e["source"].as_str().unwrap_or("?")
        ));
    }
    out.push_str(&pending_lines(report));
    out
}
