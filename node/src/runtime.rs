//! The portable runtime: Golek's models inside a Rust program, without HTTP. The same
//! configuration (file, `GOLEK_*` environment, `set` overrides), the same supervision tree and
//! providers as `golek serve`, and requests answered with the same event stream.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use golek_node::Runtime;
//! let rt = Runtime::builder()
//!     .only(["golek-tiny"])
//!     .start()
//!     .await?;
//! rt.ready("golek-tiny", std::time::Duration::from_secs(60)).await?;
//! let text = rt.complete("golek-tiny", "Once upon a time", 16).await?;
//! println!("{text}");
//! rt.shutdown().await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use golek_actors::{EventRx, NodeHandle};
use golek_config::{CliOverride, ConfigInputs};
use golek_protocol::inference::{
    ChatMessage, Embedding, EmbeddingInput, EmbeddingsRequest, GenerateRequest, InferenceEvent,
    InferenceRequest, Prompt, SamplingParams,
};
use golek_protocol::model::ModelState;
use golek_protocol::{ErrorCode, ErrorInfo};

/// How a [`Runtime`] is configured before it starts.
#[derive(Debug, Default)]
pub struct RuntimeBuilder {
    file: Option<PathBuf>,
    sets: Vec<(String, String)>,
    only: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    env: bool,
}

impl RuntimeBuilder {
    /// A node configuration file (the same TOML as `golek serve --config`).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// One setting, as `--set KEY=VALUE` (`models.NAME.params.n_ctx`, `runtime.threads`).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.sets.push((key.into(), value.into()));
        self
    }

    /// Serve only these of the configured models (the others are not loaded).
    pub fn only<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.only = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// Where the runtime keeps its registry; by default a temporary folder removed at
    /// shutdown, so that a runtime never takes the data dir of a node on the same machine.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Read `GOLEK_*` variables of the environment too (as `golek serve` does).
    pub fn with_env(mut self) -> Self {
        self.env = true;
        self
    }

    /// Loads and validates the configuration, then starts the supervision tree. Models load
    /// in the background: [`Runtime::ready`] waits for one.
    pub async fn start(self) -> anyhow::Result<Runtime> {
        let temp = match &self.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().context("cannot make a temporary data dir")?),
        };
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
            .unwrap_or_default();
        let env: BTreeMap<String, String> = match self.env {
            true => std::env::vars()
                .filter(|(k, _)| k.starts_with("GOLEK_") || k == "HOME")
                .collect(),
            false => std::env::var("HOME")
                .map(|h| BTreeMap::from([("HOME".to_string(), h)]))
                .unwrap_or_default(),
        };
        let flag = |k: &str, v: &str| CliOverride::new(k, v, "Runtime::set");
        let mut cli = vec![flag("node.data_dir", &data_dir.to_string_lossy())];
        if let Some(only) = &self.only {
            // Which models the configuration has is known once it is loaded: load it once to
            // learn them, then turn off the others.
            let probe = golek_config::load(&ConfigInputs {
                file: self.file.clone(),
                env: env.clone(),
                cli: self.sets.iter().map(|(k, v)| flag(k, v)).collect(),
                ..Default::default()
            })?;
            let known = probe.model_names();
            for name in only {
                if !known.contains(name) {
                    anyhow::bail!(
                        "model {name:?} is not in the configuration (it has: {})",
                        known.join(", ")
                    );
                }
            }
            for name in &known {
                cli.push(flag(
                    &format!("models.{name}.enabled"),
                    if only.contains(name) { "true" } else { "false" },
                ));
            }
        }
        cli.extend(self.sets.iter().map(|(k, v)| flag(k, v)));
        let loaded = golek_config::load(&ConfigInputs {
            file: self.file,
            env,
            cli,
            ..Default::default()
        })?;
        let loaded = crate::with_stored_changes(loaded).await?;
        // No HTTP listener: the address is only what a cluster would learn.
        let addr = loaded.config.http.addr;
        let node = golek_actors::start_node_loaded(loaded, addr)
            .await
            .context("cannot start the runtime")?;
        Ok(Runtime { node, _temp: temp })
    }
}

/// A running runtime: the node's supervision tree with its models, in this process.
pub struct Runtime {
    node: NodeHandle,
    _temp: Option<tempfile::TempDir>,
}

