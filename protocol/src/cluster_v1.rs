//! Peer protocol version 1, the one before this build's: a node accepts its requests and
//! answers them in its replies, so that a rolling upgrade keeps forwarding working from old
//! nodes to new ones. The types mirror version 1's shapes field for field and variant for
//! variant (bincode encodes variants by position).

use serde::{Deserialize, Serialize};

use crate::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use crate::inference::{self as now, EmbeddingsRequest, TensorRequest};
use crate::ErrorInfo;

pub const VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub sampling: now::SamplingParams,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InferenceRequest {
    Embeddings(EmbeddingsRequest),
    Tensors(TensorRequest),
    Generate(GenerateRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardRequestV1 {
    pub version: u16,
    pub model: String,
    pub request: InferenceRequest,
    pub timeout_ms: u64,
    pub traceparent: Option<String>,
    pub from_node: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    Stop,
    Length,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InferenceEvent {
    Embeddings(Vec<now::Embedding>),
    Tensors(Vec<now::NamedTensor>),
    Started {
        prompt_tokens: u32,
    },
    Text {
        text: String,
        tokens: u32,
    },
    Finished {
        reason: FinishReason,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ForwardReplyV1 {
    Event(InferenceEvent),
    Error(ErrorInfo),
}

impl From<ForwardRequestV1> for ForwardRequest {
    fn from(r: ForwardRequestV1) -> Self {
        let request = match r.request {
            InferenceRequest::Embeddings(e) => now::InferenceRequest::Embeddings(e),
            InferenceRequest::Tensors(t) => now::InferenceRequest::Tensors(t),
            InferenceRequest::Generate(g) => {
                let prompt = match g.prompt {
                    Prompt::Text(t) => now::Prompt::Text(t),
                    Prompt::Chat(m) => now::Prompt::Chat(
                        m.into_iter()
                            .map(|m| now::ChatMessage::new(&m.role, &m.content))
                            .collect(),
                    ),
                };
                let mut out = now::GenerateRequest::new(prompt, g.max_tokens, g.sampling);
                out.stop = g.stop;
                now::InferenceRequest::Generate(out)
            }
        };
        ForwardRequest {
            version: r.version,
            model: r.model,
            request,
            timeout_ms: r.timeout_ms,
            traceparent: r.traceparent,
            from_node: r.from_node,
        }
    }
}

/// A reply in version 1's shape; `None` for what version 1 cannot say (a tool call, which a
/// version-1 request never asks for).
fn down(reply: &ForwardReply) -> Option<ForwardReplyV1> {
    let event = match reply {
        ForwardReply::Error(e) => return Some(ForwardReplyV1::Error(e.clone())),
        ForwardReply::Event(e) => e,
    };
    Some(ForwardReplyV1::Event(match event {
        now::InferenceEvent::Embeddings(e) => InferenceEvent::Embeddings(e.clone()),
        now::InferenceEvent::Tensors(t) => InferenceEvent::Tensors(t.clone()),
        now::InferenceEvent::Started { prompt_tokens, .. } => InferenceEvent::Started {
            prompt_tokens: *prompt_tokens,
        },
        now::InferenceEvent::Text {
            text, token_ids, ..
        } => InferenceEvent::Text {
            text: text.clone(),
            tokens: token_ids.len().max(1) as u32,
        },
        now::InferenceEvent::Finished {
            reason,
            prompt_tokens,
            completion_tokens,
            ..
        } => InferenceEvent::Finished {
            reason: match reason {
                now::FinishReason::Length => FinishReason::Length,
                now::FinishReason::Stop | now::FinishReason::ToolCalls => FinishReason::Stop,
            },
            prompt_tokens: *prompt_tokens,
            completion_tokens: *completion_tokens,
        },
        now::InferenceEvent::ToolCall { .. } => return None,
    }))
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
        VERSION => decode_frame::<ForwardRequestV1>(body)
            .map(|r| (r.into(), version))
            .map_err(RequestError::Malformed),
        other => Err(RequestError::Version(format!(
            "peer protocol version {other} is not supported (this node speaks {PEER_PROTOCOL_VERSION} and {VERSION})"
        ))),
    }
}

/// Encodes a reply for a request that came in `version`; `Ok(None)` when that version has no
/// way to say it.
pub fn encode_reply(reply: &ForwardReply, version: u16) -> Result<Option<Vec<u8>>, String> {
    if version == VERSION {
        return down(reply).map(|r| encode_frame(&r)).transpose();
    }
    encode_frame(reply).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::SamplingParams;

    #[test]
    fn version_one_requests_are_read_and_answered_in_version_one() {
        let old = ForwardRequestV1 {
            version: 1,
            model: "m".into(),
            request: InferenceRequest::Generate(GenerateRequest {
                prompt: Prompt::Chat(vec![ChatMessage {
                    role: "user".into(),
                    content: "hi".into(),
                }]),
                max_tokens: Some(3),
                stop: vec!["x".into()],
                sampling: SamplingParams::default(),
            }),
            timeout_ms: 10,
            traceparent: None,
            from_node: "old".into(),
        };
        let frame = encode_frame(&old).unwrap();
        let (request, version) = decode_request(&frame[4..]).unwrap();
        assert_eq!(version, 1);
        let now::InferenceRequest::Generate(g) = &request.request else {
            panic!("{request:?}")
        };
        assert_eq!(g.n, 1);
        assert_eq!(g.stop, vec!["x".to_string()]);
        assert_eq!(
            g.prompt,
            now::Prompt::Chat(vec![now::ChatMessage::new("user", "hi")])
        );

        let text = ForwardReply::Event(now::InferenceEvent::Text {
            choice: 0,
            text: "yo".into(),
            token_ids: vec![5, 6],
            logprobs: vec![],
        });
        let bytes = encode_reply(&text, 1).unwrap().unwrap();
        assert_eq!(
            decode_frame::<ForwardReplyV1>(&bytes[4..]).unwrap(),
            ForwardReplyV1::Event(InferenceEvent::Text {
                text: "yo".into(),
                tokens: 2
            })
        );
        let now_bytes = encode_reply(&text, PEER_PROTOCOL_VERSION).unwrap().unwrap();
        assert_eq!(decode_frame::<ForwardReply>(&now_bytes[4..]).unwrap(), text);

        let current = ForwardRequest {
            version: PEER_PROTOCOL_VERSION,
            ..request.clone()
        };
        let frame = encode_frame(&current).unwrap();
        assert_eq!(
            decode_request(&frame[4..]).unwrap(),
            (current, PEER_PROTOCOL_VERSION)
        );
        let future = ForwardRequest {
            version: 9,
            ..request
        };
        let frame = encode_frame(&future).unwrap();
        let RequestError::Version(message) = decode_request(&frame[4..]).unwrap_err() else {
            panic!()
        };
        assert!(
            message.contains("version 9") && message.contains("speaks 2 and 1"),
            "{message}"
        );
        assert!(matches!(
            decode_request(&[]),
            Err(RequestError::Malformed(_))
        ));
    }
}
