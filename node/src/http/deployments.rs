//! `/admin/deployments`: run-time deployments, cluster-wide. `POST` validates a spec the way a
//! `[models.NAME]` table is validated (errors name the field), stores it (flushed) and lets
//! gossip spread it; every node's placement then runs its share. `GET` shows each deployment
//! with its replicas (node and state) as this node sees them; `DELETE` undeploys (replicas
//! drain, then stop), on every node.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use golek_actors::placement::Assignment;
use golek_protocol::deploy::{DeploymentSpec, DesiredRecord};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::{json, Value};

use super::{ApiError, AppState};

async fn assignment(state: &AppState) -> Assignment {
    state.placement.assignment().await
}

/// The state of `name` on `node`, as this node knows it.
fn replica_state(state: &AppState, node: &str, name: &str) -> Option<String> {
    if node == state.node_id {
        return state
            .router
            .table()
            .models
            .get(name)
            .map(|e| e.state.as_str().to_string());
    }
    let cluster = state.router.cluster()?;
    let view = cluster.view();
    let member = view.members.iter().find(|m| m.node_id == node)?;
    let advert = member.models.iter().find(|a| a.name == name)?;
    Some(if member.alive {
        advert.state.as_str().to_string()
    } else {
        "unreachable".to_string()
    })
}

fn shown(state: &AppState, record: &DesiredRecord, placed: &Assignment) -> Value {
    let assigned = placed.nodes.get(&record.name).cloned().unwrap_or_default();
    let mut replicas: Vec<Value> = assigned
        .iter()
        .map(|node| {
            let here = *node == state.node_id;
            let failed = here.then(|| placed.failed.get(&record.name)).flatten();
            let fetching = here.then(|| placed.downloading.get(&record.name)).flatten();
            match (failed, replica_state(state, node, &record.name)) {
                (Some(reason), _) => json!({"node": node, "state": "failed", "reason": reason}),
                (None, None) if fetching.is_some() => {
                    let (done, total) = fetching.copied().unwrap_or_default();
                    json!({"node": node, "state": "downloading",
                           "progress": {"bytes": done, "total_bytes": total}})
                }
                (None, Some(s)) => json!({"node": node, "state": s}),
                (None, None) => json!({"node": node, "state": "pending"}),
            }
        })
        .collect();
    // Nodes still running it though no longer assigned (draining away).
    let mut others: Vec<String> = Vec::new();
    if let Some(cluster) = state.router.cluster() {
        for m in &cluster.view().members {
            if !assigned.contains(&m.node_id) && m.models.iter().any(|a| a.name == record.name) {
                others.push(m.node_id.clone());
            }
        }
    }
    for node in others {
        if let Some(s) = replica_state(state, &node, &record.name) {
            replicas.push(json!({"node": node, "state": s}));
        }
    }
    let spec = record.spec.as_ref();
    json!({
        "name": record.name,
        "version": record.version,
        "provider": spec.map(|s| s.provider.clone()),
        "wanted": spec.map(|s| serde_json::to_value(s.replicas).unwrap_or_default()),
        "spec": spec,
        "model_bytes": record.model_bytes,
        "replicas": replicas,
    })
}

/// The model file's size where it is on this node (what placement fits), or 0.
fn local_model_bytes(model: &golek_config::ModelConfig) -> u64 {
    model_path(model)
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

/// The size of a stored file of `sha` here (peers' sizes are learned when fetching).
fn known_size(state: &AppState, sha: &str) -> Option<u64> {
    state.placement.store.size(sha)
}

/// `POST /admin/models/pull` `{"path": P}` or `{"sha256": H}`: puts a local file into this
/// node's store (peers can then fetch it by its sha256), or fetches one from the peers that
/// have it; answers its `sha256` and `bytes`.
pub async fn pull(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    if let Some(url) = body["url"].as_str() {
        return pull_url(&state, url, body["sha256"].as_str()).await;
    }
    if let Some(sha) = body["sha256"].as_str() {
        if !golek_protocol::deploy::is_sha256(sha) {
            return Err(ErrorInfo::invalid(
                "sha256",
                format!("must be 64 lowercase hex digits, got {sha:?}"),
            )
            .into());
        }
        let pull = state.placement.pulls.start(sha);
        let progress = pull.progress.clone();
        golek_actors::placement::pull_from_peers(
            &state.router,
            &state.placement.store,
            sha,
            progress,
        )
        .await
        .map_err(|e| ErrorInfo::new(ErrorCode::Unavailable, format!("model file {sha}: {e}")))?;
        let bytes = state.placement.store.size(sha).unwrap_or(0);
        return Ok(Json(json!({"sha256": sha, "bytes": bytes})));
    }
    let path = body["path"].as_str().ok_or_else(|| {
        ErrorInfo::invalid(
            "path",
            "give the local path of a model file (path) or a sha256 peers have",
        )
    })?;
    let path = std::path::PathBuf::from(path);
    if !path.is_file() {
        return Err(ErrorInfo::invalid(
            "path",
            format!("{} is not a file on this node", path.display()),
        )
        .into());
    }
    let store = state.placement.store.clone();
    let sha = tokio::task::spawn_blocking(move || store.adopt(&path))
        .await
        .map_err(|e| ErrorInfo::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| ErrorInfo::invalid("path", format!("cannot read it: {e}")))?;
    let bytes = state.placement.store.size(&sha).unwrap_or(0);
    Ok(Json(json!({"sha256": sha, "bytes": bytes})))
}

/// The pulls running now, with their progress (what `golek model pull` draws its bar from).
pub async fn pulls(State(state): State<AppState>) -> Json<Value> {
    let running: Vec<Value> = state
        .placement
        .pulls
        .list()
        .into_iter()
        .map(|(source, done, total)| json!({"source": source, "bytes": done, "total_bytes": total}))
        .collect();
    Json(json!({"pulls": running}))
}

/// A file downloaded from `url` into the store (checked against `sha256` when given).
async fn pull_url(state: &AppState, url: &str, sha: Option<&str>) -> Result<Json<Value>, ApiError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ErrorInfo::invalid(
            "url",
            format!("must be an http:// or https:// URL, got {url:?}"),
        )
        .into());
    }
    let store = &state.placement.store;
    let pull = state.placement.pulls.start(url);
    let progress = &pull.progress;
    let stored = match sha {
        Some(sha) if golek_protocol::deploy::is_sha256(sha) => {
            golek_actors::placement::http_fetch::download(url, sha, store, progress)
                .await
                .map(|_| sha.to_string())
        }
        Some(sha) => {
            return Err(ErrorInfo::invalid(
                "sha256",
                format!("must be 64 lowercase hex digits, got {sha:?}"),
            )
            .into())
        }
        None => golek_actors::placement::http_fetch::download_any(url, store, progress).await,
    }
    .map_err(|e| ErrorInfo::new(ErrorCode::Unavailable, e))?;
    let bytes = store.size(&stored).unwrap_or(0);
    Ok(Json(json!({"sha256": stored, "bytes": bytes})))
}

