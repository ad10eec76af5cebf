//! Peer protocol version 2, the one before this build's: a node accepts its requests (and
//! answers them in replies version 2 reads, which have not changed), so that a rolling upgrade
//! keeps forwarding working from old nodes to new ones. The types mirror version 2's request
//! shapes field for field and variant for variant (bincode encodes fields by position).

use serde::{Deserialize, Serialize};

use crate::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use crate::generation::{ResponseFormat, ToolChoice, ToolSpec};
use crate::inference::{self as now, EmbeddingsRequest, TensorRequest};

pub const VERSION: u16 = 2;

/// Version 2's generation request: this build's without `continuation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub prompt: now::Prompt,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub sampling: now::SamplingParams,
    pub n: u32,
    pub logprobs: Option<u32>,
    pub response_format: Option<ResponseFormat>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InferenceRequest {
    Embeddings(EmbeddingsRequest),
    Tensors(TensorRequest),
    Generate(GenerateRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardRequestV2 {
    pub version: u16,
    pub model: String,
    pub request: InferenceRequest,
    pub timeout_ms: u64,
    pub traceparent: Option<String>,
    pub from_node: String,
}

impl From<ForwardRequestV2> for ForwardRequest {
    fn from(r: ForwardRequestV2) -> Self {
        let request = match r.request {
            InferenceRequest::Embeddings(e) => now::InferenceRequest::Embeddings(e),
            InferenceRequest::Tensors(t) => now::InferenceRequest::Tensors(t),
            InferenceRequest::Generate(g) => {
                now::InferenceRequest::Generate(now::GenerateRequest {
                    prompt: g.prompt,
                    max_tokens: g.max_tokens,
                    stop: g.stop,
                    sampling: g.sampling,
                    n: g.n,
                    logprobs: g.logprobs,
                    response_format: g.response_format,
                    tools: g.tools,
                    tool_choice: g.tool_choice,
                    continuation: Vec::new(),
                })
            }
        };
        ForwardRequest {
            version: r.version,
            model: r.model,
            request,
            timeout_ms: r.timeout_ms,
            traceparent: r.traceparent,
            from_node: r.from_node,
            tenant: None,
        }
    }
}

/// Why a request frame was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    Malformed(String),
    /// A version this node does not speak; the message names it and the ones it does.
    Version(String),
}

/// Decodes a request frame of this build's version or the one before; returns it in this
/// build's shape with the version it came in (replies go back in that version).
pub fn decode_request(body: &[u8]) -> Result<(ForwardRequest, u16), RequestError> {
    // The version is the first field: read it alone, then the frame in its shape.
    let version: u16 = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| RequestError::Malformed(format!("malformed peer frame: {e}")))?;
    match version {
        PEER_PROTOCOL_VERSION => decode_frame::<ForwardRequest>(body)
            .map(|r| (r, version))
            .map_err(RequestError::Malformed),
        VERSION => decode_frame::<ForwardRequestV2>(body)
            .map(|r| (r.into(), version))
            .map_err(RequestError::Malformed),
        other => Err(RequestError::Version(format!(
            "peer protocol version {other} is not supported (this node speaks {PEER_PROTOCOL_VERSION} and {VERSION})"
        ))),
    }
}

/// Encodes a reply for a request that came in `version`; `Ok(None)` for what that version has
/// no way to say (version 2 has no `Served` event; its other replies are unchanged).
pub fn encode_reply(reply: &ForwardReply, version: u16) -> Result<Option<Vec<u8>>, String> {
    if version == VERSION
        && matches!(
            reply,
            ForwardReply::Event(now::InferenceEvent::Served { .. })
        )
    {
        return Ok(None);
    }
    encode_frame(reply).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::SamplingParams;

    #[test]
    fn version_two_requests_are_read_and_older_ones_refused_by_name() {
        let old = ForwardRequestV2 {
            version: 2,
            model: "m".into(),
            request: InferenceRequest::Generate(GenerateRequest {
                prompt: now::Prompt::Chat(vec![now::ChatMessage::new("user", "hi")]),
                max_tokens: Some(3),
                stop: vec!["x".into()],
                sampling: SamplingParams::default(),
                n: 2,
                logprobs: Some(1),
                response_format: None,
                tools: vec![],
                tool_choice: ToolChoice::Auto,
            }),
            timeout_ms: 10,
            traceparent: None,
            from_node: "old".into(),
        };
        let frame = encode_frame(&old).unwrap();
        let (request, version) = decode_request(&frame[4..]).unwrap();
        assert_eq!(version, 2);
        let now::InferenceRequest::Generate(g) = &request.request else {
            panic!("{request:?}")
        };
        assert_eq!((g.n, g.logprobs), (2, Some(1)));
        assert_eq!(g.stop, vec!["x".to_string()]);
        assert!(g.continuation.is_empty());

        let text = ForwardReply::Event(now::InferenceEvent::Text {
            choice: 0,
            text: "yo".into(),
            token_ids: vec![5, 6],
            logprobs: vec![],
        });
        let bytes = encode_reply(&text, VERSION).unwrap().unwrap();
        assert_eq!(decode_frame::<ForwardReply>(&bytes[4..]).unwrap(), text);
        let served = ForwardReply::Event(now::InferenceEvent::Served {
            node: "b".into(),
            model: "m".into(),
        });
        assert_eq!(encode_reply(&served, VERSION).unwrap(), None);
        assert!(encode_reply(&served, PEER_PROTOCOL_VERSION)
            .unwrap()
            .is_some());

        let mut current = ForwardRequest {
            version: PEER_PROTOCOL_VERSION,
            ..request.clone()
        };
        if let now::InferenceRequest::Generate(g) = &mut current.request {
            g.continuation = vec![7, 8, 9];
        }
        let frame = encode_frame(&current).unwrap();
        assert_eq!(
            decode_request(&frame[4..]).unwrap(),
            (current, PEER_PROTOCOL_VERSION)
        );
        for version in [1, 9] {
            let other = ForwardRequest {
                version,
                ..request.clone()
            };
            let frame = encode_frame(&other).unwrap();
            let RequestError::Version(message) = decode_request(&frame[4..]).unwrap_err() else {
                panic!()
            };
            assert!(
                message.contains(&format!("version {version}"))
                    && message.contains("speaks 3 and 2"),
                "{message}"
            );
        }
        assert!(matches!(
            decode_request(&[]),
            Err(RequestError::Malformed(_))
        ));
    }
}
