//! The peer protocol over real QUIC connections with mutual TLS: malformed frames are answered
//! or reset on their own stream, and the connection keeps serving.

use std::sync::Arc;
use std::time::Duration;

use golek_actors::cluster::frames::read_frame;
use golek_actors::cluster::peer::{server_loop, PeerLinks};
use golek_actors::cluster::tls::{self, NodeIdentity};
use golek_actors::cluster::transport::{accept_loop, QuicNode};
use golek_actors::reliability::Reliability;
use golek_actors::{Health, RouterHandle, RoutingTable, Tasks};
use golek_protocol::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use golek_protocol::inference::{EmbeddingInput, EmbeddingsRequest, InferenceRequest};
use golek_protocol::ErrorCode;
use tokio::sync::{mpsc, watch};

/// A node's QUIC side with no models: its accept loop and peer server on tracked tasks.
fn node(dir: &std::path::Path, id: &str) -> (Arc<QuicNode>, Tasks) {
    let (quic, tasks, _) = node_with_links(dir, id);
    (quic, tasks)
}

fn node_with_links(dir: &std::path::Path, id: &str) -> (Arc<QuicNode>, Tasks, Arc<PeerLinks>) {
    tls::issue(&dir.join("ca"), id, &dir.join(id)).unwrap();
    let (streams_tx, streams_rx) = mpsc::channel(16);
    let identity = NodeIdentity::load(&dir.join(id)).unwrap();
    let tasks = Tasks::new();
    let quic = QuicNode::bind(
        "127.0.0.1:0".parse().unwrap(),
        identity,
        None,
        tasks.clone(),
    )
    .unwrap();
    let (tx, table) = watch::channel(Arc::new(RoutingTable::default()));
    let defaults = golek_config::load_str(
        "[node]\ndata_dir = \"/tmp/golek-peer-frames\"\n",
        "test.toml".as_ref(),
        &Default::default(),
    )
    .unwrap()
    .config;
    let reliability = Arc::new(Reliability::new(&defaults.reliability));
    let router = RouterHandle::new(
        table,
        1,
        Duration::from_secs(30),
        Arc::new(Health::new(1)),
        reliability.clone(),
    );
    let links = Arc::new(PeerLinks::new(
        quic.clone(),
        id.to_string(),
        tasks.child(),
        reliability,
    ));
    let streams = Arc::new(tokio::sync::Mutex::new(streams_rx));
    let accept = accept_loop(quic.clone(), streams_tx);
    let serve = server_loop(streams, router, id.to_string(), links.clone());
    tasks.spawn(accept(tasks.token().clone()));
    tasks.spawn(serve(tasks.token().clone()));
    tasks.spawn_owned(async move {
        // The table stays open while the node runs.
        let _tx = tx;
        std::future::pending::<()>().await
    });
    (quic, tasks, links)
}

async fn ask(connection: &quinn::Connection, bytes: &[u8]) -> Result<Option<ForwardReply>, String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    match read_frame(&mut recv).await.map_err(|e| e.to_string())? {
        Some(body) => decode_frame(&body).map(Some),
        None => Ok(None),
    }
}

#[tokio::test]
async fn malformed_frames_fail_their_stream_and_the_connection_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    tls::init_ca(&dir.path().join("ca")).unwrap();
    let (a, _a_tasks) = node(dir.path(), "a");
    let (b, _b_tasks) = node(dir.path(), "b");
    let (connection, id) = b.connect(a.local_addr(), &b.peer_client()).await.unwrap();
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
        tenant: None,
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

/// This process's resident memory, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_announce_64_mib_and_send_ten_bytes_cost_ten_bytes() {
    let dir = tempfile::tempdir().unwrap();
    tls::init_ca(&dir.path().join("ca")).unwrap();
    let (a, _a_tasks, a_links) = node_with_links(dir.path(), "a");
    let (b, _b_tasks) = node(dir.path(), "b");
    let (connection, _) = b.connect(a.local_addr(), &b.peer_client()).await.unwrap();
    // Warm up (first connection, first stream) before measuring.
    let _ = ask(&connection, &[0, 0, 0, 1, 0]).await;
    let before = rss_bytes();
    let mut open = Vec::new();
    let announced = (golek_protocol::cluster::MAX_FRAME_BYTES as u32).to_be_bytes();
    for _ in 0..64 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(&announced).await.unwrap();
        send.write_all(&[7u8; 10]).await.unwrap();
        open.push((send, recv));
    }
    // Every stream is being served (its frame is being read) before measuring.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a_links.serving() < 64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a_links.serving(), 64, "the node serves every stream");
    let after = rss_bytes();
    // 64 streams x 64 MiB would be 4 GiB if allocated (and touched) up front; allow 64 MiB of
    // noise for everything else in the process.
    assert!(
        after < before + (64 << 20),
        "RSS grew from {before} to {after} bytes"
    );
    // The node still answers on the same connection.
    let junk = [0u8, 0, 0, 1, 0xff];
    assert!(matches!(
        ask(&connection, &junk).await,
        Ok(Some(ForwardReply::Error(_)))
    ));
    drop(open);
}
