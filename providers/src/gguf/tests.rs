//! The llama.cpp provider with real llama.cpp on the generated test model.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use golek_config::GgufParams;
use golek_protocol::inference::*;
use golek_protocol::{ErrorCode, ErrorInfo};
use tokio::sync::mpsc::UnboundedReceiver;

use super::testmodel::{write_test_gguf, TestModelSpec};
use super::GgufProvider;
use crate::{job_queue, Job, JobSender, Provider};

pub(super) type Rx = UnboundedReceiver<Result<InferenceEvent, ErrorInfo>>;

pub(super) fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("tiny.gguf");
        write_test_gguf(&path, &TestModelSpec::tiny()).unwrap();
        path
    })
    .clone()
}

pub(super) fn params(slots: u32) -> GgufParams {
    GgufParams {
        model_path: model_path(),
        n_ctx: 512 * slots,
        slots,
        threads: 1,
        batch_size: 256,
        n_gpu_layers: 0,
        chat_template: None,
        embeddings: false,
        system_prompt: None,
        prompt_cache: true,
        prompt_cache_min_tokens: 4,
    }
}

pub(super) fn load(params: &GgufParams) -> GgufProvider {
    GgufProvider::load("tiny", params).expect("the test model loads")
}

/// A queue with `jobs` already waiting, then a worker serving it.
pub(super) fn serve_with(
    params: GgufParams,
    requests: Vec<InferenceRequest>,
) -> (JobSender, Vec<Rx>) {
    let (tx, queue) = job_queue("tiny", 64, 1, Duration::ZERO, Arc::default());
    let receivers = requests.into_iter().map(|r| submit(&tx, r)).collect();
    std::thread::spawn(move || {
        let mut provider = load(&params);
        provider.serve(&queue)
    });
    (tx, receivers)
}

pub(super) fn submit(tx: &JobSender, request: InferenceRequest) -> Rx {
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let now = Instant::now();
    tx.try_submit(Job {
        request,
        events,
        enqueued_at: now,
        deadline: now + Duration::from_secs(120),
        outcome: Default::default(),
        tenant: None,
        span: tracing::Span::none(),
        queued: None,
    })
    .unwrap();
    rx
}

#[derive(Debug, PartialEq)]
pub(super) struct Outcome {
    pub(super) text: String,
    pub(super) reason: FinishReason,
    pub(super) prompt_tokens: u32,
    pub(super) completion_tokens: u32,
    pub(super) text_events: usize,
}

pub(super) fn collect(mut rx: Rx) -> Result<Outcome, ErrorInfo> {
    let mut text = String::new();
    let mut started = None;
    let mut text_events = 0;
    loop {
        match rx.blocking_recv() {
            Some(Ok(InferenceEvent::Started { prompt_tokens, .. })) => {
                started = Some(prompt_tokens)
            }
            Some(Ok(InferenceEvent::Text { text: t, .. })) => {
                text.push_str(&t);
                text_events += 1;
            }
            Some(Ok(InferenceEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
                ..
            })) => {
                assert_eq!(started, Some(prompt_tokens), "Started and Finished agree");
                return Ok(Outcome {
                    text,
                    reason,
                    prompt_tokens,
                    completion_tokens,
                    text_events,
                });
            }
            Some(Ok(other)) => panic!("unexpected event {other:?}"),
            Some(Err(e)) => return Err(e),
            None => panic!("the stream ended without Finished"),
        }
    }
}

pub(super) fn greedy(prompt: &str, max_tokens: u32) -> InferenceRequest {
    InferenceRequest::Generate(GenerateRequest::new(
        Prompt::Text(prompt.into()),
        Some(max_tokens),
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
    ))
}

const PROMPTS: [&str; 4] = [
    "once upon a time there was a little dog",
    "the man is eating bread",
    "hello world, tell me a story about a horse",
    "count: one two three",
];

