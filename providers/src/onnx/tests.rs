//! Tests against the real all-MiniLM-L6-v2 int8 model and the real ONNX Runtime (both put in
//! place by scripts/setup.sh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use golek_config::{ConfigInputs, ModelConfig, NodeConfig, OnnxPipeline, ProviderParams};
use golek_protocol::inference::*;
use golek_protocol::{ErrorCode, ErrorInfo};

use crate::{build_provider, job_queue, Job, JobSender, Provider, ProviderError};

fn node_config() -> NodeConfig {
    let mut env = std::collections::BTreeMap::new();
    env.insert("HOME".to_string(), "/tmp".to_string());
    golek_config::load(&ConfigInputs {
        env,
        ..Default::default()
    })
    .expect("default config")
    .config
}

fn minilm() -> (NodeConfig, ModelConfig) {
    let config = node_config();
    let model = config.models["all-minilm-l6-v2"].clone();
    (config, model)
}

fn load(model: &ModelConfig) -> Box<dyn Provider> {
    build_provider(model, &node_config().runtime).expect("MiniLM loads (run scripts/setup.sh)")
}

/// Starts a worker thread serving `model`; returns its queue sender.
fn start(model: &ModelConfig, max_delay: Duration) -> JobSender {
    let (tx, queue) = job_queue(
        &model.name,
        256,
        model.max_batch_size,
        max_delay,
        Arc::default(),
    );
    let mut provider = load(model);
    std::thread::spawn(move || provider.serve(&queue));
    tx
}

fn submit(
    tx: &JobSender,
    request: InferenceRequest,
) -> tokio::sync::mpsc::UnboundedReceiver<Result<InferenceEvent, ErrorInfo>> {
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let now = Instant::now();
    tx.try_submit(Job {
        request,
        events,
        enqueued_at: now,
        deadline: now + Duration::from_secs(60),
        outcome: Default::default(),
        tenant: None,
        span: tracing::Span::none(),
        queued: None,
    })
    .unwrap();
    rx
}

fn wait(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Result<InferenceEvent, ErrorInfo>>,
) -> Result<InferenceEvent, ErrorInfo> {
    rx.blocking_recv().expect("one event")
}

fn texts(items: &[&str]) -> InferenceRequest {
    InferenceRequest::Embeddings(EmbeddingsRequest {
        inputs: items
            .iter()
            .map(|s| EmbeddingInput::Text(s.to_string()))
            .collect(),
    })
}