/// `POST /admin/models/gc`: removes the store's files no run-time deployment names.
pub async fn gc(State(state): State<AppState>) -> Json<Value> {
    let keep: Vec<String> = state
        .placement
        .desired
        .live()
        .iter()
        .filter_map(|r| r.spec.as_ref()?.model_sha256.clone())
        .collect();
    let removed = state.placement.store.gc(&keep);
    let files: Vec<Value> = removed
        .iter()
        .map(|(name, bytes)| json!({"file": name, "bytes": bytes}))
        .collect();
    Json(json!({"removed": files}))
}

/// A file that is here is put into the store (so that peers can fetch it) and the spec names
/// it by hash; a spec that names a hash needs no path.
async fn adopt_model_file(
    state: &AppState,
    spec: &mut DeploymentSpec,
    model: &golek_config::ModelConfig,
) -> Result<u64, ErrorInfo> {
    let Some(path) = model_path(model).filter(|p| p.is_file()) else {
        return Ok(0);
    };
    let store = state.placement.store.clone();
    let sha = tokio::task::spawn_blocking(move || store.adopt(&path))
        .await
        .map_err(|e| ErrorInfo::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| {
            ErrorInfo::invalid(
                "params.model_path",
                format!("cannot read the model file: {e}"),
            )
        })?;
    match &spec.model_sha256 {
        Some(given) if *given != sha => {
            return Err(ErrorInfo::invalid(
                "model_sha256",
                format!("the file at params.model_path has sha256 {sha}, not {given}"),
            ))
        }
        _ => spec.model_sha256 = Some(sha.clone()),
    }
    Ok(state.placement.store.size(&sha).unwrap_or(0))
}

fn model_path(model: &golek_config::ModelConfig) -> Option<std::path::PathBuf> {
    match &model.params {
        golek_config::ProviderParams::Gguf(p) => Some(p.model_path.clone()),
        golek_config::ProviderParams::Onnx(p) => Some(p.model_path.clone()),
        _ => None,
    }
}

pub async fn deploy(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let mut spec: DeploymentSpec = serde_json::from_slice(&body).map_err(|e| {
        let field = e.to_string();
        ErrorInfo::invalid("body", format!("deployment: {field}"))
    })?;
    if let Some(sha) = &spec.model_sha256 {
        if !spec.params.contains_key("model_path") && golek_protocol::deploy::is_sha256(sha) {
            // Each node runs it from its own store.
            let at = state.placement.store.dir().join(sha);
            spec.params
                .insert("model_path".into(), at.to_string_lossy().to_string().into());
        }
    }
    let config = state.config();
    let model =
        golek_config::validate_deployment(&spec, &config.node.assets_dir).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            let first = errors
                .first()
                .map_or("body".to_string(), |e| e.path.clone());
            ErrorInfo::invalid(
                first,
                format!("deployment {:?}: {}", spec.name, text.join("; ")),
            )
        })?;
    if config.models.contains_key(&spec.name) || config.routes.contains_key(&spec.name) {
        return Err(ErrorInfo::invalid(
            "name",
            format!(
                "{:?} is deployed (or routed) by this node's config file; a run-time deployment needs another name",
                spec.name
            ),
        )
        .into());
    }
    let existed = state.placement.desired.get(&spec.name).is_some();
    let adopted = adopt_model_file(&state, &mut spec, &model).await?;
    let bytes = match adopted {
        0 => spec
            .model_sha256
            .as_deref()
            .and_then(|sha| known_size(&state, sha))
            .unwrap_or_else(|| local_model_bytes(&model)),
        n => n,
    };
    let record = state.placement.desired.deploy(spec, bytes).await?;
    let placed = assignment(&state).await;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(shown(&state, &record, &placed))))
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let placed = assignment(&state).await;
    let all: Vec<Value> = state
        .placement
        .desired
        .live()
        .iter()
        .map(|r| shown(&state, r, &placed))
        .collect();
    Json(json!({ "deployments": all }))
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.placement.desired.get(&name).ok_or_else(|| {
        ErrorInfo::new(
            ErrorCode::NotFound,
            format!("no run-time deployment is named {name:?}"),
        )
    })?;
    let placed = assignment(&state).await;
    Ok(Json(shown(&state, &record, &placed)))
}

pub async fn undeploy(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.placement.desired.undeploy(&name).await?;
    Ok(Json(
        json!({"name": record.name, "version": record.version, "undeployed": true}),
    ))
}
