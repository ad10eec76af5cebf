//! One front door: over the QUIC client API and as a peer frame, bad requests get the same
//! clear refusals as over HTTP (naming the field), deadlines are clamped, and a stream from
//! another client on the same model finishes untouched.

use std::net::SocketAddr;
use std::time::Duration;

use golek_actors::cluster::client::QuicClient;
use golek_actors::cluster::frames::read_frame;
use golek_actors::cluster::tls::NodeIdentity;
use golek_actors::cluster::transport::QuicNode;
use golek_actors::Tasks;
use golek_cluster_tests::{Ca, Models, Node, NodeSpec};
use golek_protocol::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use golek_protocol::cluster_v2;
use golek_protocol::generation::ToolChoice;
use golek_protocol::inference::{
    EmbeddingInput, EmbeddingsRequest, FinishReason, GenerateRequest, InferenceEvent,
    InferenceRequest, Prompt, SamplingParams,
};
use golek_protocol::ErrorInfo;
use serde_json::json;

fn generate(prompt: String, max_tokens: u32) -> InferenceRequest {
    let sampling = SamplingParams {
        temperature: 0.0,
        ignore_eos: true,
        ..Default::default()
    };
    InferenceRequest::Generate(GenerateRequest::new(
        Prompt::Text(prompt),
        Some(max_tokens),
        sampling,
    ))
}

/// The bad requests, each with the field its refusal must name.
fn bad_requests() -> Vec<(&'static str, &'static str, InferenceRequest)> {
    vec![
        (
            "golek-tiny",
            "max_tokens",
            generate("hello".into(), u32::MAX),
        ),
        (
            "golek-tiny",
            "prompt",
            generate("many words ".repeat(20_000), 8),
        ),
        (
            "all-minilm-l6-v2",
            "input",
            InferenceRequest::Embeddings(EmbeddingsRequest {
                inputs: (0..5000)
                    .map(|i| EmbeddingInput::Text(format!("text {i}")))
                    .collect(),
            }),
        ),
    ]
}

/// Every event of one QUIC client request, up to the first error.
async fn client_events(
    client: &QuicClient,
    model: &str,
    request: InferenceRequest,
    timeout: Duration,
) -> Vec<Result<InferenceEvent, ErrorInfo>> {
    let mut stream = client.infer(model, request, timeout).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item);
    }
    out
}

/// Every reply to one peer frame.
async fn peer_replies(connection: &quinn::Connection, frame: &ForwardRequest) -> Vec<ForwardReply> {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&encode_frame(frame).unwrap()).await.unwrap();
    let _ = send.finish();
    let mut out = Vec::new();
    while let Some(body) = read_frame(&mut recv).await.unwrap() {
        out.push(decode_frame(&body).unwrap());
    }
    out
}

