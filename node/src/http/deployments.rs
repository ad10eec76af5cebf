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
            let failed = (*node == state.node_id)
                .then(|| placed.failed.get(&record.name))
                .flatten();
            match (failed, replica_state(state, node, &record.name)) {
                (Some(reason), _) => json!({"node": node, "state": "failed", "reason": reason}),
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
    let path = match &model.params {
        golek_config::ProviderParams::Gguf(p) => Some(&p.model_path),
        golek_config::ProviderParams::Onnx(p) => Some(&p.model_path),
        _ => None,
    };
    path.and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

pub async fn deploy(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let spec: DeploymentSpec = serde_json::from_slice(&body).map_err(|e| {
        let field = e.to_string();
        ErrorInfo::invalid("body", format!("deployment: {field}"))
    })?;
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
    let record = state
        .placement
        .desired
        .deploy(spec, local_model_bytes(&model))
        .await?;
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
