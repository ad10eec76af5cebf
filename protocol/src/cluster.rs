//! What nodes tell each other: the typed gossip keys every node publishes about itself, and the
//! frames of the peer protocol that forwards a request to another node.
//!
//! Gossip values are JSON strings under fixed keys; this module is the only place that knows the
//! key names ([`encode_member`], [`decode_member`]). Peer frames are bincode 2 with a 4-byte
//! big-endian length before each, a protocol version in the request, and a size cap.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::inference::{InferenceEvent, InferenceRequest};
use crate::model::{ModelState, ProviderInfo};
use crate::ErrorInfo;

/// A node id: what `--node-id` and the node's certificate say. Lowercase letters, digits and
/// `-`, 1 to 63 characters, not starting or ending with `-` (it is a DNS label in the
/// certificate).
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node id {id:?} must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
        ))
    }
}

/// Addresses and build of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAdvert {
    pub http_addr: String,
    pub quic_addr: String,
    pub version: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One model a node serves, with its provider's description (capabilities, dimensions, tensor
/// specs) so that other nodes can check requests for it and describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAdvert {
    pub name: String,
    pub provider: String,
    pub state: ModelState,
    #[serde(default)]
    pub info: Option<ProviderInfo>,
}

/// How busy a node is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadAdvert {
    /// Requests waiting in model queues.
    pub queued: u64,
    /// Requests forwarded to this node by peers and still running.
    pub in_flight: u64,
    /// Total queue capacity of its models.
    pub capacity: u64,
}

/// What the node can read about its machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesAdvert {
    pub cpus: u32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    /// GPUs with their free memory, where the node can read them (empty otherwise).
    #[serde(default)]
    pub gpus: Vec<GpuAdvert>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuAdvert {
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

/// Everything one node gossips about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberAdvert {
    pub node: NodeAdvert,
    pub models: Vec<ModelAdvert>,
    pub load: LoadAdvert,
    pub resources: ResourcesAdvert,
    /// Model files it can send (sha256), from its store.
    #[serde(default)]
    pub files: Vec<String>,
    /// Model files it is fetching (sha256): it sends the chunks it already has.
    #[serde(default)]
    pub fetching: Vec<String>,
    /// It is draining (on its way out): peers send it nothing new.
    #[serde(default)]
    pub draining: bool,
}

/// The version of the gossip values this build publishes.
/// 2: model states and provider descriptions are typed (same JSON as version 1 wrote, now
/// decoded strictly), and this key is published.
/// 4: `golek.deployments` (the desired state of run-time deployments) is published, and
/// model states may be `warming` or `draining`.
pub const GOSSIP_VERSION: u16 = 4;

/// The gossip key under which a node publishes every API key record it knows (JSON list;
/// hashed secrets only). Added in gossip version 3.
pub const KEY_API_KEYS: &str = "golek.api_keys";

/// The gossip key under which a node publishes every run-time deployment record it knows
/// (a [`crate::deploy::DesiredList`] as JSON, tombstones included). Added in version 4.
pub const KEY_DESIRED: &str = "golek.deployments";

const KEY_VERSION: &str = "golek.gossip_version";
const KEY_NODE: &str = "golek.node";
const KEY_MODELS: &str = "golek.models";
const KEY_LOAD: &str = "golek.load";
const KEY_RESOURCES: &str = "golek.resources";
/// The sha256 of every model file in the node's store (version 4).
const KEY_FILES: &str = "golek.files";
/// The sha256 of every model file the node is fetching (version 4; older nodes ignore it).
const KEY_FETCHING: &str = "golek.fetching";
/// `true` while the node drains (absent from builds before draining: not draining).
const KEY_DRAINING: &str = "golek.draining";

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("gossip values are plain data")
}

/// The key-value pairs a node sets on its own gossip state.
pub fn encode_member(member: &MemberAdvert) -> Vec<(String, String)> {
    vec![
        (KEY_VERSION.into(), GOSSIP_VERSION.to_string()),
        (KEY_NODE.into(), json(&member.node)),
        (KEY_MODELS.into(), json(&member.models)),
        (KEY_LOAD.into(), json(&member.load)),
        (KEY_RESOURCES.into(), json(&member.resources)),
        (KEY_FILES.into(), json(&member.files)),
        (KEY_FETCHING.into(), json(&member.fetching)),
        (KEY_DRAINING.into(), json(&member.draining)),
    ]
}

