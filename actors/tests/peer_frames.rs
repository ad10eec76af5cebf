//! The peer protocol over real QUIC connections with mutual TLS: malformed frames are answered
//! or reset on their own stream, and the connection keeps serving.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use golek_actors::cluster::peer::{read_frame, serve};
use golek_actors::cluster::tls::{self, NodeIdentity};
use golek_actors::cluster::transport::QuicNode;
use golek_actors::{RouterHandle, RoutingTable};
use golek_protocol::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use golek_protocol::inference::{EmbeddingInput, EmbeddingsRequest, InferenceRequest};
use golek_protocol::ErrorCode;
use tokio::sync::{mpsc, watch};

fn node(dir: &std::path::Path, id: &str) -> Arc<QuicNode> {
    tls::issue(&dir.join("ca"), id, &dir.join(id)).unwrap();
    let (streams_tx, streams_rx) = mpsc::channel(16);
    let identity = NodeIdentity::load(&dir.join(id)).unwrap();
    let quic = QuicNode::bind("127.0.0.1:0".parse().unwrap(), identity, streams_tx, None).unwrap();
    let (_tx, table) = watch::channel(Arc::new(RoutingTable::default()));
    let router = RouterHandle::new(table, 1);
    let id = id.to_string();
    tokio::spawn(async move {
        let _table_stays_open = _tx;
        serve(streams_rx, router, id, Arc::new(AtomicU64::new(0))).await
    });
    quic
}

async fn ask(connection: &quinn::Connection, bytes: &[u8]) -> Result<Option<ForwardReply>, String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    match read_frame(&mut recv).await? {
        Some(body) => decode_frame(&body).map(Some),
        None => Ok(None),
    }
}

#[tokio::test]
async fn malformed_frames_fail_their_stream_and_the_connection_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    tls::init_ca(&dir.path().join("ca")).unwrap();
    let a = node(dir.path(), "a");
    let b = node(dir.path(), "b");
    let (connection, id) = b.connect(a.local_addr(), &b.peer_client).await.unwrap();
    assert_eq!(id, "a");

    // Junk in a well-sized frame: an error naming the problem.
    let mut junk = 7u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0xff; 7]);
    match ask(&connection, &junk).await.unwrap() {
        Some(ForwardReply::Error(e)) => {
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(e.message.contains("malformed peer frame"), "{}", e.message);
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    // A length over the cap: the stream is reset, nothing is read or allocated.
    let huge = u32::MAX.to_be_bytes();
    assert!(ask(&connection, &huge).await.is_err());
    // Another protocol version: refused with the versions named.
    let request = |version| ForwardRequest {
        version,
        model: "nope".into(),
        request: InferenceRequest::Embeddings(EmbeddingsRequest {
            inputs: vec![EmbeddingInput::Text("hi".into())],
        }),
        timeout_ms: 1000,
        traceparent: None,
        from_node: "b".into(),
    };
    match ask(&connection, &encode_frame(&request(99)).unwrap())
        .await
        .unwrap()
    {
        Some(ForwardReply::Error(e)) => assert!(e.message.contains("version 99"), "{}", e.message),
        other => panic!("expected an error reply, got {other:?}"),
    }
    // The same connection still serves a well-formed request (here: an unknown model, 404).
    match ask(
        &connection,
        &encode_frame(&request(PEER_PROTOCOL_VERSION)).unwrap(),
    )
    .await
    .unwrap()
    {
        Some(ForwardReply::Error(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("expected not found, got {other:?}"),
    }
    // An invalid request (no inputs) is refused by the checks, not run.
    let mut empty = request(PEER_PROTOCOL_VERSION);
    empty.request = InferenceRequest::Embeddings(EmbeddingsRequest { inputs: vec![] });
    match ask(&connection, &encode_frame(&empty).unwrap())
        .await
        .unwrap()
    {
        Some(ForwardReply::Error(e)) => assert_eq!(e.param.as_deref(), Some("input")),
        other => panic!("expected a validation error, got {other:?}"),
    }
}
