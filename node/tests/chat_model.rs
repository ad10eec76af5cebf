//! The default chat model, SmolLM2-135M-Instruct, through a real node: sensible answers,
//! streamed text equal to the JSON answer, usage, the prompt cache across a multi-turn chat,
//! `n` choices prefilled once, structured output, tools and log probabilities.

mod common;

use common::TestNode;
use serde_json::{json, Value};

const MODEL: &str = "smollm2-135m-instruct";

fn ask(question: &str, max_tokens: u32) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": question}],
           "max_tokens": max_tokens, "temperature": 0})
}

async fn answer(node: &TestNode, body: &Value) -> Value {
    let response = node.post_json("/v1/chat/completions", body).await;
    let status = response.status();
    let out: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{out}");
    out
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The text of an SSE answer (all deltas of choice 0), and its last usage.
async fn streamed(node: &TestNode, body: &Value) -> (String, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = node
        .post_json("/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let mut out = String::new();
    let mut usage = Value::Null;
    for line in text.lines() {
        let Some(payload) = line.strip_prefix("data: ") else {
            continue;
        };
        if payload == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(payload).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            out.push_str(t);
        }
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
    }
    (out, usage)
}

#[tokio::test]
async fn the_default_chat_model_answers_sensibly_and_streams_the_same_text() {
    let node = TestNode::start_default_models(&[]).await;
    for (question, keyword) in [
        ("What is the capital of France?", "Paris"),
        ("What is 2+2?", "4"),
        ("What color is the sky on a clear day?", "blue"),
    ] {
        let body = ask(question, 48);
        let out = answer(&node, &body).await;
        let text = content(&out);
        assert!(text.contains(keyword), "{question} -> {text:?}");
        let (stream_text, usage) = streamed(&node, &body).await;
        assert_eq!(
            stream_text, text,
            "{question}: streamed and JSON answers differ"
        );
        for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            assert_eq!(usage[key], out["usage"][key], "{question}: {key}");
        }
        // The same prompt again: all of it but its last token comes from the prompt cache.
        assert_eq!(
            usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap()
                + 1,
            usage["prompt_tokens"].as_u64().unwrap()
        );
        let u = &out["usage"];
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
        assert!(u["completion_tokens"].as_u64().unwrap() >= 1);
    }
}

#[tokio::test]
async fn a_chat_without_a_system_message_gets_the_deployments_system_prompt() {
    let node = TestNode::start_default_models(&[]).await;
    // The default deployment's system_prompt ("You are a helpful AI assistant named SmolLM,
    // trained by Hugging Face.") is added when the client sends none: the same question costs
    // more prompt tokens without a system message than with a one-word one.
    let bare = answer(&node, &ask("hi", 1)).await;
    let with_system = answer(
        &node,
        &json!({"model": MODEL, "max_tokens": 1, "temperature": 0,
                "messages": [{"role": "system", "content": "Hi."}, {"role": "user", "content": "hi"}]}),
    )
    .await;
    let tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        tokens(&bare) >= tokens(&with_system) + 10,
        "{} vs {}",
        tokens(&bare),
        tokens(&with_system)
    );
}

const SYSTEM: &str = "You are a patient assistant for a small bakery in Lyon. The bakery sells \
    croissants, pain au chocolat, baguettes, brioche, fruit tarts and macarons. It opens at seven \
    in the morning and closes at seven in the evening, every day except Monday. Orders for cakes \
    must be placed two days in advance, and the bakery delivers within five kilometres for a fee \
    of three euros. Answer questions about the menu, the opening hours, orders and delivery. Keep \
    answers short and friendly, and never invent products that are not on the menu. If a customer \
    asks about allergies, tell them that every product may contain traces of nuts, milk, eggs and \
    gluten, and suggest they call the bakery before ordering. Prices: a croissant costs one euro \
    twenty, a baguette one euro ten, a fruit tart four euros fifty and a box of six macarons nine \
    euros. Payment by card or cash is accepted.";

#[tokio::test]
async fn a_multi_turn_chat_prefills_only_the_new_turn_and_answers_as_a_cold_run() {
    let args = ["--set", "models.smollm2-135m-instruct.params.slots=2"];
    let node = TestNode::start_default_models(&args).await;
    let mut messages = vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": "When do you open?"}),
    ];
    let first = answer(
        &node,
        &json!({"model": MODEL, "messages": messages, "max_tokens": 24, "temperature": 0}),
    )
    .await;
    assert!(
        first["usage"]["prompt_tokens"].as_u64().unwrap() >= 200,
        "{first}"
    );
    // The client's copy of the answer (edited, as clients may): the cache then holds exactly
    // the first prompt, prefilled in one batch, and the cold run below prefills the same
    // positions in one batch too. (A history holding the model's own answer would compare KV
    // decoded token by token with KV prefilled in a batch: CPU ggml does not promise equal
    // logits across batch shapes.)
    messages.push(json!({"role": "assistant", "content": "We open at seven in the morning, every day except Monday."}));
    messages.push(json!({"role": "user", "content": "How much is a croissant?"}));
    let body = json!({"model": MODEL, "messages": messages, "max_tokens": 24, "temperature": 0});
    let warm = answer(&node, &body).await;
    let cached = warm["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached >= 200, "cached {cached}: {warm}");
    let metric = "golek_gen_prompt_cached_tokens_total{model=\"smollm2-135m-instruct\"}";
    assert!(node.metric(metric).await.unwrap_or(0.0) >= cached as f64);
    // The same second turn on a fresh node of the same layout: prefilled whole, same answer.
    let cold_node = TestNode::start_default_models(&args).await;
    let cold = answer(&cold_node, &body).await;
    assert_eq!(cold["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(content(&warm), content(&cold));
}

#[tokio::test]
async fn n_choices_prefill_the_prompt_once() {
    let node = TestNode::start_default_models(&[]).await;
    let prefilled = "golek_gen_prompt_prefilled_tokens_total{model=\"smollm2-135m-instruct\"}";
    let before = node.metric(prefilled).await.unwrap_or(0.0);
    let body = json!({"model": MODEL, "n": 3, "max_tokens": 8, "temperature": 0.8, "seed": 1,
        "messages": [{"role": "user", "content": "Name a fruit that is sweet and tasty."}]});
    let out = answer(&node, &body).await;
    let choices = out["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert!(c["finish_reason"].is_string());
    }
    let prompt = out["usage"]["prompt_tokens"].as_f64().unwrap();
    let after = node.metric(prefilled).await.unwrap();
    assert_eq!(
        after - before,
        prompt,
        "the prompt is prefilled once for three choices"
    );
    let too_many = node
        .post_json(
            "/v1/chat/completions",
            &json!({"model": MODEL, "n": 9, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(too_many.status(), 400);
    let err: Value = too_many.json().await.unwrap();
    assert_eq!(err["error"]["param"], "n");
}
