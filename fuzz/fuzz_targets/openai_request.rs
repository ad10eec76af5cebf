//! OpenAI-compatible request validation: `parse_json` then `validate::generation` (chat and
//! completions) and `validate::embeddings`. A request that validates passes `check()`, goes to
//! a peer and back (the peer frame), and makes an upstream body for the `openai` provider.
#![no_main]

use golek_protocol::cluster::encode_frame;
use golek_protocol::cluster::{ForwardRequest, PEER_PROTOCOL_VERSION};
use golek_protocol::cluster_v2::decode_request;
use golek_protocol::inference::InferenceRequest;
use golek_protocol::openai::{EmbeddingsRequestBody, GenerationRequestBody};
use golek_protocol::validate::{self, parse_json};
use libfuzzer_sys::fuzz_target;

/// A validated request is forwarded to a peer: it encodes, and the peer decodes it.
fn forwarded(model: &str, request: InferenceRequest) {
    let forward = ForwardRequest {
        version: PEER_PROTOCOL_VERSION,
        model: model.to_string(),
        request,
        timeout_ms: 1000,
        traceparent: None,
        from_node: "fuzz".into(),
        tenant: None,
    };
    let frame = encode_frame(&forward).expect("a valid request encodes");
    let (back, _) = decode_request(&frame[4..]).expect("a peer decodes a valid request");
    back.request
        .check()
        .expect("a forwarded request stays valid");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_json::<GenerationRequestBody>(data) {
        for chat in [true, false] {
            if let Ok(valid) = validate::generation(body.clone(), chat) {
                valid
                    .request
                    .check()
                    .expect("a validated request passes check");
                let _ = golek_providers::openai::upstream_body(&valid.model, &valid.request);
                forwarded(&valid.model, InferenceRequest::Generate(valid.request));
            }
        }
    }
    if let Ok(body) = parse_json::<EmbeddingsRequestBody>(data) {
        if let Ok(valid) = validate::embeddings(body) {
            valid
                .request
                .check()
                .expect("a validated request passes check");
            forwarded(&valid.model, valid.request);
        }
    }
});
