use std::path::{Path, PathBuf};

use super::*;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn with_file(name: &str) -> ConfigInputs {
    ConfigInputs {
        file: Some(examples().join(name)),
        env: env(&[("HOME", "/home/test")]),
        ..Default::default()
    }
}

/// Loads a bad example and returns its one-line error text.
fn error_of(name: &str) -> String {
    match load(&with_file(name)) {
        Ok(_) => panic!("{name} should be rejected"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn defaults_alone_serve_the_embedding_model() {
    let loaded = load(&ConfigInputs {
        env: env(&[("HOME", "/home/test")]),
        ..Default::default()
    })
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.http.addr.to_string(), "127.0.0.1:8080");
    assert_eq!(
        c.node.data_dir,
        PathBuf::from("/home/test/.local/share/golek")
    );
    let model = &c.models["all-minilm-l6-v2"];
    assert_eq!(model.kind(), ProviderKind::Onnx);
    let ProviderParams::Onnx(params) = &model.params else {
        panic!("onnx params")
    };
    assert!(params.model_path.starts_with(default_assets_dir()));
    assert_eq!(params.pipeline, OnnxPipeline::SentenceEmbedding);
    assert_eq!(loaded.provenance["http.addr"], Source::Default);
}

#[test]
fn the_documented_example_is_valid() {
    let loaded = load(&with_file("node.toml")).unwrap();
    assert_eq!(loaded.config.models["all-minilm-l6-v2"].max_batch_size, 32);
    assert!(matches!(loaded.provenance["http.addr"], Source::File(_)));
}

#[test]
fn a_file_given_as_text_loads_as_the_file_does() {
    let path = examples().join("node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let inputs = with_file("node.toml");
    let from_file = load(&inputs).unwrap();
    let from_text = load_str(&text, &path, &inputs).unwrap();
    assert_eq!(from_text.show(), from_file.show());
    let err = load_str("[http", Path::new("x.toml"), &ConfigInputs::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn layers_apply_in_order_defaults_file_env_cli() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "[http]\naddr = \"127.0.0.1:1001\"\nretry_after_s = 7\nrequest_timeout_ms = 500\n\
         [models.all-minilm-l6-v2]\nmax_batch_size = 4\n",
    )
    .unwrap();
    let inputs = ConfigInputs {
        file: Some(file.clone()),
        env: env(&[
            ("HOME", "/h"),
            ("GOLEK_HTTP__ADDR", "127.0.0.1:1002"),
            ("GOLEK_HTTP__RETRY_AFTER_S", "9"),
            ("GOLEK_MODELS__ALL_MINILM_L6_V2__MAX_BATCH_SIZE", "8"),
            ("UNRELATED", "x"),
        ]),
        cli: vec![CliOverride::new(
            "http.addr",
            "127.0.0.1:1003",
            "--http-addr",
        )],
        ..Default::default()
    };
    let loaded = load(&inputs).unwrap();
    let c = &loaded.config;
    assert_eq!(c.http.addr.to_string(), "127.0.0.1:1003", "flag beats env");
    assert_eq!(c.http.retry_after_s, 9, "env beats file");
    assert_eq!(
        c.http.request_timeout.as_millis(),
        500,
        "file beats default"
    );
    assert_eq!(c.http.max_body_bytes, 8388608, "default stays");
    assert_eq!(c.models["all-minilm-l6-v2"].max_batch_size, 8);
    assert_eq!(
        loaded.provenance["http.addr"],
        Source::Cli("--http-addr".into())
    );
    assert_eq!(
        loaded.provenance["http.retry_after_s"],
        Source::Env("GOLEK_HTTP__RETRY_AFTER_S".into())
    );
    let shown = loaded.show();
    assert!(
        shown.contains("http.addr = \"127.0.0.1:1003\"  # flag --http-addr"),
        "{shown}"
    );
    assert!(
        shown.contains("http.retry_after_s = 9  # env GOLEK_HTTP__RETRY_AFTER_S"),
        "{shown}"
    );
    assert!(
        shown.contains("http.request_timeout_ms = 500  # file"),
        "{shown}"
    );
    assert!(
        shown.contains("http.max_body_bytes = 8388608  # default"),
        "{shown}"
    );
}

#[test]
fn relative_paths_follow_the_layer_that_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "[models.t]\nprovider = \"onnx\"\n[models.t.params]\npipeline = \"tensor\"\nmodel_path = \"m/model.onnx\"\n",
    )
    .unwrap();
    let loaded = load(&ConfigInputs {
        file: Some(file),
        env: env(&[("HOME", "/h"), ("GOLEK_NODE__DATA_DIR", "~/state")]),
        cli: vec![],
        ..Default::default()
    })
    .unwrap();
    let ProviderParams::Onnx(p) = &loaded.config.models["t"].params else {
        panic!("onnx params")
    };
    assert_eq!(
        p.model_path,
        std::path::absolute(dir.path())
            .unwrap()
            .join("m/model.onnx")
    );
    assert_eq!(loaded.config.node.data_dir, PathBuf::from("/h/state"));
}

#[test]
fn a_disabled_model_is_not_deployed() {
    let loaded = load(&ConfigInputs {
        env: env(&[
            ("HOME", "/h"),
            ("GOLEK_MODELS__ALL_MINILM_L6_V2__ENABLED", "false"),
        ]),
        ..Default::default()
    })
    .unwrap();
    assert!(!loaded.config.models.contains_key("all-minilm-l6-v2"));
    assert!(loaded.config.models.contains_key("smollm2-135m-instruct"));
}

#[test]
fn every_bad_example_names_its_key_and_reason() {
    let cases: &[(&str, &[&str])] = &[
        ("bad/unknown-key.toml", &["http", "unknown field `adress`"]),
        (
            "bad/batch-size-zero.toml",
            &["models.all-minilm-l6-v2.max_batch_size: must be between 1 and 1024, got 0"],
        ),
        ("bad/bad-addr.toml", &["http.addr: must be an IP address and port", "\"localhost\""]),
        (
            "bad/unknown-provider.toml",
            &["models.mystery.provider: unknown provider kind \"tensorflow\"; known kinds: onnx, gguf, triton, openai"],
        ),
        (
            "bad/missing-tokenizer.toml",
            &["models.encoder.params.tokenizer_path: is required"],
        ),
        ("bad/wrong-type.toml", &["http.max_body_bytes", "invalid type: string \"lots\""]),
        ("bad/syntax-error.toml", &["not valid TOML"]),
        (
            "bad/backoff-order.toml",
            &["supervision.restart_backoff_max_ms: must be at least supervision.restart_backoff_initial_ms (5000 ms), got 100 ms"],
        ),
        ("bad/bad-model-name.toml", &["models.my model/v1: model names use"]),
        (
            "bad/unknown-param.toml",
            &["models.all-minilm-l6-v2.params", "unknown field `pooling`"],
        ),
    ];
    for (file, needles) in cases {
        let text = error_of(file);
        for needle in *needles {
            assert!(text.contains(needle), "{file}: {needle:?} not in {text:?}");
        }
    }
}

#[test]
fn validation_errors_say_which_layer_set_the_value_and_all_are_reported() {
    let err = load(&ConfigInputs {
        file: None,
        env: env(&[
            ("HOME", "/h"),
            ("GOLEK_HTTP__RETRY_AFTER_S", "0"),
            ("GOLEK_MODELS__ALL_MINILM_L6_V2__QUEUE_CAPACITY", "-3"),
        ]),
        cli: vec![CliOverride::new(
            "supervision.max_restarts",
            "5000",
            "--set",
        )],
        ..Default::default()
    })
    .unwrap_err();
    let errors = err.field_errors();
    assert_eq!(errors.len(), 3, "{err}");
    let text = err.to_string();
    assert!(text.contains("http.retry_after_s: must be between 1 and 3600, got 0 (set by env GOLEK_HTTP__RETRY_AFTER_S)"), "{text}");
    assert!(
        text.contains(
            "models.all-minilm-l6-v2.queue_capacity: must be between 1 and 1000000, got -3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "supervision.max_restarts: must be between 0 and 1000, got 5000 (set by flag --set)"
        ),
        "{text}"
    );
}

#[test]
fn unknown_environment_keys_are_errors() {
    let err = load(&ConfigInputs {
        env: env(&[("HOME", "/h"), ("GOLEK_HTTP__PORT", "80")]),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("http.port: unknown field `port`"),
        "{err}"
    );
}

#[test]
fn the_default_chat_model_is_smollm2_on_llama_cpp_with_golek_tiny_off() {
    let loaded = load(&ConfigInputs {
        env: env(&[("HOME", "/h")]),
        ..Default::default()
    })
    .unwrap();
    let model = &loaded.config.models["smollm2-135m-instruct"];
    assert_eq!(model.kind(), ProviderKind::Gguf);
    let ProviderParams::Gguf(p) = &model.params else {
        panic!("gguf params")
    };
    assert_eq!(
        p.model_path,
        default_assets_dir().join("models/smollm2-135m-instruct.Q4_1.gguf")
    );
    assert_eq!((p.n_ctx, p.slots, p.n_gpu_layers), (8192, 8, 0));
    assert!(p.prompt_cache);
    assert_eq!(p.prompt_cache_min_tokens, 32);
    // Disabled models are validated, then left out.
    assert!(!loaded.config.models.contains_key("golek-tiny"));
}

#[test]
fn gguf_slots_must_leave_each_a_usable_context() {
    let err = load(&ConfigInputs {
        env: env(&[
            ("HOME", "/h"),
            ("GOLEK_MODELS__GOLEK_TINY__PARAMS__SLOTS", "64"),
            ("GOLEK_MODELS__GOLEK_TINY__PARAMS__N_CTX", "1024"),
        ]),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("models.golek-tiny.params.n_ctx: gives each of the 64 slots only 16 tokens"),
        "{err}"
    );
}

#[test]
fn triton_deployments_check_their_url_and_limits() {
    let ok = load(&ConfigInputs {
        env: env(&[("HOME", "/h")]),
        cli: vec![
            CliOverride::new("models.remote.provider", "triton", "--set"),
            CliOverride::new("models.remote.params.url", "http://10.0.0.5:8000/", "--set"),
        ],
        ..Default::default()
    })
    .unwrap();
    let ProviderParams::Triton(p) = &ok.config.models["remote"].params else {
        panic!("triton params")
    };
    assert_eq!(p.url, "http://10.0.0.5:8000");
    assert_eq!(
        (p.connection.max_in_flight, p.connection.timeout.as_millis()),
        (32, 30_000)
    );
    let err = load(&ConfigInputs {
        env: env(&[("HOME", "/h")]),
        cli: vec![
            CliOverride::new("models.remote.provider", "triton", "--set"),
            CliOverride::new("models.remote.params.url", "10.0.0.5:8000", "--set"),
            CliOverride::new("models.remote.params.max_in_flight", "0", "--set"),
        ],
        ..Default::default()
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("models.remote.params.url: must be an http:// or https:// base URL"),
        "{text}"
    );
    assert!(
        text.contains("models.remote.params.max_in_flight: must be between 1 and 4096, got 0"),
        "{text}"
    );
}

#[test]
fn remote_tls_options_are_checked() {
    let with = |pairs: &[(&str, &str)]| {
        let mut cli = vec![CliOverride::new(
            "models.remote.provider",
            "openai",
            "--set",
        )];
        for (k, v) in pairs {
            cli.push(CliOverride::new(
                format!("models.remote.params.{k}"),
                *v,
                "--set",
            ));
        }
        load(&ConfigInputs {
            env: env(&[("HOME", "/h")]),
            cli,
            ..Default::default()
        })
    };
    let ok = with(&[
        ("base_url", "https://api.example:8443/v1"),
        ("tls_ca_path", "/etc/golek/ca.pem"),
        ("tls_client_cert_path", "~/c.pem"),
        ("tls_client_key_path", "/k.pem"),
    ])
    .unwrap();
    let ProviderParams::Openai(p) = &ok.config.models["remote"].params else {
        panic!("openai params")
    };
    assert_eq!(
        p.connection.tls.ca_path.as_deref(),
        Some(Path::new("/etc/golek/ca.pem"))
    );
    assert_eq!(
        p.connection.tls.client_cert_path.as_deref(),
        Some(Path::new("/h/c.pem"))
    );
    assert!(!p.connection.tls.insecure_skip_verify);
    for (pairs, needle) in [
        (
            &[("base_url", "http://10.0.0.7/v1"), ("tls_ca_path", "/ca.pem")][..],
            "models.remote.params.tls_ca_path: TLS options need an https:// URL",
        ),
        (
            &[("base_url", "https://a.example/v1"), ("tls_client_cert_path", "/c.pem")][..],
            "models.remote.params.tls_client_key_path: set tls_client_cert_path and tls_client_key_path together",
        ),
        (
            &[
                ("base_url", "https://a.example/v1"),
                ("tls_ca_path", "/ca.pem"),
                ("tls_insecure_skip_verify", "true"),
            ][..],
            "models.remote.params.tls_insecure_skip_verify: true skips verification",
        ),
    ] {
        let err = with(pairs).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn cluster_settings_are_checked() {
    let with = |pairs: &[(&str, &str)]| {
        let cli = pairs
            .iter()
            .map(|(k, v)| CliOverride::new(format!("cluster.{k}"), *v, "--set"))
            .collect();
        load(&ConfigInputs {
            env: env(&[("HOME", "/h")]),
            cli,
            ..Default::default()
        })
    };
    let off = with(&[]).unwrap();
    assert!(!off.config.cluster.enabled());
    assert_eq!(off.config.cluster.gossip_interval.as_millis(), 200);
    let on = with(&[
        ("tls_dir", "/etc/golek/tls"),
        ("node_id", "gpu-01"),
        ("quic_addr", "10.0.0.5:7946"),
        ("seeds", r#"["10.0.0.6:7946", "gpu-02:7946"]"#),
    ])
    .unwrap();
    assert!(on.config.cluster.enabled());
    assert_eq!(on.config.cluster.seeds.len(), 2);
    for (pairs, needle) in [
        (
            &[("node_id", "GPU_1")][..],
            "cluster.node_id: node id \"GPU_1\" must be",
        ),
        (
            &[("seeds", r#"["10.0.0.6"]"#)][..],
            "cluster.seeds[0]: must be host:port",
        ),
        (
            &[("phi_threshold", "0.5")][..],
            "cluster.phi_threshold: must be between 1 and 100",
        ),
        (
            &[("tls_dir", "/t")][..],
            "cluster.advertise_addr: cluster.quic_addr 0.0.0.0:7946 listens on every interface",
        ),
    ] {
        let err = with(pairs).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = load(&with_file("does-not-exist.toml")).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot read config file"),
        "{err}"
    );
}

#[test]
fn an_override_cannot_descend_through_a_value() {
    let err = load(&ConfigInputs {
        env: env(&[("HOME", "/h")]),
        cli: vec![CliOverride::new("http.addr.port", "1", "--set")],
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("http.addr"), "{err}");
}

#[test]
fn routes_and_reliability_are_checked_field_by_field() {
    let text = r#"
[reliability]
max_continuations = 99
retry_budget_ratio = 1.5

[routes.chat]
targets = ["golek-tiny", "chat", "golek-tiny", "bad name"]

[routes.empty]
targets = []

[routes.all-minilm-l6-v2]
targets = ["golek-tiny"]

[routes.fine]
targets = ["golek-tiny", "remote"]
"#;
    let inputs = ConfigInputs {
        env: env(&[("HOME", "/h")]),
        ..Default::default()
    };
    let err = load_str(text, "golek.toml".as_ref(), &inputs).unwrap_err();
    let text = err.to_string();
    for expected in [
        "reliability.max_continuations: must be between 0 and 16, got 99",
        "reliability.retry_budget_ratio: must be a fraction between 0 and 1, got 1.5",
        "routes.chat.targets[1]: a route cannot list itself",
        "routes.chat.targets[2]: \"golek-tiny\" is listed twice",
        "routes.chat.targets[3]: not a model name: \"bad name\"",
        "routes.empty.targets: must list 1 to 16 model names, got 0",
        "routes.all-minilm-l6-v2: \"all-minilm-l6-v2\" is also a model deployed here",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(err.field_errors().len(), 7, "{text}");

    let ok = load_str(
        "[routes.chat]\ntargets = [\"golek-tiny\", \"remote\"]\n",
        "golek.toml".as_ref(),
        &inputs,
    )
    .unwrap()
    .config;
    assert_eq!(ok.routes["chat"].targets, ["golek-tiny", "remote"]);
    assert_eq!(ok.reliability.max_continuations, 2);
}

/// `config/examples/node.toml` marks each key `# hot` or `# restart`, as [`hot::is_hot`] says,
/// and documents every key of the defaults outside `[models]`.
#[test]
fn the_example_marks_each_key_hot_or_restart_only_as_the_code_does() {
    let text = std::fs::read_to_string(examples().join("node.toml")).unwrap();
    let mut section = String::new();
    let mut marked = std::collections::BTreeSet::new();
    for line in text.lines() {
        let bare = line.trim_start_matches('#').trim();
        if bare.starts_with('[') && bare.ends_with(']') && !bare.contains('=') {
            section = bare.trim_matches(['[', ']']).to_string();
            continue;
        }
        let Some((key, rest)) = bare.split_once(" = ") else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') || section.is_empty() {
            continue;
        }
        let path = format!("{section}.{key}");
        let tag = if rest.contains("# hot") {
            true
        } else if rest.contains("# restart") {
            false
        } else {
            panic!("{path} is not marked # hot or # restart in node.toml");
        };
        assert_eq!(tag, hot::is_hot(&path), "{path} is marked wrongly");
        marked.insert(path);
    }
    let defaults: toml::Table = toml::from_str(DEFAULTS).unwrap();
    for (path, _) in layers::leaves(&defaults) {
        if !path.starts_with("models.") {
            assert!(
                marked.contains(&path),
                "{path} is not documented in node.toml"
            );
        }
    }
}
