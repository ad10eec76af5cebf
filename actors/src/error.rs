//! The actors crate's error type.

use golek_protocol::{ErrorCode, ErrorInfo};

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("registry store error: {0}")]
    Store(#[from] sled::Error),
    #[error("registry data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "registry format version {found} is not supported (this build reads version {supported})"
    )]
    FormatVersion { found: u32, supported: u32 },
    #[error("the data dir {} is in use by another golek process (its registry is locked)", .0.display())]
    Locked(std::path::PathBuf),
    #[error("actor {0} did not answer")]
    Unavailable(String),
    #[error("cannot start actor {name}: {message}")]
    Spawn { name: String, message: String },
}

pub type Result<T, E = ActorError> = std::result::Result<T, E>;

impl From<&ActorError> for ErrorInfo {
    fn from(err: &ActorError) -> Self {
        let code = match err {
            ActorError::Unavailable(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ErrorInfo::new(code, err.to_string())
    }
}

/// Why the cluster side of a node could not start, or a peer could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.tls_dir is not set")]
    NoTlsDir,
    #[error(transparent)]
    Tls(#[from] crate::cluster::tls::TlsError),
    #[error("the node id is {node_id:?} but the certificate in {} is for {cert_id:?}: use --node-id {cert_id} or issue a certificate for this id", tls_dir.display())]
    IdMismatch {
        node_id: String,
        tls_dir: std::path::PathBuf,
        cert_id: String,
    },
    #[error("cannot bind QUIC on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start gossip: {0}")]
    Gossip(String),
    #[error("{0}")]
    Join(String),
    #[error("cannot dial {addr}: {source}")]
    Dial {
        addr: std::net::SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("QUIC handshake with {addr} failed: {source}")]
    Handshake {
        addr: std::net::SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error("{addr} presented a certificate without a node id")]
    NoNodeId { addr: std::net::SocketAddr },
    #[error("the node at {addr} presented a certificate for {found:?}, not {expected:?}")]
    WrongPeer {
        addr: std::net::SocketAddr,
        found: String,
        expected: String,
    },
    #[error("node {0} advertises no usable QUIC address")]
    NoAddress(String),
}
