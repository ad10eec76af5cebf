//! `golek plugin load|unload|list`: WebAssembly plugins on a running node, through its admin
//! API. Plugins are per node: a loaded file is written into that node's plugin folder.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::keys_cli::{call, call_with, NodeArgs};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Load (or replace) a `.wasm` plugin: checked by the node, written into its plugin folder,
    /// swapped in without a failed request.
    Load {
        file: PathBuf,
        /// The plugin's name (its manifest must say the same); default: the file's name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Unload a plugin and remove its file.
    Unload {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// The node's plugins: state, version, hooks, calls and failures, in chain order.
    List {
        /// Print the JSON of /admin/plugins.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Load { file, name, node } => {
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                    .with_context(|| {
                        format!(
                            "{}: cannot tell the plugin's name; pass --name",
                            file.display()
                        )
                    })?,
            };
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let status = upload(&node, &name, bytes)?;
            println!(
                "plugin {name} {} (version {}, hooks {})",
                status["state"].as_str().unwrap_or("?"),
                status["version"].as_str().unwrap_or("?"),
                status["hooks"]
            );
            Ok(())
        }
        PluginCommand::Unload { name, node } => {
            call(
                &node,
                reqwest::Method::DELETE,
                &format!("/admin/plugins/{name}"),
                None,
            )?;
            println!("plugin {name} unloaded");
            Ok(())
        }
        PluginCommand::List { json, node } => {
            let listing = call(&node, reqwest::Method::GET, "/admin/plugins", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
                return Ok(());
            }
            println!(
                "plugin folder: {}",
                listing["plugin_dir"].as_str().unwrap_or("?")
            );
            println!("chain: {}", join(&listing["chain"]));
            for p in listing["plugins"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<6} {:<8} {:<10} calls {:<8} failures {:<6} {}",
                    p["name"].as_str().unwrap_or("?"),
                    p["kind"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("-"),
                    p["state"].as_str().unwrap_or("?"),
                    p["calls"],
                    p["failures"],
                    p["last_failure"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}

fn join(v: &Value) -> String {
    let names: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if names.is_empty() {
        "(empty)".into()
    } else {
        names.join(" -> ")
    }
}

fn upload(node: &NodeArgs, name: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
    let path = format!("/admin/plugins?name={name}");
    call_with(node, reqwest::Method::POST, &path, |request| {
        request
            .header("content-type", "application/wasm")
            .body(bytes)
    })
}
