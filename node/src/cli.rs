//! The command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use golek_config::{CliOverride, ConfigInputs, LoadedConfig};

/// The version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GOLEK_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "golek", version = VERSION, about = "Golek: a distributed inference node")]
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
    /// Send one request to a node over QUIC (`golek-client/1`) and print the answer.
    Infer(InferArgs),
    /// Cluster certificates and status.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// WebAssembly plugins on a running node: load (or replace), unload, list.
    Plugin {
        #[command(subcommand)]
        command: crate::plugin_cli::PluginCommand,
    },
    /// API keys for tenants: create (shown once), list, revoke.
    Key {
        #[command(subcommand)]
        command: crate::keys_cli::KeyCommand,
    },
    /// Check this host for a node with this configuration (the same flags as `serve`): CPU,
    /// memory, GPUs, data dir, ports, certificate, clock, seeds. Non-zero exit on a failure.
    Doctor(ConfigArgs),
    /// Chat with a model from the terminal, streamed: one PROMPT, or an interactive session.
    /// Against a running node with --http, else in this process.
    Run(crate::run_cli::RunArgs),
    /// The models a node (or, with --cluster, every node) serves, with state and load.
    Ps(crate::run_cli::PsArgs),
    /// Drain a running node (as SIGTERM does): it tells its peers, hands new requests to them,
    /// finishes what it holds and exits 0. The step of a rolling restart.
    Drain(crate::fleet_cli::DrainArgs),
    /// Show a running node's supervision tree: every actor's state, restarts, last failure.
    Status {
        /// The node's HTTP address.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        http: String,
        /// Print the JSON of /admin/actors instead of a tree.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// The node's QUIC address.
    #[arg(long, value_name = "ADDR")]
    pub quic: std::net::SocketAddr,
    /// A certificate from the cluster CA (`golek cluster issue ... --node-id client-NAME`).
    #[arg(long, value_name = "DIR")]
    pub tls_dir: PathBuf,
    #[arg(long)]
    pub model: String,
    /// Text to embed (repeatable): prints one JSON line a vector.
    #[arg(long, value_name = "TEXT")]
    pub embed: Vec<String>,
    /// A prompt to continue: prints the text as it streams.
    #[arg(long, value_name = "TEXT", conflicts_with = "embed")]
    pub prompt: Option<String>,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Seconds to wait for the whole answer.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make a new cluster CA in DIR (ca.pem, ca.key). Keep ca.key off the nodes.
    Init { dir: PathBuf },
    /// Make a node's key and certificate, signed by the CA in CA_DIR, into OUT
    /// (node.pem, node.key, ca.pem): start the node with `--tls-dir OUT`.
    Issue {
        ca_dir: PathBuf,
        #[arg(long, value_name = "ID")]
        node_id: String,
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
    },
    /// A single-use join token: a new node started with `--seed ADDR --join-token TOKEN` gets
    /// its certificate from a seed that holds this CA (`--ca-dir`).
    Token {
        ca_dir: PathBuf,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
    },
    /// Show the cluster as a running node sees it.
    Status {
        /// The node's HTTP address.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        http: String,
        /// Print the JSON of /admin/cluster instead of a table.
        #[arg(long)]
        json: bool,
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
    /// Deploy a model cluster-wide at run time: every node places its replicas alike.
    Deploy(crate::model_cli::DeployArgs),
    /// Undeploy a run-time deployment: its replicas drain and stop on every node.
    Undeploy {
        name: String,
        #[command(flatten)]
        node: crate::keys_cli::NodeArgs,
    },
    /// List the run-time deployments and their replicas.
    List {
        #[command(flatten)]
        node: crate::keys_cli::NodeArgs,
    },
    /// Put a model file into the node's store: a file on the node (peers can then fetch it by
    /// its sha256), an http(s):// URL (downloaded), or a sha256 that peers have (fetched).
    Pull {
        /// The file's path on the node, a URL, or a sha256.
        path: PathBuf,
        /// The sha256 a downloaded file must have.
        #[arg(long)]
        sha256: Option<String>,
        #[command(flatten)]
        node: crate::keys_cli::NodeArgs,
    },
    /// Remove the store's files that no run-time deployment names.
    Gc {
        #[command(flatten)]
        node: crate::keys_cli::NodeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and the layer each value came from; with `--http`, a
    /// running node's (its run-time changes included, and what waits for a restart).
    Show {
        #[command(flatten)]
        args: ConfigArgs,
        /// A running node's HTTP address.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Print JSON (with `--http`).
        #[arg(long)]
        json: bool,
    },
    /// Change one key of a running node, e.g. `golek config set log.filter debug`. Hot keys
    /// apply at once; the others at the next start. Kept across restarts.
    Set {
        /// The key, as a dotted path (`models.NAME.queue_capacity`).
        #[arg(value_name = "KEY")]
        path: String,
        value: String,
        #[command(flatten)]
        node: crate::keys_cli::NodeArgs,
    },
    /// Remove a running node's run-time value of KEY (it falls back to the file, the
    /// environment, the flags or the default).
    Unset {
        #[arg(value_name = "KEY")]
        path: String,
        #[command(flatten)]
        node: crate::keys_cli::NodeArgs,
    },
    /// Make a running node read its configuration file again (as SIGHUP does).
    Reload {
        #[command(flatten)]
        node: crate::keys_cli::NodeArgs,
    },
    /// With the node stopped: forget every run-time change kept in its data dir.
    Reset {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
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
    /// This node's id in the cluster (`cluster.node_id`); must match its certificate.
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// The QUIC (UDP) address for gossip, peers and QUIC clients (`cluster.quic_addr`).
    #[arg(long, value_name = "ADDR")]
    pub quic_addr: Option<String>,
    /// A node to join through, host:port of its QUIC address (repeatable; `cluster.seeds`).
    #[arg(long = "seed", value_name = "ADDR")]
    pub seeds: Vec<String>,
    /// What `golek cluster issue` wrote for this node; joins the cluster (`cluster.tls_dir`).
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<String>,
    /// A token from `golek cluster token`: fetch this node's certificate from a seed into
    /// `--tls-dir` when it has none yet (`cluster.join_token`).
    #[arg(long, value_name = "TOKEN")]
    pub join_token: Option<String>,
    /// A CA folder with its key: admit nodes that present join tokens (`cluster.ca_dir`).
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<String>,
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
        if let Some(id) = &self.node_id {
            cli.push(CliOverride::new("cluster.node_id", id, "--node-id"));
        }
        if let Some(addr) = &self.quic_addr {
            cli.push(CliOverride::new("cluster.quic_addr", addr, "--quic-addr"));
        }
        if !self.seeds.is_empty() {
            let list = self
                .seeds
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            cli.push(CliOverride::new(
                "cluster.seeds",
                format!("[{list}]"),
                "--seed",
            ));
        }
        if let Some(dir) = &self.tls_dir {
            cli.push(CliOverride::new("cluster.tls_dir", dir, "--tls-dir"));
        }
        if let Some(token) = &self.join_token {
            cli.push(CliOverride::new(
                "cluster.join_token",
                format!("{token:?}"),
                "--join-token",
            ));
        }
        if let Some(dir) = &self.ca_dir {
            cli.push(CliOverride::new("cluster.ca_dir", dir, "--ca-dir"));
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
            ..Default::default()
        };
        Ok(golek_config::load(&inputs)?)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    // `serve` installs the configured log once its configuration is loaded.
    match cli.command {
        Command::Serve(_) => {}
        Command::Run(_) => {
            crate::logging::install_default_at("warn");
        }
        _ => crate::init_tracing(),
    }
    match cli.command {
        Command::Serve(args) => {
            let loaded = args.load()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("golek-rt")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                // The log as configured, run-time changes included, before anything logs.
                let loaded = crate::with_stored_changes(loaded).await?;
                let traces = crate::telemetry::layer(&loaded.config.telemetry);
                crate::logging::install(&crate::logging::start_config(&loaded), traces);
                crate::serve(loaded, crate::server::shutdown_signal()).await
            })
        }
        Command::Config { command } => crate::config_cli::run(command),
        Command::Cluster { command } => cluster_command(command),
        Command::Status { http, json } => crate::status::actors_command(&http, json),
        Command::Key { command } => crate::keys_cli::run(command),
        Command::Drain(args) => crate::fleet_cli::drain(args),
        Command::Run(args) => crate::run_cli::run(args),
        Command::Doctor(args) => crate::doctor::run(&args.load()?.config),
        Command::Ps(args) => crate::run_cli::ps(args),
        Command::Plugin { command } => crate::plugin_cli::run(command),
        Command::Infer(args) => infer_command(args),
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
        Command::Model {
            command: ModelCommand::Deploy(args),
        } => crate::model_cli::deploy(args),
        Command::Model {
            command: ModelCommand::Undeploy { name, node },
        } => crate::model_cli::undeploy(&name, &node),
        Command::Model {
            command: ModelCommand::List { node },
        } => crate::model_cli::list(&node),
        Command::Model {
            command: ModelCommand::Pull { path, sha256, node },
        } => crate::model_cli::pull(&path, sha256.as_deref(), &node),
        Command::Model {
            command: ModelCommand::Gc { node },
        } => crate::model_cli::gc(&node),
    }
}

fn cluster_command(command: ClusterCommand) -> anyhow::Result<()> {
    use golek_actors::cluster::tls;
    match command {
        ClusterCommand::Init { dir } => {
            tls::init_ca(&dir)?;
            println!(
                "cluster CA written to {} (ca.pem, ca.key); issue node certificates with `golek cluster issue {} --node-id ID --out DIR`",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        ClusterCommand::Issue {
            ca_dir,
            node_id,
            out,
        } => {
            tls::issue(&ca_dir, &node_id, &out)?;
            println!(
                "certificate for {node_id} written to {} (node.pem, node.key, ca.pem); start it with `golek serve --node-id {node_id} --tls-dir {}`",
                out.display(),
                out.display()
            );
            Ok(())
        }
        ClusterCommand::Token { ca_dir, ttl_s } => {
            println!(
                "{}",
                golek_actors::cluster::join::make_token(&ca_dir, ttl_s)?
            );
            Ok(())
        }
        ClusterCommand::Status { http, json } => {
            let body = crate::status::fetch_json(&format!("http://{http}/admin/cluster"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print!("{}", crate::status::cluster_table(&body));
            }
            Ok(())
        }
    }
}

fn infer_command(args: InferArgs) -> anyhow::Result<()> {
    use golek_protocol::inference::{
        EmbeddingInput, EmbeddingsRequest, GenerateRequest, InferenceEvent, InferenceRequest,
        Prompt, SamplingParams,
    };
    use std::io::Write;
    let request = match (&args.prompt, args.embed.is_empty()) {
        (Some(prompt), _) => InferenceRequest::Generate(GenerateRequest::new(
            Prompt::Text(prompt.clone()),
            Some(args.max_tokens),
            SamplingParams {
                temperature: args.temperature,
                ignore_eos: args.ignore_eos,
                ..Default::default()
            },
        )),
        (None, false) => InferenceRequest::Embeddings(EmbeddingsRequest {
            inputs: args
                .embed
                .iter()
                .cloned()
                .map(EmbeddingInput::Text)
                .collect(),
        }),
        (None, true) => anyhow::bail!("give --prompt TEXT or --embed TEXT"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = golek_actors::cluster::client::QuicClient::connect(args.quic, &args.tls_dir)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut events = client
            .infer(
                &args.model,
                request,
                std::time::Duration::from_secs(args.timeout_s),
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let mut stdout = std::io::stdout();
        let mut served_by = client.server_id.clone();
        while let Some(event) = events.next().await {
            match event.map_err(|e| anyhow::anyhow!("{}: {}", e.code.as_str(), e.message))? {
                InferenceEvent::Embeddings(vectors) => {
                    for (index, v) in vectors.iter().enumerate() {
                        let line = serde_json::json!({"index": index, "tokens": v.tokens, "embedding": v.vector});
                        writeln!(stdout, "{line}")?;
                    }
                }
                InferenceEvent::Text { text, .. } => {
                    write!(stdout, "{text}")?;
                    stdout.flush()?;
                }
                InferenceEvent::Finished {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                    ..
                } => {
                    writeln!(stdout)?;
                    eprintln!(
                        "finished: {reason:?}, {prompt_tokens} prompt tokens, {completion_tokens} completion tokens (served by {served_by}, via {})",
                        client.server_id
                    );
                }
                InferenceEvent::Served { node, model } => served_by = format!("{node}/{model}"),
                InferenceEvent::Started { .. }
                | InferenceEvent::ToolCall { .. }
                | InferenceEvent::Tensors(_) => {}
            }
        }
        client.close().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
