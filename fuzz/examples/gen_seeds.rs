//! Writes the fuzz targets' seed inputs under `fuzz/seeds/TARGET/`, small valid examples taken
//! from the crates' tests: `cargo run --example gen_seeds` (in `fuzz/`). The config loader's
//! seeds are `config/examples/*.toml`, copied by `scripts/fuzz.sh --seeds`.

use std::path::{Path, PathBuf};

use golek_protocol::cluster::{
    encode_frame, encode_member, ForwardReply, ForwardRequest, GpuAdvert, LoadAdvert, MemberAdvert,
    ModelAdvert, NodeAdvert, ResourcesAdvert, PEER_PROTOCOL_VERSION,
};
use golek_protocol::inference::Capabilities;
use golek_protocol::model::{ModelState, ProviderInfo
};
use golek_protocol::cluster_v2;
use golek_protocol::generation::ToolChoice;
use golek_protocol::inference::{
    FinishReason, InferenceEvent, InferenceRequest, NamedTensor, SamplingParams, TensorData,
    TensorRequest,
};
use golek_protocol::kserve;
use golek_protocol::validate::{self, parse_json};
use golek_protocol::{ErrorCode, ErrorInfo};
use serde_json::json;

/// OpenAI-compatible bodies from protocol/src/validate/tests.rs and node/tests/*.rs.
const OPENAI: &[(&str, &str)] = &[
    (
        "chat",
        r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":0,"stop":"x","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":5}"#,
    ),
    (
        "completion",
        r#"{"model":"m","prompt":["once"],"max_tokens":3,"top_k":40,"seed":-1,"ignore_eos":true}"#,
    ),
    (
        "chat_tools",
        r#"{"model":"m","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"sunny"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}},"n":2,"logprobs":true,"top_logprobs":3}"#,
    ),
    (
        "chat_schema",
        r#"{"model":"m","messages":[{"role":"developer","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object"},"strict":true}},"top_p":0.9,"min_p":0.1,"presence_penalty":1,"frequency_penalty":-1,"stop":["a","b"]}"#,
    ),
    (
        "completion_logprobs",
        r#"{"model":"m","prompt":"hello","logprobs":2,"response_format":{"type":"json_object"},"stream":false}"#,
    ),
    (
        "bad_temperature",
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
    ),
    ("embeddings_text", r#"{"model":"m","input":"hi"}"#),
    (
        "embeddings_list",
        r#"{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":8}"#,
    ),
    (
        "embeddings_tokens",
        r#"{"model":"m","input":[[1],[2,3]],"user":"u","extra":true}"#,
    ),
];

/// SSE streams as an OpenAI-compatible upstream sends them (providers/src/openai/wire.rs tests).
const SSE: &[(&str, u8, &[u8], &str)] = &[
    (
        "chat_two_choices",
        1,
        &[7, 40, 3],
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null,\"logprobs\":{\"content\":[{\"token\":\"hi\",\"logprob\":-0.5,\"bytes\":[104,105],\"top_logprobs\":[{\"token\":\"hi\",\"logprob\":-0.5}]}]}}]}\r\n\r\n\
         data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}\"},\"finish_reason\":\"stop\"}]}\n\n\
         : a comment\n\n\
         data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n\
         data: [DONE]\n\n",
    ),
    (
        "completion_logprobs",
        0,
        &[12],
        "event: message\ndata: {\"choices\":[{\"index\":0,\"text\":\"yo\",\"finish_reason\":\"length\",\"logprobs\":{\"tokens\":[\"yo\"],\"token_logprobs\":[-0.1],\"top_logprobs\":[{\"yo\":-0.1,\"ya\":-2.0}]}}]}\n\ndata: [DONE]\n\n",
    ),
    (
        "tool_call",
        0,
        &[30, 30, 30, 30],
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n\
         data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n\
         data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n\
         data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    ),
    ("error", 0, &[], "data: {\"error\":{\"message\":\"boom\"}}\n\n"),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn forward(request: InferenceRequest) -> ForwardRequest {
    ForwardRequest {
        version: PEER_PROTOCOL_VERSION,
        model: "m".into(),
        request,
        timeout_ms: 1000,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        from_node: "node-a".into(),
        tenant: None,
    }
}

fn main() {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");

    // openai_request: the bodies themselves.
    let dir = seeds.join("openai_request");
    for (name, body) in OPENAI {
        write(&dir, name, body.as_bytes());
    }

    // kserve_json: bodies like node/tests/kserve.rs's, and every datatype.
    let minilm = json!({"inputs": [
        {"name": "input_ids", "shape": [1, 4], "datatype": "INT64", "data": [101, 7592, 2088, 102]},
        {"name": "attention_mask", "shape": [1, 4], "datatype": "INT64", "data": [1, 1, 1, 1]},
        {"name": "token_type_ids", "shape": [1, 4], "datatype": "INT64", "data": [[0, 0, 0, 0]]},
    ], "id": "req-7", "outputs": [{"name": "last_hidden_state", "parameters": {"binary_data": true}}]});
    let datatypes = json!({"parameters": {"binary_data_output": true}, "inputs": [
        {"name": "f", "shape": [3], "datatype": "FP32", "data": [0.5, 1, -2]},
        {"name": "h", "shape": [3], "datatype": "FP16", "data": [1.0, -2.5, 0.1]},
        {"name": "b", "shape": [1], "datatype": "BF16", "data": [1.0]},
        {"name": "d", "shape": [1], "datatype": "FP64", "data": [1e300]},
        {"name": "u", "shape": [1], "datatype": "UINT64", "data": [18446744073709551615u64]},
        {"name": "i", "shape": [2, 1], "datatype": "INT8", "data": [[-128], [127]]},
        {"name": "q", "shape": [2], "datatype": "BOOL", "data": [true, false]},
        {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["h\u{e9}llo", ""]},
    ]});
    let dir = seeds.join("kserve_json");
    write(&dir, "minilm", &serde_json::to_vec(&minilm).unwrap());
    write(&dir, "datatypes", &serde_json::to_vec(&datatypes).unwrap());

    // kserve_binary: "LENGTH\n" + the JSON header + the tensors' bytes.
    let tensors = [
        NamedTensor {
            name: "a".into(),
            shape: vec![2, 2],
            data: TensorData::I64(vec![1, -2, 3, i64::MAX]),
        },
        NamedTensor {
            name: "b".into(),
            shape: vec![3],
            data: TensorData::Bytes(vec![b"x".to_vec(), vec![0xff, 0], vec![]]),
        },
        NamedTensor {
            name: "c".into(),
            shape: vec![2],
            data: TensorData::F16(vec![0x3c00, 0x7c00]),
        },
        NamedTensor {
            name: "d".into(),
            shape: vec![3],
            data: TensorData::Bool(vec![true, false, true]),
        },
    ];
    let mut inputs = Vec::new();
    let mut binary = Vec::new();
    for t in &tensors {
        let (described, bytes) = kserve::to_binary(t);
        inputs.push(described);
        binary.extend(bytes);
    }
    // One input inline, as clients may mix both.
    inputs.push(kserve::to_json(&NamedTensor {
        name: "e".into(),
        shape: vec![1],
        data: TensorData::F32(vec![0.25]),
    }));
    let header = serde_json::to_vec(&json!({"inputs": inputs, "id": "bin"})).unwrap();
    let mut body = format!("{}\n", header.len()).into_bytes();
    body.extend(&header);
    body.extend(&binary);
    let dir = seeds.join("kserve_binary");
    write(&dir, "mixed", &body);
    write(&dir, "no_header", &serde_json::to_vec(&minilm).unwrap());

    // peer_frame: frame bodies and whole frames of requests (both versions) and replies.
    let dir = seeds.join("peer_frame");
    let mut stream = Vec::new();
    for (name, body) in OPENAI {
        let chat = name.starts_with("chat");
        let request = if name.starts_with("embeddings") {
            validate::embeddings(parse_json(body.as_bytes()).unwrap())
                .unwrap()
                .request
        } else {
            match parse_json(body.as_bytes()).and_then(|b| validate::generation(b, chat)) {
                Ok(valid) => InferenceRequest::Generate(valid.request),
                Err(e) => {
                    println!("seed {name} is not valid ({}), not a frame", e.message);
                    continue;
                }
            }
        };
        let frame = encode_frame(&forward(request)).unwrap();
        write(&dir, &format!("request_{name}"), &frame[4..]);
        stream.extend(frame);
    }
    let tensor_request = InferenceRequest::Tensors(TensorRequest {
        inputs: tensors.to_vec(),
        outputs: vec!["y".into()],
    });
    let frame = encode_frame(&forward(tensor_request)).unwrap();
    write(&dir, "request_tensors", &frame[4..]);
    let v2 = cluster_v2::ForwardRequestV2 {
        version: cluster_v2::VERSION,
        model: "m".into(),
        request: cluster_v2::InferenceRequest::Generate(cluster_v2::GenerateRequest {
            prompt: golek_protocol::inference::Prompt::Chat(vec![
                golek_protocol::inference::ChatMessage::new("user", "hi"),
            ]),
            max_tokens: Some(3),
            stop: vec!["x".into()],
            sampling: SamplingParams::default(),
            n: 1,
            logprobs: None,
            response_format: None,
            tools: vec![],
            tool_choice: ToolChoice::Auto,
        }),
        timeout_ms: 10,
        traceparent: None,
        from_node: "old".into(),
    };
    let frame = encode_frame(&v2).unwrap();
    write(&dir, "request_v2", &frame[4..]);
    stream.extend(frame);
    write(&dir, "stream_of_frames", &stream);
    let replies = [
        ForwardReply::Event(InferenceEvent::Text {
            choice: 0,
            text: "yo".into(),
            token_ids: vec![5, 6],
            logprobs: vec![],
        }),
        ForwardReply::Event(InferenceEvent::Finished {
            choice: 1,
            reason: FinishReason::ToolCalls,
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 1,
        }),
        ForwardReply::Error(ErrorInfo::invalid(
            "stop",
            "stop: strings must not be empty",
        )),
        ForwardReply::Error(ErrorInfo::new(ErrorCode::Timeout, "late")),
    ];
    for (i, reply) in replies.iter().enumerate() {
        write(
            &dir,
            &format!("reply_{i}"),
            &encode_frame(reply).unwrap()[4..],
        );
    }

    // gossip_values: a member's key-values as NUL-separated `key=value` records.
    let member = MemberAdvert {
        files: Vec::new(),
        draining: false,
        node: NodeAdvert {
            http_addr: "127.0.0.1:8080".into(),
            quic_addr: "127.0.0.1:7946".into(),
            version: "0.1.0".into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
        },
        models: vec![ModelAdvert {
            name: "m".into(),
            provider: "onnx".into(),
            state: ModelState::Ready,
            info: Some(ProviderInfo {
                capabilities: Capabilities {
                    embeddings: true,
                    ..Default::default()
                },
                embedding_dims: Some(384),
                max_input_tokens: Some(256),
                vocab_size: Some(30522),
                context_tokens: None,
                inputs: vec![],
                outputs: vec![],
            }),
        }],
        load: LoadAdvert {
            queued: 1,
            in_flight: 2,
            capacity: 3,
        },
        resources: ResourcesAdvert {
            cpus: 16,
            memory_total_bytes: 1 << 35,
            memory_available_bytes: 1 << 34,
            gpus: vec![GpuAdvert {
                name: "gpu0".into(),
                memory_total_bytes: 1 << 36,
                memory_free_bytes: 1 << 35,
            }],
        },
    };
    let dir = seeds.join("gossip_values");
    let kv = encode_member(&member);
    let records: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
    write(&dir, "member", records.join("\0").as_bytes());
    let short: Vec<String> = kv
        .iter()
        .enumerate()
        .map(|(i, (_, v))| format!("{i}={v}"))
        .collect();
    write(&dir, "member_short_keys", short.join("\0").as_bytes());
    for (key, value) in &kv {
        write(&dir, key.trim_start_matches("golek."), value.as_bytes());
    }

    // sse_reader: mode byte, cut count, cut lengths, then the body.
    let dir = seeds.join("sse_reader");
    for (name, mode, cuts, body) in SSE {
        let mut input = vec![*mode, cuts.len() as u8];
        input.extend_from_slice(cuts);
        input.extend_from_slice(body.as_bytes());
        write(&dir, name, &input);
    }
    println!("seeds written under {}", seeds.display());
}