fn vectors(event: Result<InferenceEvent, ErrorInfo>) -> Vec<Embedding> {
    match event {
        Ok(InferenceEvent::Embeddings(v)) => v,
        other => panic!("expected embeddings, got {other:?}"),
    }
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_embeddings_are_unit_vectors_that_rank_similar_sentences_higher() {
    let (_, model) = minilm();
    let tx = start(&model, Duration::ZERO);
    let sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A woman is playing the violin.",
        "A man is riding a horse.",
        "A man is riding a white horse on an enclosed ground.",
        "A monkey is playing drums.",
        "The stock market fell sharply on Monday.",
    ];
    let v = vectors(wait(submit(&tx, texts(&sentences))));
    assert_eq!(v.len(), sentences.len());
    for e in &v {
        assert_eq!(e.vector.len(), 384);
        let norm = e.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let s = |i: usize, j: usize| cos(&v[i].vector, &v[j].vector);
    // Pairs that say nearly the same thing score well above unrelated pairs.
    assert!(s(0, 1) > 0.6, "eating pair {}", s(0, 1));
    assert!(
        s(0, 1) > s(0, 7) + 0.4,
        "eating vs stock market {} {}",
        s(0, 1),
        s(0, 7)
    );
    assert!(s(0, 1) > s(0, 3), "eating vs violin");
    assert!(
        s(4, 5) > s(4, 2) && s(4, 5) > s(4, 6),
        "horse pair {} {} {}",
        s(4, 5),
        s(4, 2),
        s(4, 6)
    );
    assert!(s(4, 5) > 0.6);
    // Token counts include [CLS] and [SEP].
    assert_eq!(v[0].tokens, 8);
}

#[test]
fn a_batched_request_returns_the_same_vector_as_alone() {
    let (_, model) = minilm();
    let tx = start(&model, Duration::ZERO);
    let items = [
        "short",
        "A man is eating a piece of bread.",
        "a much longer sentence, so that the others are padded when they share a batch with it",
        "The stock market fell sharply on Monday.",
    ];
    let alone: Vec<Vec<f32>> = items
        .iter()
        .map(|t| vectors(wait(submit(&tx, texts(&[t]))))[0].vector.clone())
        .collect();
    // Queue all requests before the worker starts, so that they are certain to share a batch.
    let (batch_tx, queue) = job_queue(
        &model.name,
        16,
        model.max_batch_size,
        Duration::ZERO,
        Arc::default(),
    );
    let receivers: Vec<_> = items
        .iter()
        .map(|t| submit(&batch_tx, texts(&[t])))
        .collect();
    let mut provider = load(&model);
    std::thread::spawn(move || provider.serve(&queue));
    let batched: Vec<Vec<f32>> = receivers
        .into_iter()
        .map(|rx| vectors(wait(rx))[0].vector.clone())
        .collect();
    let one_request = vectors(wait(submit(&tx, texts(&items))));
    for i in 0..items.len() {
        for (a, b) in alone[i].iter().zip(&batched[i]) {
            assert!((a - b).abs() <= 1e-5, "item {i}: {a} vs {b}");
        }
        for (a, b) in alone[i].iter().zip(&one_request[i].vector) {
            assert!((a - b).abs() <= 1e-5, "item {i} in one request: {a} vs {b}");
        }
    }
}

#[test]
fn token_inputs_match_text_inputs_and_bad_ids_fail_alone() {
    let (_, model) = minilm();
    let tx = start(&model, Duration::from_millis(50));
    // [CLS] hello world [SEP] in the MiniLM (bert-base-uncased) vocabulary.
    let tokens = InferenceRequest::Embeddings(EmbeddingsRequest {
        inputs: vec![EmbeddingInput::Tokens(vec![101, 7592, 2088, 102])],
    });
    let bad = InferenceRequest::Embeddings(EmbeddingsRequest {
        inputs: vec![
            EmbeddingInput::Text("ok".into()),
            EmbeddingInput::Tokens(vec![5, 999_999]),
        ],
    });
    let rx_tokens = submit(&tx, tokens);
    let rx_bad = submit(&tx, bad);
    let rx_text = submit(&tx, texts(&["hello world"]));
    let by_tokens = vectors(wait(rx_tokens));
    let by_text = vectors(wait(rx_text));
    for (a, b) in by_tokens[0].vector.iter().zip(&by_text[0].vector) {
        assert!((a - b).abs() <= 1e-5);
    }
    let err = wait(rx_bad).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(err.param.as_deref(), Some("input[1]"));
    assert!(err.message.contains("999999"), "{}", err.message);
}

#[test]
fn long_inputs_are_truncated_at_the_model_limit() {
    let (_, model) = minilm();
    let tx = start(&model, Duration::ZERO);
    let long = "word ".repeat(2000);
    let v = vectors(wait(submit(&tx, texts(&[&long]))));
    assert_eq!(v[0].tokens, 512);
}

#[test]
fn the_minilm_graph_runs_as_a_generic_tensor_model() {
    let (_, mut model) = minilm();
    let ProviderParams::Onnx(params) = &mut model.params else {
        panic!("onnx params")
    };
    params.pipeline = OnnxPipeline::Tensor;
    params.tokenizer_path = None;
    let provider = load(&model);
    let info = provider.info();
    let names: Vec<_> = info.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(info.inputs[0].datatype, "INT64");
    assert_eq!(info.outputs[0].shape, vec![-1, -1, 384]);
    assert!(!info.capabilities.embeddings && info.capabilities.tensors);
    let tx = start(&model, Duration::ZERO);
    let tensor = |name: &str, data: Vec<i64>| NamedTensor {
        name: name.into(),
        shape: vec![1, 4],
        data: TensorData::I64(data),
    };
    let request = TensorRequest {
        inputs: vec![
            tensor("input_ids", vec![101, 7592, 2088, 102]),
            tensor("attention_mask", vec![1; 4]),
            tensor("token_type_ids", vec![0; 4]),
        ],
        outputs: vec![],
    };
    match wait(submit(&tx, InferenceRequest::Tensors(request.clone()))) {
        Ok(InferenceEvent::Tensors(out)) => {
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].name, "last_hidden_state");
            assert_eq!(out[0].shape, vec![1, 4, 384]);
            assert_eq!(out[0].data.len(), 4 * 384);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Wrong datatype: the error names the tensor.
    let mut wrong = request.clone();
    wrong.inputs[1].data = TensorData::F32(vec![1.0; 4]);
    let err = wait(submit(&tx, InferenceRequest::Tensors(wrong))).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("inputs.attention_mask"));
    assert!(
        err.message.contains("FP32") && err.message.contains("INT64"),
        "{}",
        err.message
    );
    // Element count that does not match the shape.
    let mut short = request.clone();
    short.inputs[0].data = TensorData::I64(vec![101, 102]);
    let err = wait(submit(&tx, InferenceRequest::Tensors(short))).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("inputs.input_ids"));
    // A missing input and an unknown output.
    let mut missing = request.clone();
    missing.inputs.pop();
    let err = wait(submit(&tx, InferenceRequest::Tensors(missing))).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("inputs.token_type_ids"));
    let mut unknown_output = request;
    unknown_output.outputs = vec!["pooled".into()];
    let err = wait(submit(&tx, InferenceRequest::Tensors(unknown_output))).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("outputs.pooled"));
}

#[test]
fn a_missing_model_file_is_a_load_error() {
    let (_, mut model) = minilm();
    let ProviderParams::Onnx(params) = &mut model.params else {
        panic!("onnx params")
    };
    params.model_path = "/nonexistent/model.onnx".into();
    match build_provider(&model, &node_config().runtime) {
        Err(ProviderError::Load(message)) => assert!(message.contains("/nonexistent/model.onnx")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a missing model must not load"),
    }
}