fn frame(model: &str, request: InferenceRequest, timeout_ms: u64) -> ForwardRequest {
    ForwardRequest {
        version: PEER_PROTOCOL_VERSION,
        model: model.into(),
        request,
        timeout_ms,
        traceparent: None,
        from_node: "tester".into(),
        tenant: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_clients_and_peers_meet_the_same_checks_and_leave_other_streams_alone() {
    let ca = Ca::new();
    let mut spec = NodeSpec::new("door", ca.issue("door"), Models::Generation);
    spec.args = ["--set", "models.all-minilm-l6-v2.enabled=true"]
        .map(String::from)
        .to_vec();
    let node = Node::start(spec).await;
    let quic: SocketAddr = node.spec.quic;

    // Another client's long stream on the same model, running through everything below.
    let http = reqwest::Client::new();
    let long = http
        .post(node.url("/v1/completions"))
        .json(
            &json!({"model": "golek-tiny", "prompt": "a long story", "max_tokens": 600,
                      "temperature": 0, "ignore_eos": true, "stream": true}),
        )
        .send();
    let long = tokio::spawn(async move { long.await.unwrap().text().await.unwrap() });

    let client = QuicClient::connect(quic, &ca.issue("client-door"))
        .await
        .unwrap();
    let tester = NodeIdentity::load(&ca.issue("tester")).unwrap();
    let me = QuicNode::bind("127.0.0.1:0".parse().unwrap(), tester, None, Tasks::new()).unwrap();
    let (peer, id) = me.connect(quic, &me.peer_client()).await.unwrap();
    assert_eq!(id, "door");

    for (model, field, request) in bad_requests() {
        let mut events =
            client_events(&client, model, request.clone(), Duration::from_secs(30)).await;
        // Who took it may come first (a refusal by the model itself follows it).
        events.retain(|e| !matches!(e, Ok(InferenceEvent::Served { .. })));
        match events.as_slice() {
            [Err(e)] => assert_eq!(e.param.as_deref(), Some(field), "client: {e:?}"),
            other => panic!("client, {field}: expected one refusal, got {other:?}"),
        }
        let mut replies = peer_replies(&peer, &frame(model, request, 30_000)).await;
        replies.retain(|r| !matches!(r, ForwardReply::Event(InferenceEvent::Served { .. })));
        match replies.as_slice() {
            [ForwardReply::Error(e)] => assert_eq!(e.param.as_deref(), Some(field), "peer: {e:?}"),
            other => panic!("peer, {field}: expected one refusal, got {other:?}"),
        }
    }

    // A deadline of 10^12 ms (and u64::MAX) is clamped to the node's maximum, not refused
    // and not overflowed: the request runs and finishes.
    for timeout_ms in [1_000_000_000_000u64, u64::MAX] {
        let events = client_events(
            &client,
            "golek-tiny",
            generate("clamped".into(), 4),
            Duration::from_millis(timeout_ms),
        )
        .await;
        assert!(
            matches!(events.last(), Some(Ok(InferenceEvent::Finished { .. }))),
            "client, timeout {timeout_ms}: {events:?}"
        );
        let replies = peer_replies(
            &peer,
            &frame("golek-tiny", generate("clamped".into(), 4), timeout_ms),
        )
        .await;
        assert!(
            matches!(
                replies.last(),
                Some(ForwardReply::Event(InferenceEvent::Finished { .. }))
            ),
            "peer, timeout {timeout_ms}: {replies:?}"
        );
    }

    // A peer of the previous protocol version is answered.
    let old = cluster_v2::ForwardRequestV2 {
        version: cluster_v2::VERSION,
        model: "golek-tiny".into(),
        request: cluster_v2::InferenceRequest::Generate(cluster_v2::GenerateRequest {
            prompt: Prompt::Text("an older peer".into()),
            max_tokens: Some(3),
            stop: vec![],
            sampling: SamplingParams {
                temperature: 0.0,
                ignore_eos: true,
                ..Default::default()
            },
            n: 1,
            logprobs: None,
            response_format: None,
            tools: vec![],
            tool_choice: ToolChoice::Auto,
        }),
        timeout_ms: 30_000,
        traceparent: None,
        from_node: "tester".into(),
    };
    let (mut send, mut recv) = peer.open_bi().await.unwrap();
    send.write_all(&encode_frame(&old).unwrap()).await.unwrap();
    let _ = send.finish();
    let mut old_replies = Vec::new();
    while let Some(body) = read_frame(&mut recv).await.unwrap() {
        old_replies.push(decode_frame::<ForwardReply>(&body).unwrap());
    }
    let texts = old_replies
        .iter()
        .filter(|r| matches!(r, ForwardReply::Event(InferenceEvent::Text { .. })))
        .count();
    assert!(texts >= 1, "{old_replies:?}");
    assert!(
        matches!(
            old_replies.last(),
            Some(ForwardReply::Event(InferenceEvent::Finished {
                reason: FinishReason::Length,
                completion_tokens: 3,
                ..
            }))
        ),
        "{old_replies:?}"
    );

    let body = long.await.unwrap();
    assert!(
        body.contains("data: [DONE]"),
        "the other stream broke: {body}"
    );
    assert!(body.contains("\"finish_reason\":\"length\""), "{body}");
    assert!(!body.contains("\"error\""), "{body}");
}
