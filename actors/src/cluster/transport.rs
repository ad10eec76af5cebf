//! The node's one QUIC endpoint, and chitchat's transport over it.
//!
//! Gossip rides `golek-gossip/1` connections, one uni stream per message. `send` never waits:
//! each peer address has a bounded queue drained by its own task (which connects when it
//! must), and a full queue drops the message, as UDP would. Every connection is mutual TLS
//! against the cluster CA; the node id each certificate names is recorded by address, so the
//! cluster view can refuse a member that gossips under another node's id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tokio::sync::mpsc;

use super::close::CloseCode;
use super::tls::{self, NodeIdentity};
use crate::error::ClusterError;
use crate::loops::{loop_fn, LoopFn};
use crate::metrics as m;
use crate::tasks::Tasks;

/// The largest gossip message read from a stream.
const MAX_GOSSIP_BYTES: usize = 4 << 20;
/// Gossip messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 64;

/// What the endpoint hands to the rest of the node.
pub struct QuicNode {
    pub endpoint: quinn::Endpoint,
    pub identity: Arc<NodeIdentity>,
    /// The client sides of the current certificate (replaced when it is reloaded).
    clients: std::sync::RwLock<Clients>,
    /// What this node serves of its model store (set once the store is open).
    pub files: std::sync::OnceLock<Arc<crate::placement::FileServer>>,
    gossip_rx: Mutex<Option<mpsc::Receiver<(SocketAddr, ChitchatMessage)>>>,
    gossip_tx: mpsc::Sender<(SocketAddr, ChitchatMessage)>,
    /// The node id each address's certificate named (incoming and outgoing connections).
    pub verified: Mutex<HashMap<SocketAddr, String>>,
    /// Set on nodes that hold the CA key and admit joining nodes with tokens.
    join: Option<super::join::JoinAuthority>,
    /// Where its connection and gossip tasks run (the ClusterManager's set).
    tasks: Tasks,
}

/// The client configurations of one identity, one per protocol this node dials.
#[derive(Clone)]
struct Clients {
    gossip: quinn::ClientConfig,
    peer: quinn::ClientConfig,
    /// Model file transfers (`golek-model/1`).
    model: quinn::ClientConfig,
}

impl Clients {
    fn of(identity: &NodeIdentity) -> Result<Self, ClusterError> {
        let config = |alpn| identity.client_config(alpn).map_err(ClusterError::Tls);
        Ok(Clients {
            gossip: config(tls::ALPN_GOSSIP)?,
            peer: config(tls::ALPN_PEER)?,
            model: config(tls::ALPN_MODEL)?,
        })
    }
}

/// Streams the accept loop hands over for the peer and client protocols.
pub struct IncomingStream {
    pub alpn: &'static [u8],
    pub peer_id: String,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// The socket buffers the cluster's UDP socket asks for: a model file arrives at hundreds of
/// MB/s, and with the kernel's default (about 200 KiB) a burst overflows the receive buffer,
/// the packets are lost and QUIC's congestion control slows the whole transfer down.
const UDP_BUFFER_BYTES: usize = 8 << 20;

/// Asks for [`UDP_BUFFER_BYTES`] each way; the kernel caps it at `net.core.rmem_max` and
/// `net.core.wmem_max` (which `golek doctor` may be asked to check), and says what it gave.
fn grow_buffers(socket: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = s.set_send_buffer_size(UDP_BUFFER_BYTES);
    let (recv, send) = (s.recv_buffer_size().ok(), s.send_buffer_size().ok());
    if recv.is_some_and(|r| r < UDP_BUFFER_BYTES) {
        tracing::info!(
            wanted = UDP_BUFFER_BYTES,
            ?recv,
            ?send,
            "the UDP receive buffer is smaller than asked (raise net.core.rmem_max for faster model transfers)"
        );
    }
}

impl QuicNode {
    /// Binds the endpoint; [`accept_loop`] serves it.
    pub fn bind(
        addr: SocketAddr,
        identity: NodeIdentity,
        join: Option<super::join::JoinAuthority>,
        tasks: Tasks,
    ) -> Result<Arc<Self>, ClusterError> {
        let server = identity.server_config().map_err(ClusterError::Tls)?;
        let clients = Clients::of(&identity)?;
        let mut config = quinn::EndpointConfig::default();
        config
            .max_udp_payload_size(tls::MAX_UDP_PAYLOAD)
            .expect("the payload cap is within QUIC's bounds");
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|source| ClusterError::Bind { addr, source })?;
        grow_buffers(&socket);
        let runtime = quinn::default_runtime().ok_or_else(|| ClusterError::Bind {
            addr,
            source: std::io::Error::other("no async runtime found"),
        })?;
        let endpoint = quinn::Endpoint::new(config, Some(server), socket, runtime)
            .map_err(|source| ClusterError::Bind { addr, source })?;
        let (gossip_tx, gossip_rx) = mpsc::channel(1024);
        let node = Arc::new(QuicNode {
            endpoint,
            identity: Arc::new(identity),
            clients: std::sync::RwLock::new(clients),
            files: std::sync::OnceLock::new(),
            gossip_rx: Mutex::new(Some(gossip_rx)),
            gossip_tx,
            verified: Mutex::new(HashMap::new()),
            join,
            tasks,
        });
        Ok(node)
    }