#[test]
fn greedy_output_is_the_same_alone_and_batched() {
    let alone: Vec<Outcome> = PROMPTS
        .iter()
        .map(|p| {
            let (_tx, mut rx) = serve_with(params(4), vec![greedy(p, 24)]);
            collect(rx.remove(0)).unwrap()
        })
        .collect();
    // All four queued before the worker starts: they prefill and decode together.
    let (_tx, receivers) = serve_with(params(4), PROMPTS.iter().map(|p| greedy(p, 24)).collect());
    let batched: Vec<Outcome> = receivers
        .into_iter()
        .map(|rx| collect(rx).unwrap())
        .collect();
    assert_eq!(alone, batched);
    // And again: deterministic.
    let (_tx, mut again) = serve_with(params(1), vec![greedy(PROMPTS[0], 24)]);
    assert_eq!(collect(again.remove(0)).unwrap(), alone[0]);
    for o in &alone {
        assert!(o.completion_tokens > 0 && o.completion_tokens <= 24);
        if o.reason == FinishReason::Length {
            assert_eq!(o.completion_tokens, 24);
        }
    }
}

#[test]
fn long_prompts_prefilled_in_small_chunks_give_the_same_output() {
    let requests = || {
        vec![
            greedy(&PROMPTS.join(" and "), 16),
            greedy(PROMPTS[1], 16),
            greedy(PROMPTS[3], 16),
        ]
    };
    let (_tx, whole) = serve_with(params(4), requests());
    let whole: Vec<Outcome> = whole.into_iter().map(|rx| collect(rx).unwrap()).collect();
    // Eight tokens per decode call: prompts take several steps, interleaved with decoding.
    let mut small = params(4);
    small.batch_size = 8;
    let (_tx, chunked) = serve_with(small, requests());
    let chunked: Vec<Outcome> = chunked.into_iter().map(|rx| collect(rx).unwrap()).collect();
    assert!(
        whole[0].prompt_tokens > 24,
        "the first prompt spans several chunks"
    );
    assert_eq!(whole, chunked);
}

#[test]
fn usage_counts_match_the_tokenizer_and_chat_uses_the_template() {
    let provider = load(&params(1));
    let messages = vec![
        ChatMessage::new("system", "be brief"),
        ChatMessage::new("user", "hello"),
    ];
    let plain = GenerateRequest::new(
        Prompt::Chat(messages.clone()),
        None,
        SamplingParams::default(),
    );
    let rendered = provider.render_chat(&messages, &plain).unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    );
    let expected_prompt = provider
        .model
        .vocab()
        .tokenize(rendered.as_bytes(), true, true)
        .len() as u32;
    let chat = InferenceRequest::Generate(GenerateRequest::new(
        Prompt::Chat(messages),
        Some(10),
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
    ));
    let (_tx, mut rx) = serve_with(params(2), vec![chat]);
    let out = collect(rx.remove(0)).unwrap();
    assert_eq!(out.prompt_tokens, expected_prompt);
    // The generated text re-tokenizes to about the completion count (tokens can merge).
    assert!(out.completion_tokens >= 1 && out.completion_tokens <= 10);
}

#[test]
fn stop_strings_end_generation_and_are_not_returned() {
    let (_tx, mut rx) = serve_with(params(1), vec![greedy(PROMPTS[2], 40)]);
    let full = collect(rx.remove(0)).unwrap();
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() >= 8, "enough text to cut: {:?}", full.text);
    // A stop string taken from the middle of the greedy output (it spans token boundaries).
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let cut = full.text.find(&stop).unwrap();
    let mut request = greedy(PROMPTS[2], 40);
    if let InferenceRequest::Generate(r) = &mut request {
        r.stop = vec!["never appears ~~~".into(), stop.clone()];
    }
    let (_tx, mut rx) = serve_with(params(1), vec![request]);
    let stopped = collect(rx.remove(0)).unwrap();
    assert_eq!(stopped.text, full.text[..cut], "stop {stop:?}");
    assert_eq!(stopped.reason, FinishReason::Stop);
}

#[test]
fn max_tokens_gives_finish_reason_length() {
    // A chat prompt ends in the assistant turn; with 3 tokens the model rarely reaches its EOS.
    let (_tx, mut rx) = serve_with(params(1), vec![greedy("count: one", 3)]);
    let out = collect(rx.remove(0)).unwrap();
    if out.reason == FinishReason::Length {
        assert_eq!(out.completion_tokens, 3);
    } else {
        assert!(out.completion_tokens < 3);
    }
}

