//! `GET /v1/models` and `GET /v1/models/{id}`.

use axum::extract::{Path, State};
use axum::Json;
use golek_actors::ModelEntry;
use golek_protocol::openai::{ModelDetails, ModelList, ModelObject};

use super::{ApiError, AppState};

fn object(entry: &ModelEntry, nodes: Vec<String>) -> ModelObject {
    ModelObject {
        id: entry.name.clone(),
        object: "model".into(),
        created: entry.created_unix_s,
        owned_by: "golek".into(),
        golek: Some(ModelDetails {
            provider: entry.provider.clone(),
            capabilities: entry
                .info
                .as_ref()
                .map(|i| {
                    i.capabilities
                        .names()
                        .into_iter()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            state: entry.state.as_str().to_string(),
            nodes,
        }),
    }
}

/// Which nodes serve `model`: this one (when it has it) then live peers, by id.
fn nodes_of(state: &AppState, model: &str, local: bool) -> Vec<String> {
    let Some(cluster) = state.router.cluster() else {
        return Vec::new();
    };
    let mut nodes: Vec<String> = local.then(|| state.node_id.clone()).into_iter().collect();
    nodes.extend(
        cluster
            .view()
            .members
            .iter()
            .filter(|m| !m.is_self && m.alive && m.models.iter().any(|a| a.name == model))
            .map(|m| m.node_id.clone()),
    );
    nodes
}

/// Every model this node can serve: its own, then those only its peers have.
pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let table = state.router.table();
    let mut data: Vec<ModelObject> = table
        .models
        .values()
        .map(|e| object(e, nodes_of(&state, &e.name, true)))
        .collect();
    if let Some(cluster) = state.router.cluster() {
        let view = cluster.view();
        let remote: std::collections::BTreeSet<&str> = view
            .members
            .iter()
            .filter(|m| !m.is_self && m.alive)
            .flat_map(|m| m.models.iter().map(|a| a.name.as_str()))
            .filter(|name| !table.models.contains_key(*name))
            .collect();
        for name in remote {
            if let Ok(entry) = state.router.entry(name) {
                data.push(object(&entry, nodes_of(&state, name, false)));
            }
        }
    }
    Json(ModelList {
        object: "list".into(),
        data,
    })
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    let entry = state.router.entry(&id)?;
    let local = state.router.table().models.contains_key(&id);
    Ok(Json(object(&entry, nodes_of(&state, &id, local))))
}
