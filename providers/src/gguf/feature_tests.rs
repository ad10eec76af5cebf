//! The generation features on real llama.cpp with the generated test model: prompt cache, `n`
//! choices sharing one prefill, log probabilities, structured output and forced tool calls.

use golek_protocol::generation::{ResponseFormat, ToolCall, ToolChoice, ToolSpec};
use golek_protocol::inference::*;
use golek_protocol::ErrorInfo;

use super::tests::{greedy, params, serve_with, submit, Rx};
use super::GgufProvider;

/// Everything a request's stream carried, until the worker dropped it.
#[derive(Debug, Default)]
struct Stream {
    prompt_tokens: u32,
    cached_tokens: u32,
    /// Per choice: text, token ids, log-prob entries, calls, finish reason, completion tokens.
    text: Vec<String>,
    ids: Vec<Vec<u32>>,
    logprobs: Vec<Vec<golek_protocol::generation::TokenLogprobs>>,
    calls: Vec<Vec<ToolCall>>,
    finish: Vec<Option<(FinishReason, u32)>>,
}

fn drain(mut rx: Rx, n: usize) -> Result<Stream, ErrorInfo> {
    let mut s = Stream {
        text: vec![String::new(); n],
        ids: vec![vec![]; n],
        logprobs: vec![vec![]; n],
        calls: vec![vec![]; n],
        finish: vec![None; n],
        ..Default::default()
    };
    while let Some(event) = rx.blocking_recv() {
        match event? {
            InferenceEvent::Started {
                prompt_tokens,
                cached_tokens,
            } => {
                s.prompt_tokens = prompt_tokens;
                s.cached_tokens = cached_tokens;
            }
            InferenceEvent::Text {
                choice,
                text,
                token_ids,
                logprobs,
            } => {
                let c = choice as usize;
                s.text[c].push_str(&text);
                s.ids[c].extend(token_ids);
                s.logprobs[c].extend(logprobs);
            }
            InferenceEvent::ToolCall { choice, call } => s.calls[choice as usize].push(call),
            InferenceEvent::Finished {
                choice,
                reason,
                completion_tokens,
                ..
            } => s.finish[choice as usize] = Some((reason, completion_tokens)),
            other => panic!("unexpected event {other:?}"),
        }
    }
    Ok(s)
}

fn chat(content: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new("user", content)]),
        Some(max_tokens),
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
    )
}

const LONG: &str = "the quick brown fox jumps over the lazy dog and then it runs far away into the deep dark forest where the old owl sleeps";

#[test]
fn a_repeated_prompt_reuses_its_slots_cache_and_answers_the_same() {
    let (tx, mut rx) = serve_with(params(2), vec![greedy(LONG, 12)]);
    let cold = drain(rx.remove(0), 1).unwrap();
    assert_eq!(cold.cached_tokens, 0);
    let warm = drain(submit(&tx, greedy(LONG, 12)), 1).unwrap();
    // All of the prompt but its last token comes from the cache.
    assert_eq!(warm.cached_tokens, warm.prompt_tokens - 1);
    assert_eq!(warm.text, cold.text);
    assert_eq!(warm.ids, cold.ids);
    // A prompt that continues the first one's answer reuses prompt and answer.
    let longer = format!("{LONG}{} and more", cold.text[0]);
    let next = drain(submit(&tx, greedy(&longer, 4)), 1).unwrap();
    assert!(
        next.cached_tokens >= cold.prompt_tokens,
        "{} cached of {}",
        next.cached_tokens,
        next.prompt_tokens
    );
    // An unrelated prompt starts cold.
    let other = drain(submit(&tx, greedy("zebra zebra zebra", 4)), 1).unwrap();
    assert_eq!(other.cached_tokens, 0);
}

#[test]
fn without_the_prompt_cache_nothing_is_reused() {
    let mut p = params(1);
    p.prompt_cache = false;
    let (tx, mut rx) = serve_with(p, vec![greedy(LONG, 4)]);
    let cold = drain(rx.remove(0), 1).unwrap();
    let again = drain(submit(&tx, greedy(LONG, 4)), 1).unwrap();
    assert_eq!(again.cached_tokens, 0);
    assert_eq!(again.text, cold.text);
}