/// Reads a member's advert from its gossip key-values (`get(key)`), decoded once into typed
/// values. A node that has not yet published its `node` key is `Ok(None)`; a malformed value
/// is an error naming the key. Values of this version and the one before (which published no
/// version key) are read; others are refused by version.
pub fn decode_member<'a, F: Fn(&str) -> Option<&'a str>>(
    get: F,
) -> Result<Option<MemberAdvert>, String> {
    fn field<'a, T: DeserializeOwned, F: Fn(&str) -> Option<&'a str>>(
        get: &F,
        key: &str,
    ) -> Result<Option<T>, String> {
        get(key)
            .map(|raw| serde_json::from_str(raw).map_err(|e| format!("gossip key {key}: {e}")))
            .transpose()
    }
    let get = &get;
    if let Some(raw) = get(KEY_VERSION) {
        let version: u16 = raw
            .parse()
            .map_err(|_| format!("gossip key {KEY_VERSION}: {raw:?} is not a version number"))?;
        if version != GOSSIP_VERSION && version.checked_add(1) != Some(GOSSIP_VERSION) {
            return Err(format!(
                "gossip version {version} is not supported (this node reads versions {} and {GOSSIP_VERSION})",
                GOSSIP_VERSION - 1
            ));
        }
    }
    let Some(node) = field::<NodeAdvert, F>(get, KEY_NODE)? else {
        return Ok(None);
    };
    Ok(Some(MemberAdvert {
        node,
        models: field(get, KEY_MODELS)?.unwrap_or_default(),
        load: field(get, KEY_LOAD)?.unwrap_or_default(),
        resources: field(get, KEY_RESOURCES)?.unwrap_or_default(),
        files: field(get, KEY_FILES)?.unwrap_or_default(),
        fetching: field(get, KEY_FETCHING)?.unwrap_or_default(),
        draining: field(get, KEY_DRAINING)?.unwrap_or_default(),
    }))
}

/// A join request (`golek-join/1`): proof that the node holds a join token's secret, without
/// the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token_id: String,
    pub expires_unix_s: u64,
    pub node_id: String,
    /// HMAC-SHA256 of the node id under the token's secret.
    pub proof: Vec<u8>,
}

/// The seed's answer: the new node's certificate, key and the cluster CA, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinReply {
    Issued {
        cert_pem: String,
        key_pem: String,
        ca_pem: String,
    },
    Refused(String),
}

/// The version of the peer protocol this build speaks.
/// 2: generation requests carry `n`, logprobs, response formats and tools; text events carry
/// token ids and log probabilities.
/// 3: generation requests carry `continuation` (a stream resumed on another replica); answers
/// start with a `Served` event; requests carry their tenant; errors may be 401, 403 or a
/// tenant's 429.
pub const PEER_PROTOCOL_VERSION: u16 = 3;
/// The largest peer frame accepted (a request with big tensors fits; a bogus length does not).
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// A request forwarded to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardRequest {
    pub version: u16,
    pub model: String,
    pub request: InferenceRequest,
    /// What remains of the client's deadline.
    pub timeout_ms: u64,
    /// W3C trace context of the client's request, when there is one.
    pub traceparent: Option<String>,
    /// The node that forwarded it (a forwarded request is never forwarded again).
    pub from_node: String,
    /// The tenant whose key the request came with: its limits hold where it is served.
    pub tenant: Option<String>,
}

/// One answer frame: an event of the stream, or the error that ends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ForwardReply {
    Event(InferenceEvent),
    Error(ErrorInfo),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// A frame: 4-byte big-endian length, then the bincode body.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let body = bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| format!("cannot encode a peer frame: {e}"))?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(format!(
            "peer frame of {} bytes is over the {MAX_FRAME_BYTES}-byte cap",
            body.len()
        ));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend(body);
    Ok(out)
}

/// The body length a frame header announces, refused when over the cap.
pub fn frame_length(header: [u8; 4]) -> Result<usize, String> {
    let n = u32::from_be_bytes(header) as usize;
    if n > MAX_FRAME_BYTES {
        return Err(format!(
            "peer frame announces {n} bytes, over the {MAX_FRAME_BYTES}-byte cap"
        ));
    }
    Ok(n)
}

