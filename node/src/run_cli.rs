//! `golek run MODEL [PROMPT]`: chat with a model from the terminal, streamed token by token,
//! against a running node (`--http`) or an in-process runtime; and `golek ps`: what a node (or
//! the cluster) serves.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use golek_protocol::inference::{
    ChatMessage, GenerateRequest, InferenceEvent, Prompt, SamplingParams,
};
use serde_json::{json, Value};

use crate::keys_cli::{call, NodeArgs};
use crate::runtime::Runtime;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The model to chat with (a configured model's name).
    pub model: String,
    /// One message: its answer is printed and the command ends. Without it, an interactive
    /// session that keeps the conversation (`/exit` or end of input ends it).
    pub prompt: Option<String>,
    /// A running node's HTTP address; without it the model runs in this process.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// An API key for the node (when it has auth on).
    #[arg(long, env = "GOLEK_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The configuration for the in-process runtime (as `golek serve --config`).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Settings for the in-process runtime (`--set KEY=VALUE`, repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// A system message that opens the conversation.
    #[arg(long)]
    pub system: Option<String>,
}

enum Backend {
    Http {
        client: reqwest::Client,
        url: String,
        key: Option<String>,
    },
    Local(Box<Runtime>),
}

impl Backend {
    /// Streams the answer to `messages` to stdout; the whole answer.
    async fn answer(&self, args: &RunArgs, messages: &[ChatMessage]) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut stdout = std::io::stdout();
        let mut show = |text: &str, out: &mut String| -> anyhow::Result<()> {
            out.push_str(text);
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(())
        };
        match self {
            Backend::Http { client, url, key } => {
                let messages: Vec<Value> = messages
                    .iter()
                    .map(|m| json!({"role": m.role, "content": m.content}))
                    .collect();
                let mut request = client.post(format!("{url}/v1/chat/completions")).json(
                    &json!({"model": args.model, "messages": messages, "stream": true,
                                  "max_tokens": args.max_tokens, "temperature": args.temperature}),
                );
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                let response = request
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                let status = response.status();
                if !status.is_success() {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let message = body["error"]["message"].as_str().unwrap_or("no details");
                    anyhow::bail!("{url} answered HTTP {status}: {message}");
                }
                use eventsource_stream::Eventsource;
                let mut events = response.bytes_stream().eventsource();
                while let Some(event) = events.next().await {
                    let event = event.map_err(|e| anyhow::anyhow!("the stream broke: {e}"))?;
                    if event.data == "[DONE]" {
                        break;
                    }
                    let chunk: Value = serde_json::from_str(&event.data)
                        .with_context(|| format!("a chunk is not JSON: {}", event.data))?;
                    if let Some(message) = chunk["error"]["message"].as_str() {
                        anyhow::bail!("the model failed: {message}");
                    }
                    if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                        show(text, &mut out)?;
                    }
                }
            }
            Backend::Local(rt) => {
                let sampling = SamplingParams {
                    temperature: args.temperature,
                    ..Default::default()
                };
                let request = GenerateRequest::new(
                    Prompt::Chat(messages.to_vec()),
                    Some(args.max_tokens),
                    sampling,
                );
                let mut events = rt
                    .generate(&args.model, request)
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                while let Some(event) = events.next().await {
                    match event {
                        Ok(InferenceEvent::Text { text, .. }) => show(&text, &mut out)?,
                        Ok(_) => {}
                        Err(e) => anyhow::bail!("the model failed: {}", e.message),
                    }
                }
            }
        }
        println!();
        Ok(out)
    }
}

/// A spinner on stderr while `what` runs (hidden when stderr is not a terminal).
async fn with_spinner<T>(message: String, what: impl std::future::Future<Output = T>) -> T {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    let out = what.await;
    bar.finish_and_clear();
    out
}

async fn start_local(args: &RunArgs) -> anyhow::Result<Runtime> {
    let mut builder = Runtime::builder().with_env().only([args.model.as_str()]);
    if let Some(path) = &args.config {
        builder = builder.config_file(path);
    }
    for set in &args.sets {
        let (k, v) = set
            .split_once('=')
            .with_context(|| format!("--set {set}: expected KEY=VALUE"))?;
        builder = builder.set(k, v);
    }
    let rt = builder.start().await?;
    with_spinner(
        format!("loading {}", args.model),
        rt.ready(&args.model, Duration::from_secs(600)),
    )
    .await?;
    Ok(rt)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let backend = match &args.http {
            Some(http) => Backend::Http {
                client: reqwest::Client::new(),
                url: format!("http://{http}"),
                key: args.key.clone(),
            },
            None => Backend::Local(Box::new(start_local(&args).await?)),
        };
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system));
        }
        let result = match &args.prompt {
            Some(prompt) => {
                messages.push(ChatMessage::new("user", prompt));
                backend.answer(&args, &messages).await.map(|_| ())
            }
            None => interactive(&backend, &args, messages).await,
        };
        if let Backend::Local(rt) = backend {
            rt.shutdown().await?;
        }
        result
    })
}