#[test]
fn n_choices_share_one_prefill_and_each_finishes() {
    let mut request = greedy(LONG, 8);
    let InferenceRequest::Generate(r) = &mut request else {
        unreachable!()
    };
    r.n = 3;
    let single = greedy(LONG, 8);
    let (tx, mut rx) = serve_with(params(4), vec![single]);
    let one = drain(rx.remove(0), 1).unwrap();
    let mut p = params(4);
    p.prompt_cache = false;
    drop(tx);
    let (_tx, mut rx) = serve_with(p, vec![request]);
    let three = drain(rx.remove(0), 3).unwrap();
    for c in 0..3 {
        // Greedy: every choice is the single answer, from a copied prompt KV.
        assert_eq!(three.text[c], one.text[0], "choice {c}");
        assert_eq!(three.finish[c], Some((FinishReason::Length, 8)));
    }
    // More choices than slots is refused by name.
    let mut too_many = chat("hi", 2);
    too_many.n = 5;
    let (_tx, mut rx) = serve_with(params(4), vec![InferenceRequest::Generate(too_many)]);
    let err = drain(rx.remove(0), 5).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("n"));
}

#[test]
fn sampled_choices_differ_and_carry_their_index() {
    let mut r = chat("tell me a story", 12);
    r.n = 2;
    r.sampling = SamplingParams {
        temperature: 1.0,
        seed: Some(7),
        ignore_eos: true,
        ..Default::default()
    };
    let (_tx, mut rx) = serve_with(params(2), vec![InferenceRequest::Generate(r)]);
    let s = drain(rx.remove(0), 2).unwrap();
    assert_ne!(s.ids[0], s.ids[1], "two seeds, two draws");
    assert!(s
        .finish
        .iter()
        .all(|f| f == &Some((FinishReason::Length, 12))));
}

#[test]
fn logprobs_cover_every_generated_token_most_likely_first() {
    let mut r = chat("hello there", 10);
    r.logprobs = Some(3);
    r.sampling.ignore_eos = true;
    let (_tx, mut rx) = serve_with(params(1), vec![InferenceRequest::Generate(r)]);
    let s = drain(rx.remove(0), 1).unwrap();
    assert_eq!(s.ids[0].len(), 10);
    assert_eq!(s.logprobs[0].len(), 10);
    for (entry, id) in s.logprobs[0].iter().zip(&s.ids[0]) {
        assert_eq!(entry.token.id, *id);
        assert_eq!(entry.top.len(), 3);
        assert!(entry.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        // Greedy picks the most likely token.
        assert_eq!(entry.top[0].id, *id);
        assert!(entry.token.logprob <= 0.0 && entry.token.logprob.is_finite());
    }
    let text: Vec<u8> = s.logprobs[0]
        .iter()
        .flat_map(|e| e.token.bytes.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&text), s.text[0]);
}

#[test]
fn json_schema_output_always_parses_and_validates() {
    let schema = r#"{"type":"object","properties":{"ok":{"type":"boolean"},"color":{"enum":["red","green","blue"]}},"required":["ok","color"],"additionalProperties":false}"#;
    let mut requests = Vec::new();
    for seed in 0..3 {
        let mut r = chat("give me json", 64);
        r.sampling = SamplingParams {
            temperature: 1.0,
            seed: Some(seed),
            ..Default::default()
        };
        r.response_format = Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: schema.into(),
            strict: true,
        });
        requests.push(InferenceRequest::Generate(r));
    }
    // (`json_object` lets a random-weight model write strings without end: it is tested on
    // the real chat model, in the node's client tests.)
    let (_tx, rx) = serve_with(params(2), requests);
    let outs: Vec<Stream> = rx.into_iter().map(|r| drain(r, 1).unwrap()).collect();
    for s in outs {
        let v: serde_json::Value =
            serde_json::from_str(&s.text[0]).unwrap_or_else(|e| panic!("{e}: {:?}", s.text[0]));
        assert!(v["ok"].is_boolean(), "{v}");
        assert!(
            ["red", "green", "blue"].contains(&v["color"].as_str().unwrap()),
            "{v}"
        );
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
        assert_eq!(s.finish[0].map(|f| f.0), Some(FinishReason::Stop));
    }
}

#[test]
fn a_schema_that_cannot_be_enforced_is_refused_by_name() {
    let mut r = chat("x", 8);
    r.response_format = Some(ResponseFormat::JsonSchema {
        name: "bad".into(),
        schema: r##"{"$ref": "#/definitions/missing"}"##.into(),
        strict: true,
    });
    let (_tx, mut rx) = serve_with(
        params(1),
        vec![InferenceRequest::Generate(r), greedy("ok", 2)],
    );
    let err = drain(rx.remove(0), 1).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("response_format"), "{err:?}");
    // The next request on the same worker is served.
    assert!(drain(rx.remove(0), 1).is_ok());
}