/// Decodes a frame body (after its length); trailing bytes are an error.
pub fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::serde::decode_from_slice(body, bincode_config())
        .map_err(|e| format!("malformed peer frame: {e}"))?;
    if used != body.len() {
        return Err(format!(
            "malformed peer frame: {} bytes after the value",
            body.len() - used
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::{EmbeddingInput, EmbeddingsRequest};

    #[test]
    fn node_ids_are_dns_labels() {
        assert!(check_node_id("node-a1").is_ok());
        for bad in ["", "Node", "a_b", "-a", "a-", &"x".repeat(64)] {
            assert!(check_node_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn members_round_trip_through_gossip_keys_and_bad_values_name_the_key() {
        let member = MemberAdvert {
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
                info: None,
            }],
            load: LoadAdvert {
                queued: 1,
                in_flight: 2,
                capacity: 3,
            },
            resources: ResourcesAdvert::default(),
            files: vec!["ab".repeat(32)],
            fetching: vec!["cd".repeat(32)],
            draining: true,
        };
        let kv: BTreeMap<String, String> = encode_member(&member).into_iter().collect();
        let back = decode_member(|k| kv.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, Some(member));
        assert_eq!(decode_member(|_| None).unwrap(), None);
        let mut broken = kv.clone();
        broken.insert(KEY_LOAD.into(), "{".into());
        let err = decode_member(|k| broken.get(k).map(String::as_str)).unwrap_err();
        assert!(err.contains("golek.load"), "{err}");
        // A previous-version member (no version key, states as words) is read; an unknown
        // state reads as stopped; a wrongly typed description is an error naming its key.
        let mut v1 = kv.clone();
        v1.remove(KEY_VERSION);
        v1.insert(
            KEY_MODELS.into(),
            r#"[{"name":"m","provider":"onnx","state":"ready","info":null},
                {"name":"n","provider":"gguf","state":"dreaming"}]"#
                .into(),
        );
        let back = decode_member(|k| v1.get(k).map(String::as_str))
            .unwrap()
            .unwrap();
        assert_eq!(back.models[0].state, ModelState::Ready);
        assert_eq!(back.models[1].state, ModelState::Stopped);
        v1.insert(
            KEY_MODELS.into(),
            r#"[{"name":"m","provider":"onnx","state":"ready","info":{"embedding_dims":"many"}}]"#
                .into(),
        );
        let err = decode_member(|k| v1.get(k).map(String::as_str)).unwrap_err();
        assert!(err.contains("golek.models"), "{err}");
        // Versions other than this one and the previous are refused by number.
        let mut previous = kv.clone();
        previous.insert(KEY_VERSION.into(), (GOSSIP_VERSION - 1).to_string());
        assert!(decode_member(|k| previous.get(k).map(String::as_str)).is_ok());
        for bad in ["5", "2", "1", "0", "65535", "x"] {
            let mut other = kv.clone();
            other.insert(KEY_VERSION.into(), bad.into());
            let err = decode_member(|k| other.get(k).map(String::as_str)).unwrap_err();
            assert!(
                err.contains(KEY_VERSION) || err.contains("version"),
                "{err}"
            );
        }
    }

    #[test]
    fn frames_round_trip_and_malformed_ones_are_errors() {
        let request = ForwardRequest {
            version: PEER_PROTOCOL_VERSION,
            model: "m".into(),
            request: InferenceRequest::Embeddings(EmbeddingsRequest {
                inputs: vec![EmbeddingInput::Text("hi".into())],
            }),
            timeout_ms: 1000,
            traceparent: None,
            from_node: "a".into(),
            tenant: None,
        };
        let frame = encode_frame(&request).unwrap();
        let n = frame_length(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(n, frame.len() - 4);
        assert_eq!(
            decode_frame::<ForwardRequest>(&frame[4..]).unwrap(),
            request
        );
        assert!(decode_frame::<ForwardRequest>(&frame[4..frame.len() - 1]).is_err());
        assert!(decode_frame::<ForwardRequest>(&[0xff; 7]).is_err());
        let mut long = frame[4..].to_vec();
        long.push(0);
        assert!(decode_frame::<ForwardRequest>(&long)
            .unwrap_err()
            .contains("after the value"));
        assert!(frame_length([0xff; 4]).unwrap_err().contains("cap"));
    }
}