async fn interactive(
    backend: &Backend,
    args: &RunArgs,
    mut messages: Vec<ChatMessage>,
) -> anyhow::Result<()> {
    // Lines from stdin, read on a thread of their own (a read blocks).
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        eprint!(">>> ");
        let Some(line) = lines.recv().await else {
            return Ok(());
        };
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            _ => {}
        }
        messages.push(ChatMessage::new("user", line));
        match backend.answer(args, &messages).await {
            Ok(answer) => messages.push(ChatMessage::new("assistant", &answer)),
            Err(e) => {
                // The conversation goes on without the message that failed.
                messages.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Every node of the cluster, not only this one.
    #[arg(long)]
    pub cluster: bool,
    /// Print the JSON the node answered.
    #[arg(long)]
    pub json: bool,
}

/// `golek ps`: the models a node (or every node of its cluster) serves, with state and load.
pub fn ps(args: PsArgs) -> anyhow::Result<()> {
    let path = if args.cluster {
        "/admin/cluster"
    } else {
        "/admin/models"
    };
    let body = call(&args.node, reqwest::Method::GET, path, None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    print!("{}", ps_table(&body, args.cluster));
    Ok(())
}

fn ps_table(body: &Value, cluster: bool) -> String {
    let mut out = format!(
        "{:<16} {:<28} {:<10} {:<12} {:>9} {:>8}\n",
        "NODE", "MODEL", "PROVIDER", "STATE", "QUEUE", "RESTARTS"
    );
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    if cluster {
        for m in body["members"].as_array().into_iter().flatten() {
            let node = match (m["alive"].as_bool(), m["draining"].as_bool()) {
                (Some(false), _) => format!("{} (dead)", s(&m["node_id"])),
                (_, Some(true)) => format!("{} (draining)", s(&m["node_id"])),
                _ => s(&m["node_id"]),
            };
            let load = &m["load"];
            let queue = format!(
                "{}/{}",
                load["queued"].as_u64().unwrap_or(0),
                load["capacity"].as_u64().unwrap_or(0)
            );
            for x in m["models"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:<16} {:<28} {:<10} {:<12} {:>9} {:>8}\n",
                    node,
                    s(&x["name"]),
                    s(&x["provider"]),
                    s(&x["state"]),
                    queue,
                    "-"
                ));
            }
        }
        return out;
    }
    let node = s(&body["node_id"]);
    for x in body["models"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<16} {:<28} {:<10} {:<12} {:>9} {:>8}\n",
            node,
            s(&x["name"]),
            s(&x["provider"]),
            s(&x["state"]),
            format!(
                "{}/{}",
                x["queue_depth"].as_u64().unwrap_or(0),
                x["queue_capacity"].as_u64().unwrap_or(0)
            ),
            x["restarts"].as_u64().unwrap_or(0)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_lists_each_model_with_its_node_state_and_queue() {
        let node = json!({"node_id": "n1", "models": [
            {"name": "golek-tiny", "provider": "gguf", "state": "ready", "queue_depth": 2,
             "queue_capacity": 64, "restarts": 1}]});
        let table = ps_table(&node, false);
        let row = table.lines().nth(1).unwrap();
        assert!(row.starts_with("n1 "), "{table}");
        assert!(row.contains("golek-tiny") && row.contains("ready") && row.contains("2/64"));
        let cluster = json!({"members": [
            {"node_id": "a", "alive": true, "draining": true, "load": {"queued": 0, "capacity": 8},
             "models": [{"name": "m", "provider": "onnx", "state": "draining"}]},
            {"node_id": "b", "alive": false, "models": [{"name": "m", "provider": "onnx", "state": "ready"}]}]});
        let table = ps_table(&cluster, true);
        assert!(
            table.contains("a (draining)") && table.contains("b (dead)"),
            "{table}"
        );
    }
}