/// The events of one request, as the providers emit them (the first says who served it).
pub struct Events {
    rx: EventRx,
}

impl Events {
    /// The next event, or `None` once the answer is complete.
    pub async fn next(&mut self) -> Option<Result<InferenceEvent, ErrorInfo>> {
        self.rx.recv().await
    }
}

impl Runtime {
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The node under the runtime (its router, configuration, supervision tree).
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// Every model with its state.
    pub fn models(&self) -> Vec<(String, ModelState)> {
        let table = self.node.router.table();
        table
            .models
            .values()
            .map(|e| (e.name.clone(), e.state.clone()))
            .collect()
    }

    /// Waits until `model` is ready; an error names its state (and last error) if it fails to
    /// load or is not ready within `timeout`.
    pub async fn ready(&self, model: &str, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        let mut table = self.node.router.watch_table();
        loop {
            let (state, error) = {
                let t = table.borrow_and_update();
                match t.models.get(model) {
                    Some(e) => (e.state.clone(), e.last_error.clone()),
                    None => anyhow::bail!("model {model:?} is not served by this runtime"),
                }
            };
            match state {
                ModelState::Ready => return Ok(()),
                ModelState::BreakerOpen => anyhow::bail!(
                    "model {model:?} failed to load: {}",
                    error.unwrap_or_else(|| "no details".into())
                ),
                _ => {}
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, table.changed()).await.is_err() {
                anyhow::bail!(
                    "model {model:?} is not ready after {timeout:?} (it is {state:?}{})",
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                );
            }
        }
    }

    fn timeout(&self) -> Duration {
        self.node.config.http.request_timeout
    }

    /// Runs any request; its events as they come.
    pub fn submit(&self, model: &str, request: InferenceRequest) -> Result<Events, ErrorInfo> {
        let rx = self.node.router.submit(model, request, self.timeout())?;
        Ok(Events { rx })
    }

    /// A generation request (text or chat); its events as they come.
    pub fn generate(&self, model: &str, request: GenerateRequest) -> Result<Events, ErrorInfo> {
        self.submit(model, InferenceRequest::Generate(request))
    }

    /// Embeddings of `texts`, in order.
    pub async fn embed(&self, model: &str, texts: &[&str]) -> Result<Vec<Embedding>, ErrorInfo> {
        let request = InferenceRequest::Embeddings(EmbeddingsRequest {
            inputs: texts
                .iter()
                .map(|t| EmbeddingInput::Text(t.to_string()))
                .collect(),
        });
        let mut events = self.submit(model, request)?;
        while let Some(event) = events.next().await {
            if let InferenceEvent::Embeddings(e) = event? {
                return Ok(e);
            }
        }
        Err(ErrorInfo::new(
            ErrorCode::Internal,
            "the answer ended without embeddings",
        ))
    }

    /// The text `model` continues `prompt` with (greedy, at most `max_tokens` tokens).
    pub async fn complete(
        &self,
        model: &str,
        prompt: &str,
        max_tokens: u32,
    ) -> Result<String, ErrorInfo> {
        self.collect(model, Prompt::Text(prompt.to_string()), max_tokens)
            .await
    }

    /// The assistant's answer to `messages` (greedy, at most `max_tokens` tokens).
    pub async fn chat(
        &self,
        model: &str,
        messages: Vec<ChatMessage>,
        max_tokens: u32,
    ) -> Result<String, ErrorInfo> {
        self.collect(model, Prompt::Chat(messages), max_tokens)
            .await
    }

    async fn collect(
        &self,
        model: &str,
        prompt: Prompt,
        max_tokens: u32,
    ) -> Result<String, ErrorInfo> {
        let sampling = SamplingParams {
            temperature: 0.0,
            ..Default::default()
        };
        let request = GenerateRequest::new(prompt, Some(max_tokens), sampling);
        let mut events = self.generate(model, request)?;
        let mut out = String::new();
        while let Some(event) = events.next().await {
            if let InferenceEvent::Text { text, .. } = event? {
                out.push_str(&text);
            }
        }
        Ok(out)
    }

    /// Stops the models and the supervision tree; a temporary data dir is removed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        Ok(self.node.shutdown().await?)
    }
}