#[test]
fn prompts_and_max_tokens_beyond_the_context_are_refused_by_field() {
    let mut p = params(1);
    p.n_ctx = 64;
    let long = "word ".repeat(200);
    let (_tx, receivers) = serve_with(
        p,
        vec![greedy(&long, 4), greedy("hello", 1000), greedy("hello", 2)],
    );
    let mut it = receivers.into_iter();
    let err = collect(it.next().unwrap()).unwrap_err();
    assert_eq!(
        (err.code, err.param.as_deref()),
        (ErrorCode::InvalidRequest, Some("prompt"))
    );
    let err = collect(it.next().unwrap()).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("max_tokens"));
    assert!(err.message.contains("64"), "{}", err.message);
    // The worker keeps serving.
    assert!(collect(it.next().unwrap()).is_ok());
}

#[test]
fn a_cancelled_sequence_frees_its_slot_for_the_next_request() {
    // Two slots, three long requests: the third waits until a slot frees.
    let (tx, mut receivers) = serve_with(
        params(2),
        vec![greedy(PROMPTS[0], 400), greedy(PROMPTS[1], 400)],
    );
    let mut second = receivers.pop().unwrap();
    let mut first = receivers.pop().unwrap();
    // Both started and are generating.
    for rx in [&mut first, &mut second] {
        assert!(matches!(
            rx.blocking_recv(),
            Some(Ok(InferenceEvent::Started { .. }))
        ));
    }
    let mut third = submit(&tx, greedy(PROMPTS[2], 4));
    drop(first);
    // The third starts while the second still runs (its 400 tokens take far longer).
    assert!(matches!(
        third.blocking_recv(),
        Some(Ok(InferenceEvent::Started { .. }))
    ));
    while let Ok(event) = second.try_recv() {
        assert!(
            !matches!(event, Ok(InferenceEvent::Finished { .. })),
            "the second was still running"
        );
    }
    let mut third_done = false;
    while let Some(Ok(ev)) = third.blocking_recv() {
        if matches!(ev, InferenceEvent::Finished { .. }) {
            third_done = true;
            break;
        }
    }
    assert!(third_done);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let sampled = |seed| {
        InferenceRequest::Generate(GenerateRequest::new(
            Prompt::Text("tell me a story".into()),
            Some(16),
            SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                top_k: 40,
                min_p: 0.01,
                seed: Some(seed),
                presence_penalty: 0.5,
                frequency_penalty: 0.5,
                ignore_eos: true,
            },
        ))
    };
    let (_tx, rx) = serve_with(params(2), vec![sampled(1), sampled(1), sampled(2)]);
    let outs: Vec<Outcome> = rx.into_iter().map(|r| collect(r).unwrap()).collect();
    assert_eq!(outs[0].text, outs[1].text);
    // ignore_eos: every request runs to max_tokens.
    for o in &outs {
        assert_eq!((o.reason, o.completion_tokens), (FinishReason::Length, 16));
    }
}

#[test]
fn an_embedding_deployment_returns_unit_vectors_batched_as_alone() {
    let mut p = params(4);
    p.embeddings = true;
    let request = |inputs: &[&str]| {
        InferenceRequest::Embeddings(EmbeddingsRequest {
            inputs: inputs
                .iter()
                .map(|s| EmbeddingInput::Text(s.to_string()))
                .collect(),
        })
    };
    let (tx, _) = serve_with(p, vec![]);
    let vectors = |rx: Rx| match collect_one(rx) {
        Ok(InferenceEvent::Embeddings(v)) => v,
        other => panic!("unexpected {other:?}"),
    };
    let together = vectors(submit(&tx, request(&PROMPTS)));
    assert_eq!(together.len(), 4);
    for (i, p) in PROMPTS.iter().enumerate() {
        let alone = vectors(submit(&tx, request(&[p])));
        assert_eq!(alone[0].vector.len(), 64);
        let norm: f32 = alone[0].vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        for (a, b) in alone[0].vector.iter().zip(&together[i].vector) {
            assert!((a - b).abs() < 1e-4, "input {i}: {a} vs {b}");
        }
    }
    // A generation request to an embedding deployment is refused.
    let err = collect(submit(&tx, greedy("x", 2))).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
}

fn collect_one(mut rx: Rx) -> Result<InferenceEvent, ErrorInfo> {
    rx.blocking_recv().expect("an event")
}