#[test]
fn a_required_tool_call_is_enforced_and_comes_back_as_a_call() {
    let mut r = chat("what is the weather in Paris?", 96);
    r.tools = vec![
        ToolSpec {
            name: "get_weather".into(),
            description: Some("weather in a city".into()),
            parameters: r#"{"type":"object","properties":{"unit":{"enum":["c","f"]}},"required":["unit"],"additionalProperties":false}"#.into(),
        },
        ToolSpec {
            name: "get_time".into(),
            description: None,
            parameters: r#"{"type":"object","properties":{},"additionalProperties":false}"#.into(),
        },
    ];
    r.tool_choice = ToolChoice::Function("get_weather".into());
    // The tools' description makes a long prompt for the test model's tokenizer.
    let mut p = params(1);
    p.n_ctx = 2048;
    let (_tx, mut rx) = serve_with(p, vec![InferenceRequest::Generate(r)]);
    let s = drain(rx.remove(0), 1).unwrap();
    assert_eq!(s.text[0], "", "a forced call sends no text");
    assert_eq!(s.calls[0].len(), 1, "{s:?}");
    let call = &s.calls[0][0];
    assert_eq!(call.name, "get_weather");
    let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
    assert!(
        ["c", "f"].contains(&args["unit"].as_str().unwrap()),
        "{args}"
    );
    assert_eq!(s.finish[0].map(|f| f.0), Some(FinishReason::ToolCalls));
}

/// The default chat model, as scripts/setup.sh unpacks it.
fn smollm2() -> GgufProvider {
    let path = golek_config::default_assets_dir().join("models/smollm2-135m-instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    let mut p = params(1);
    p.model_path = path;
    GgufProvider::load("smollm2", &p).expect("SmolLM2 loads")
}

#[test]
fn smollm2_chats_render_through_the_ggufs_own_jinja_template() {
    let provider = smollm2();
    let messages = vec![ChatMessage::new("user", "hi")];
    let plain = chat("hi", 1);
    // The template's own default system message comes first (from the GGUF metadata; a
    // built-in chatml would not add it).
    assert_eq!(
        provider.render_chat(&messages, &plain).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    // Tools: SmolLM2's template knows none, so they are described in the system message and
    // tool results come back as tool_response blocks.
    let mut with_tools = plain.clone();
    with_tools.tools = vec![ToolSpec {
        name: "get_time".into(),
        description: Some("the time".into()),
        parameters: "{}".into(),
    }];
    let mut call = ChatMessage::new("assistant", "");
    call.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "get_time".into(),
        arguments: "{}".into(),
    }];
    let mut result = ChatMessage::new("tool", "noon");
    result.tool_call_id = Some("call_1".into());
    let history = vec![ChatMessage::new("user", "time?"), call, result];
    let rendered = provider.render_chat(&history, &with_tools).unwrap();
    assert!(
        rendered.starts_with("<|im_start|>system\nYou may call one or more functions"),
        "{rendered}"
    );
    assert!(
        rendered.contains("<|im_start|>assistant\n<tool_call>\n{"),
        "{rendered}"
    );
    assert!(
        rendered.contains("<|im_start|>user\n<tool_response>\nnoon\n</tool_response><|im_end|>"),
        "{rendered}"
    );
    assert!(rendered.ends_with("<|im_start|>assistant\n"));
    // tool_choice none hides the tools.
    with_tools.tool_choice = ToolChoice::None;
    assert!(!provider
        .render_chat(&messages, &with_tools)
        .unwrap()
        .contains("<tools>"));
}

#[test]
fn a_prefix_held_by_a_busy_slot_is_copied_instead_of_prefilled() {
    let mut long_runner = greedy(&format!("{LONG} first"), 400);
    let InferenceRequest::Generate(r) = &mut long_runner else {
        unreachable!()
    };
    r.sampling.ignore_eos = true;
    let (tx, mut rx) = serve_with(params(2), vec![long_runner]);
    let mut busy = rx.remove(0);
    // Once the first request generates, its slot holds the shared prefix.
    loop {
        match busy.blocking_recv() {
            Some(Ok(InferenceEvent::Text { .. })) => break,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
    let second = format!("{LONG} second");
    let warm = drain(submit(&tx, greedy(&second, 8)), 1).unwrap();
    drop(busy);
    let shared = {
        let (_tx, mut rx) = serve_with(params(1), vec![greedy(LONG, 1)]);
        drain(rx.remove(0), 1).unwrap().prompt_tokens as usize
    };
    assert!(
        warm.cached_tokens as usize >= shared - 1,
        "{} of {} cached, {shared} shared",
        warm.cached_tokens,
        warm.prompt_tokens
    );
    // The same answer as a cold run of the same prompt.
    let (_tx, mut rx) = serve_with(params(2), vec![greedy(&second, 8)]);
    let cold = drain(rx.remove(0), 1).unwrap();
    assert_eq!(cold.cached_tokens, 0);
    assert_eq!(warm.text, cold.text);
}