    fn clients(&self) -> Clients {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What dials peers (`golek-peer/1`) with the current certificate.
    pub fn peer_client(&self) -> quinn::ClientConfig {
        self.clients().peer
    }

    /// What fetches model files from peers (`golek-model/1`).
    pub fn model_client(&self) -> quinn::ClientConfig {
        self.clients().model
    }

    /// Loads the certificate, key and CA in `dir` again: new connections, incoming and
    /// outgoing, use them; open ones keep theirs. The certificate must name the same node.
    /// On an error the current identity stays. Answers when the new certificate expires.
    pub fn reload_identity(&self, dir: &std::path::Path) -> Result<std::time::SystemTime, String> {
        let identity = NodeIdentity::load(dir).map_err(|e| e.to_string())?;
        if identity.node_id != self.identity.node_id {
            return Err(format!(
                "the new certificate names node {:?}, not this node ({:?})",
                identity.node_id, self.identity.node_id
            ));
        }
        let expires = tls::not_after(&dir.join(tls::NODE_CERT)).map_err(|e| e.to_string())?;
        let server = identity.server_config().map_err(|e| e.to_string())?;
        let clients = Clients::of(&identity).map_err(|e| e.to_string())?;
        self.endpoint.set_server_config(Some(server));
        *self.clients.write().unwrap_or_else(|p| p.into_inner()) = clients;
        Ok(expires)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    fn record(&self, addr: SocketAddr, id: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, id.to_string());
    }

    /// Dials `addr` for `alpn`'s protocol; the peer's certificate must come from the CA.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        config: &quinn::ClientConfig,
    ) -> Result<(quinn::Connection, String), ClusterError> {
        // On a task of its own, outside any request's span: quinn's connection task takes the
        // current span as its parent, and a cached connection would hold the request's trace
        // open for the connection's lifetime.
        let endpoint = self.endpoint.clone();
        let config = config.clone();
        let dialing = tokio::spawn(async move {
            let connecting = endpoint
                .connect_with(config, addr, tls::SERVER_NAME)
                .map_err(|source| ClusterError::Dial { addr, source })?;
            connecting
                .await
                .map_err(|source| ClusterError::Handshake { addr, source })
        });
        // A peer that does not answer the handshake soon is as good as down: the request moves
        // on to another replica instead of waiting out the idle timeout.
        let abort = dialing.abort_handle();
        let connection = match tokio::time::timeout(DIAL_TIMEOUT, dialing).await {
            Ok(joined) => {
                joined.map_err(|e| ClusterError::Join(format!("dialing {addr} stopped: {e}")))??
            }
            Err(_) => {
                abort.abort();
                return Err(ClusterError::Join(format!(
                    "no QUIC handshake with {addr} within {} ms",
                    DIAL_TIMEOUT.as_millis()
                )));
            }
        };
        let id = tls::peer_node_id(&connection).ok_or(ClusterError::NoNodeId { addr })?;
        self.record(addr, &id);
        Ok((connection, id))
    }
}

/// How long a dial may take before the peer counts as unreachable.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The accept loop as a supervised loop: streams of the peer and client protocols go to
/// `streams`; each connection is served by a tracked task.
pub fn accept_loop(node: Arc<QuicNode>, streams: mpsc::Sender<IncomingStream>) -> LoopFn {
    loop_fn(move |_token| accept(node.clone(), streams.clone()))
}

async fn accept(node: Arc<QuicNode>, streams: mpsc::Sender<IncomingStream>) {
    while let Some(incoming) = node.endpoint.accept().await {
        let node = node.clone();
        let streams = streams.clone();
        let tasks = node.tasks.clone();
        tasks.spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%remote, "refused a QUIC connection: {e}");
                    metrics::counter!(m::CLUSTER_REFUSED_TOTAL, "reason" => "tls").increment(1);
                    return;
                }
            };
            let alpn = tls::alpn_of(&connection);
            if alpn.as_deref() == Some(tls::ALPN_JOIN) {
                match &node.join {
                    Some(authority) => super::join::serve(authority, connection).await,
                    None => connection.close(CloseCode::Refused.into(), b"this node does not admit joins"),
                }
                return;
            }
            let Some(peer_id) = tls::peer_node_id(&connection) else {
                tracing::warn!(%remote, "refused a QUIC connection: no certificate from the cluster CA");
                metrics::counter!(m::CLUSTER_REFUSED_TOTAL, "reason" => "no_certificate")
                    .increment(1);
                connection.close(
                    CloseCode::Refused.into(),
                    b"a certificate from the cluster CA is required",
                );
                return;
            };
            match alpn.as_deref() {
                Some(tls::ALPN_GOSSIP) => {
                    node.record(remote, &peer_id);
                    serve_gossip(&node, connection).await
                }
                Some(tls::ALPN_PEER) => {
                    serve_streams(connection, peer_id, tls::ALPN_PEER, streams).await
                }
                Some(tls::ALPN_CLIENT) => {
                    serve_streams(connection, peer_id, tls::ALPN_CLIENT, streams).await
                }
                Some(tls::ALPN_MODEL) => match node.files.get() {
                    Some(files) => {
                        crate::placement::transfer::serve(files.clone(), connection, peer_id).await
                    }
                    None => connection.close(CloseCode::Refused.into(), b"no model store"),
                },
                _ => connection.close(CloseCode::Refused.into(), b"unknown protocol"),
            }
        });
    }
}

