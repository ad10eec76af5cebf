//! The command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use golek_config::{CliOverride, ConfigInputs, LoadedConfig};

#[derive(Debug, Parser)]
#[command(name = "golek", version, about = "Golek: a distributed inference node")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a node: load the configured models and serve the HTTP API.
    Serve(ConfigArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Model files.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a small llama-architecture GGUF with random weights and a real tokenizer (for tests
    /// and benchmarks; it generates noise, not language).
    MakeTestGguf {
        /// Where to write it.
        path: PathBuf,
        /// `tiny` (about 1M parameters, the default `golek-tiny`) or `15m` (about 15M, for benchmarks).
        #[arg(long, default_value = "tiny")]
        size: String,
        /// Do nothing when the file already exists.
        #[arg(long)]
        if_missing: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and the layer each value came from.
    Show(ConfigArgs),
}

/// The flags that build the configuration (the top layer, above file and environment).
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The HTTP listen address (`http.addr`).
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// The node's state directory (`node.data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Any key, as `key.path=value` (repeatable), e.g. `--set models.x.max_batch_size=8`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// Loads the configuration from defaults, the file, the process environment and the flags.
    pub fn load(&self) -> anyhow::Result<LoadedConfig> {
        let mut cli = Vec::new();
        if let Some(addr) = &self.http_addr {
            cli.push(CliOverride::new("http.addr", addr, "--http-addr"));
        }
        if let Some(dir) = &self.data_dir {
            cli.push(CliOverride::new("node.data_dir", dir, "--data-dir"));
        }
        for pair in &self.set {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--set expects KEY=VALUE, got {pair:?}"))?;
            cli.push(CliOverride::new(
                key.trim(),
                value.trim(),
                format!("--set {}", key.trim()),
            ));
        }
        let inputs = ConfigInputs {
            file: self.config.clone(),
            env: std::env::vars().collect(),
            cli,
        };
        Ok(golek_config::load(&inputs)?)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let loaded = args.load()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("golek-rt")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(crate::serve(loaded, crate::server::shutdown_signal()))
        }
        Command::Config {
            command: ConfigCommand::Show(args),
        } => {
            let loaded = args.load()?;
            print!("{}", loaded.show());
            Ok(())
        }
        Command::Model {
            command:
                ModelCommand::MakeTestGguf {
                    path,
                    size,
                    if_missing,
                },
        } => {
            use golek_providers::gguf::{write_test_gguf, TestModelSpec};
            if if_missing && path.exists() {
                return Ok(());
            }
            let spec = match size.as_str() {
                "tiny" => TestModelSpec::tiny(),
                "15m" => TestModelSpec::bench_15m(),
                other => anyhow::bail!("--size: expected tiny or 15m, got {other:?}"),
            };
            write_test_gguf(&path, &spec)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {} ({size})", path.display());
            Ok(())
        }
    }
}
