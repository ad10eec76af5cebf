//! `GET /v1/models` and `GET /v1/models/{id}`.

use axum::extract::{Path, State};
use axum::Json;
use golek_actors::ModelEntry;
use golek_protocol::openai::{ModelDetails, ModelList, ModelObject};

use super::{ApiError, AppState};

fn object(entry: &ModelEntry) -> ModelObject {
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
        }),
    }
}

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let table = state.router.table();
    Json(ModelList {
        object: "list".into(),
        data: table.models.values().map(object).collect(),
    })
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    let entry = state.router.entry(&id)?;
    Ok(Json(object(&entry)))
}