async fn serve_gossip(node: &QuicNode, connection: quinn::Connection) {
    let remote = connection.remote_address();
    while let Ok(mut recv) = connection.accept_uni().await {
        let bytes = match recv.read_to_end(MAX_GOSSIP_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(%remote, "gossip stream failed: {e}");
                continue;
            }
        };
        metrics::counter!(m::GOSSIP_BYTES_TOTAL, "direction" => "received")
            .increment(bytes.len() as u64);
        metrics::counter!(m::GOSSIP_MESSAGES_TOTAL, "direction" => "received").increment(1);
        match ChitchatMessage::deserialize(&mut &bytes[..]) {
            Ok(message) => {
                if node.gossip_tx.try_send((remote, message)).is_err() {
                    tracing::debug!(%remote, "gossip inbox full; message dropped");
                }
            }
            Err(e) => tracing::warn!(%remote, "malformed gossip message: {e}"),
        }
    }
}

async fn serve_streams(
    connection: quinn::Connection,
    peer_id: String,
    alpn: &'static [u8],
    streams: mpsc::Sender<IncomingStream>,
) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let stream = IncomingStream {
            alpn,
            peer_id: peer_id.clone(),
            send,
            recv,
        };
        if streams.send(stream).await.is_err() {
            return;
        }
    }
}

/// chitchat's transport over the node's endpoint.
pub struct GossipTransport(pub Arc<QuicNode>);

#[async_trait::async_trait]
impl Transport for GossipTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let rx = self
            .0
            .gossip_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip socket is already open"))?;
        Ok(Box::new(GossipSocket {
            node: self.0.clone(),
            rx,
            peers: HashMap::new(),
        }))
    }
}

struct GossipSocket {
    node: Arc<QuicNode>,
    rx: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
    peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

#[async_trait::async_trait]
impl Socket for GossipSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let bytes = msg.serialize_to_vec();
        let queue = self.peers.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            self.node.tasks.spawn(drain_peer(self.node.clone(), to, rx));
            tx
        });
        if queue.try_send(bytes).is_err() {
            metrics::counter!(m::GOSSIP_DROPPED_TOTAL).increment(1);
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the QUIC endpoint closed"))
    }
}

/// Sends one peer's queued gossip, one uni stream a message, (re)connecting when needed. A
/// message that cannot be sent is dropped: gossip repairs itself on the next round.
async fn drain_peer(node: Arc<QuicNode>, to: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut connection: Option<quinn::Connection> = None;
    let mut last_error = String::new();
    while let Some(bytes) = rx.recv().await {
        if connection
            .as_ref()
            .is_some_and(|c| c.close_reason().is_some())
        {
            connection = None;
        }
        if connection.is_none() {
            match node.connect(to, &node.clients().gossip).await {
                Ok((c, _)) => {
                    last_error.clear();
                    connection = Some(c)
                }
                Err(e) => {
                    let e = e.to_string();
                    if e != last_error {
                        tracing::warn!(peer = %to, "gossip: {e}");
                        last_error = e;
                    }
                    // Skip what queued up while connecting: it is stale.
                    while rx.try_recv().is_ok() {}
                    continue;
                }
            }
        }
        let Some(c) = connection.as_ref() else {
            continue;
        };
        let sent = async {
            let mut stream = c.open_uni().await.map_err(|e| e.to_string())?;
            stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
            stream.finish().map_err(|e| e.to_string())
        }
        .await;
        match sent {
            Ok(()) => {
                metrics::counter!(m::GOSSIP_BYTES_TOTAL, "direction" => "sent")
                    .increment(bytes.len() as u64);
                metrics::counter!(m::GOSSIP_MESSAGES_TOTAL, "direction" => "sent").increment(1);
            }
            Err(e) => {
                tracing::debug!(peer = %to, "gossip send failed: {e}");
                connection = None;
            }
        }
    }
}
