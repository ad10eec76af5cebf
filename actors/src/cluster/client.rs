//! The QUIC client API: the same requests as HTTP, streamed over `golek-client/1`.
//!
//! The client holds a certificate from the cluster CA (`golek cluster issue`), checks the node
//! against that CA, and sends one [`ForwardRequest`] per bidi stream; the node routes it like an
//! HTTP request (to itself or a peer) and streams the events back.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use golek_protocol::cluster::{
    decode_frame, encode_frame, ForwardReply, ForwardRequest, PEER_PROTOCOL_VERSION,
};
use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::ErrorInfo;

use super::close::CloseCode;
use super::frames::read_frame;
use super::tls::{self, NodeIdentity};

/// A connection to one node.
pub struct QuicClient {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    client_id: String,
    /// The node id the server's certificate names.
    pub server_id: String,
}

/// The events of one request, as they arrive.
pub struct EventStream {
    recv: quinn::RecvStream,
    _send: quinn::SendStream,
    done: bool,
}

impl EventStream {
    /// The next event; `None` at the end. An error event ends the stream.
    pub async fn next(&mut self) -> Option<Result<InferenceEvent, ErrorInfo>> {
        if self.done {
            return None;
        }
        let frame = match read_frame(&mut self.recv).await {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => {
                self.done = true;
                return Some(Err(ErrorInfo::new(
                    golek_protocol::ErrorCode::Unavailable,
                    format!("the node's answer broke off: {e}"),
                )));
            }
        };
        match decode_frame::<ForwardReply>(&frame) {
            Ok(ForwardReply::Event(e)) => Some(Ok(e)),
            Ok(ForwardReply::Error(e)) => {
                self.done = true;
                Some(Err(e))
            }
            Err(e) => {
                self.done = true;
                Some(Err(ErrorInfo::new(golek_protocol::ErrorCode::Internal, e)))
            }
        }
    }
}

impl QuicClient {
    /// Connects to the node at `addr` with the identity in `tls_dir`.
    pub async fn connect(addr: SocketAddr, tls_dir: &Path) -> Result<Self, String> {
        let identity = NodeIdentity::load(tls_dir).map_err(|e| e.to_string())?;
        let config = identity
            .client_config(tls::ALPN_CLIENT)
            .map_err(|e| e.to_string())?;
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        let connection = endpoint
            .connect_with(config, addr, tls::SERVER_NAME)
            .map_err(|e| format!("cannot dial {addr}: {e}"))?
            .await
            .map_err(|e| format!("QUIC handshake with {addr} failed: {e}"))?;
        let server_id = tls::peer_node_id(&connection)
            .ok_or_else(|| format!("{addr} presented a certificate without a node id"))?;
        Ok(QuicClient {
            endpoint,
            connection,
            client_id: identity.node_id,
            server_id,
        })
    }

    /// Sends `request` for `model`; the answer streams back.
    pub async fn infer(
        &self,
        model: &str,
        request: InferenceRequest,
        timeout: Duration,
    ) -> Result<EventStream, String> {
        let (mut send, recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| format!("cannot open a stream: {e}"))?;
        let frame = encode_frame(&ForwardRequest {
            version: PEER_PROTOCOL_VERSION,
            model: model.to_string(),
            request,
            timeout_ms: timeout.as_millis() as u64,
            // The caller's trace, when it runs in one.
            traceparent: crate::trace::current_traceparent(),
            from_node: self.client_id.clone(),
            tenant: None,
        })?;
        send.write_all(&frame)
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let _ = send.finish();
        Ok(EventStream {
            recv,
            _send: send,
            done: false,
        })
    }

    pub async fn close(self) {
        self.connection.close(CloseCode::Done.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}
