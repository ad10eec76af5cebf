//! A run-time deployment is a `[models.NAME]` table that arrived by the admin API: it passes the
//! same checks as one in a config file, and its errors name the spec's fields
//! (`params.model_path`, `queue_capacity`). Relative paths hang off the node's assets dir.

use std::path::Path;

use golek_protocol::deploy::DeploymentSpec;

use super::{build_model, typed, valid_model_name, Checker, RawModel};
use crate::layers::Provenance;
use crate::node_config::ModelConfig;
use crate::FieldError;

const PREFIX: &str = "deployment";

fn error(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_string(),
        message: message.into(),
        source: None,
    }
}

/// The `[models.NAME]` table `spec` stands for.
fn model_table(spec: &DeploymentSpec) -> Result<toml::Table, FieldError> {
    let mut table = toml::Table::new();
    table.insert(
        "provider".into(),
        toml::Value::String(spec.provider.clone()),
    );
    let params = toml::Value::try_from(serde_json::Value::Object(spec.params.clone()))
        .map_err(|e| error("params", format!("{e} (a null has no TOML form)")))?;
    table.insert("params".into(), params);
    for (key, value) in [
        ("max_batch_size", spec.max_batch_size),
        ("max_queue_delay_us", spec.max_queue_delay_us),
        ("queue_capacity", spec.queue_capacity),
    ] {
        if let Some(v) = value {
            table.insert(key.into(), toml::Value::Integer(v));
        }
    }
    Ok(table)
}

/// Checks a deployment and builds the model it runs on this node.
pub fn validate_deployment(
    spec: &DeploymentSpec,
    assets_dir: &Path,
) -> Result<ModelConfig, Vec<FieldError>> {
    if !valid_model_name(&spec.name) {
        return Err(vec![error(
            "name",
            format!(
                "must be 1 to 128 letters, digits or '-', '_', '.', ':', got {:?}",
                spec.name
            ),
        )]);
    }
    if let Err((path, message)) = spec.check() {
        return Err(vec![error(&path, message)]);
    }
    let table = model_table(spec).map_err(|e| vec![e])?;
    let provenance = Provenance::default();
    let mut c = Checker {
        provenance: &provenance,
        home: None,
        errors: Vec::new(),
        relative_to_assets: true,
    };
    let built = typed::<RawModel>(toml::Value::Table(table), PREFIX, &mut c)
        .and_then(|raw| build_model(&spec.name, raw, assets_dir, &mut c));
    let strip = |mut e: FieldError| {
        let inner = e
            .path
            .strip_prefix(&format!("models.{}.", spec.name))
            .or_else(|| e.path.strip_prefix(&format!("{PREFIX}.")))
            .map(str::to_string);
        if let Some(p) = inner {
            e.path = p;
        }
        e
    };
    match built {
        Some(model) if c.errors.is_empty() => Ok(model),
        _ if c.errors.is_empty() => Err(vec![error("(deployment)", "failed validation")]),
        _ => Err(c.errors.into_iter().map(strip).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> DeploymentSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_deployment_is_checked_like_a_model_table_and_names_its_fields() {
        let ok = validate_deployment(
            &spec(serde_json::json!({"name": "chat", "provider": "gguf",
                "params": {"model_path": "m.gguf"}, "replicas": 2, "queue_capacity": 8})),
            Path::new("/assets"),
        )
        .unwrap();
        assert_eq!(ok.name, "chat");
        assert_eq!(ok.queue_capacity, 8);
        match ok.params {
            crate::ProviderParams::Gguf(g) => {
                assert_eq!(g.model_path, Path::new("/assets/m.gguf"))
            }
            other => panic!("{other:?}"),
        }
        let errors = validate_deployment(
            &spec(serde_json::json!({"name": "chat", "provider": "gguf",
                "params": {"model_path": "m.gguf", "n_ctx": -3}, "queue_capacity": 0})),
            Path::new("/assets"),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"queue_capacity"), "{errors:?}");
        assert!(paths.contains(&"params.n_ctx"), "{errors:?}");
        let errors = validate_deployment(
            &spec(serde_json::json!({"name": "x", "provider": "nope"})),
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "provider", "{errors:?}");
        let errors = validate_deployment(
            &spec(serde_json::json!({"name": "bad name", "provider": "gguf"})),
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "name");
        let errors = validate_deployment(
            &spec(serde_json::json!({"name": "x", "provider": "gguf",
                "params": {"model_path": "m"}, "model_sha256": "abc"})),
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "model_sha256");
    }
}
