//! `golek key create|list|revoke`: API keys, through a running node's admin API. With auth on,
//! pass an admin key in `--key` or `GOLEK_API_KEY` (from loopback none is needed while the
//! node has no admin key, so the first one can be made).

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a key for a tenant; the key is printed once, alone on the last line.
    Create {
        #[arg(long)]
        tenant: String,
        /// Requests per minute (per node serving them).
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute, prompt and generated (per node serving them).
        #[arg(long)]
        tpm: Option<u32>,
        /// Requests running or queued at once (per node serving them).
        #[arg(long)]
        max_concurrency: Option<u32>,
        /// An admin key: it may use the admin routes.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the keys the node knows (ids, tenants, limits; never a secret).
    List {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Revoke a key by id; every node refuses it within seconds.
    Revoke {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The node's HTTP address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: String,
    /// An admin key (when the node has auth on).
    #[arg(long, env = "GOLEK_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// Calls a node's admin API; a non-2xx answer is an error with the node's message.
pub(crate) fn call(
    node: &NodeArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    call_with(node, method, path, |request| match &body {
        Some(body) => request.json(body),
        None => request,
    })
}

/// [`call`] with the request's body (and headers) set by `with`: a JSON body, an upload.
pub(crate) fn call_with(
    node: &NodeArgs,
    method: reqwest::Method,
    path: &str,
    with: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> anyhow::Result<Value> {
    let url = format!("http://{}{path}", node.http);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut request = reqwest::Client::new().request(method, &url);
        if let Some(key) = &node.key {
            request = request.bearer_auth(key);
        }
        let request = with(request);
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = answer["error"]["message"].as_str().unwrap_or("no details");
            anyhow::bail!("{url} answered HTTP {status}: {message}");
        }
        Ok(answer)
    })
}

fn limit(v: &Value) -> String {
    v.as_u64().map_or("-".to_string(), |n| n.to_string())
}

pub fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create {
            tenant,
            rpm,
            tpm,
            max_concurrency,
            admin,
            node,
        } => {
            let body = json!({"tenant": tenant, "rpm": rpm, "tpm": tpm,
                              "max_concurrency": max_concurrency, "admin": admin});
            let made = call(&node, reqwest::Method::POST, "/admin/keys", Some(body))?;
            println!(
                "created {} for tenant {}{} (shown once; store it now)",
                made["id"].as_str().unwrap_or("?"),
                made["tenant"].as_str().unwrap_or("?"),
                if admin { ", admin" } else { "" }
            );
            println!("{}", made["key"].as_str().context("the node sent no key")?);
        }
        KeyCommand::List { node } => {
            let listed = call(&node, reqwest::Method::GET, "/admin/keys", None)?;
            println!(
                "{:<18} {:<20} {:<6} {:>8} {:>10} {:>8} state",
                "id", "tenant", "admin", "rpm", "tpm", "conc"
            );
            for k in listed["keys"].as_array().into_iter().flatten() {
                println!(
                    "{:<18} {:<20} {:<6} {:>8} {:>10} {:>8} {}",
                    k["id"].as_str().unwrap_or("?"),
                    k["tenant"].as_str().unwrap_or("?"),
                    k["admin"].as_bool().unwrap_or(false),
                    limit(&k["rpm"]),
                    limit(&k["tpm"]),
                    limit(&k["max_concurrency"]),
                    if k["revoked"].as_bool().unwrap_or(false) {
                        "revoked"
                    } else {
                        "live"
                    },
                );
            }
        }
        KeyCommand::Revoke { id, node } => {
            let revoked = call(
                &node,
                reqwest::Method::DELETE,
                &format!("/admin/keys/{id}"),
                None,
            )?;
            println!(
                "revoked {} (tenant {})",
                revoked["id"].as_str().unwrap_or("?"),
                revoked["tenant"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
