use std::collections::BTreeMap;

use super::*;
use crate::{load, load_str, ConfigInputs};

fn base() -> LoadedConfig {
    let env: BTreeMap<String, String> = [("HOME".to_string(), "/home/test".to_string())].into();
    let file = "[http]\nretry_after_s = 2\n\n[cluster]\njoin_token = \"s3cret-join\"\nnode_id = \"n1\"\nseeds = [\"127.0.0.1:7000\"]\ntls_dir = \"/tmp/golek-no-tls\"\nquic_addr = \"127.0.0.1:7946\"\n";
    load_str(
        file,
        std::path::Path::new("/etc/golek/node.toml"),
        &ConfigInputs {
            env,
            ..Default::default()
        },
    )
    .unwrap()
}

fn doc(text: &str) -> toml::Table {
    parse_document(text).unwrap()
}

#[test]
fn a_hot_change_applies_and_names_its_layer() {
    let started = base();
    let changed = started
        .with_change(&doc(
            r#"{"models": {"all_minilm_l6_v2": {"queue_capacity": 7}}, "log": {"filter": "debug"}}"#,
        ))
        .unwrap();
    assert_eq!(changed.config.models["all-minilm-l6-v2"].queue_capacity, 7);
    assert_eq!(changed.config.log.filter, "debug");
    assert_eq!(
        changed.changed_keys(&started),
        vec![
            "log.filter".to_string(),
            "models.all-minilm-l6-v2.queue_capacity".to_string()
        ]
    );
    assert!(changed.pending(&started).is_empty());
    let entry = changed
        .entries()
        .into_iter()
        .find(|e| e.key == "models.all-minilm-l6-v2.queue_capacity")
        .unwrap();
    assert_eq!(entry.source, "run-time change");
    assert!(entry.hot);
    // Stored under the resolved key, so the next start reads it back the same.
    let again = started
        .with_runtime_layer(changed.runtime_layer().clone())
        .unwrap();
    assert_eq!(again.config, changed.config);
}

#[test]
fn an_invalid_change_is_refused_whole_with_the_start_up_message() {
    let started = base();
    let err = started
        .with_change(&doc(
            "[http]\nretry_after_s = 5\n[models.all-minilm-l6-v2]\nqueue_capacity = 0\n",
        ))
        .unwrap_err();
    let fields = err.field_errors();
    assert_eq!(fields.len(), 1, "{err}");
    assert_eq!(fields[0].path, "models.all-minilm-l6-v2.queue_capacity");
    assert_eq!(fields[0].source.as_deref(), Some("run-time change"));
    assert!(err.to_string().contains("between"), "{err}");
    // Nothing of it is kept: the refused change leaves the config as it was.
    assert_eq!(started.config.http.retry_after_s, 2);
    let unknown = started
        .with_change(&doc("[http]\nspeed = 9\n"))
        .unwrap_err();
    assert!(unknown.to_string().contains("speed"), "{unknown}");
}

#[test]
fn restart_only_changes_are_pending_until_the_next_start() {
    let started = base();
    let changed = started
        .with_change(&pair_document("http.addr", "127.0.0.1:9999").unwrap())
        .unwrap();
    let pending = changed.pending(&started);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, "http.addr");
    assert_eq!(pending[0].running.as_deref(), Some("\"127.0.0.1:8080\""));
    assert_eq!(pending[0].next.as_deref(), Some("\"127.0.0.1:9999\""));
}

#[test]
fn the_data_dir_cannot_change_at_run_time() {
    let err = base()
        .with_change(&pair_document("node.data_dir", "/tmp/elsewhere").unwrap())
        .unwrap_err();
    assert_eq!(err.field_errors()[0].path, "node.data_dir");
}

#[test]
fn removing_a_run_time_value_falls_back_to_the_file() {
    let started = base();
    let changed = started
        .with_change(&pair_document("http.retry_after_s", "9").unwrap())
        .unwrap();
    assert_eq!(changed.config.http.retry_after_s, 9);
    let back = changed.without(&["http.retry_after_s".into()]).unwrap();
    assert_eq!(back.config.http.retry_after_s, 2);
    assert!(back.runtime_layer().is_empty());
    assert!(back.without(&["http.retry_after_s".into()]).is_err());
}

#[test]
fn documents_in_json_or_toml_and_bad_ones() {
    assert_eq!(
        doc("{\"http\": {\"retry_after_s\": 3}}"),
        doc("[http]\nretry_after_s = 3")
    );
    assert!(parse_document("{\"http\": null}").is_err());
    assert!(parse_document("[http\n").is_err());
    assert!(parse_document("[1, 2]").is_err());
    assert!(pair_document("http..addr", "x").is_err());
}

#[test]
fn secrets_are_redacted_where_shown() {
    let shown = base().show();
    assert!(!shown.contains("s3cret-join"), "{shown}");
    assert!(
        shown.contains("cluster.join_token = \"<redacted>\""),
        "{shown}"
    );
}

#[test]
fn golek_variables_without_a_key_path_are_not_configuration() {
    let env: BTreeMap<String, String> = [
        ("GOLEK_HOME", "/srv/golek"),
        ("GOLEK_API_KEY", "gk-abc"),
        ("HOME", "/home/test"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let inputs = ConfigInputs {
        env: env.clone(),
        ..Default::default()
    };
    assert!(load(&inputs).is_ok());
    let mut bad = env;
    bad.insert("GOLEK_HTTP__SPEED".into(), "9".into());
    let err = load(&ConfigInputs {
        env: bad,
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("GOLEK_HTTP__SPEED"), "{err}");
}
