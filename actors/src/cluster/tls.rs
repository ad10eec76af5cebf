//! The cluster's identities: a CA made by `golek cluster init`, a key and certificate per node
//! made by `golek cluster issue`, and the rustls configurations for mutual TLS over QUIC.
//!
//! A node certificate carries two DNS names: `golek-node` (the name every client verifies, so
//! that a seed can be dialled by address alone) and `<node-id>.node.golek`, the identity the
//! node must also claim in gossip.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;

/// The name every node certificate holds and every client checks.
pub const SERVER_NAME: &str = "golek-node";
const ID_SUFFIX: &str = ".node.golek";

pub const ALPN_GOSSIP: &[u8] = b"golek-gossip/1";
pub const ALPN_PEER: &[u8] = b"golek-peer/1";
pub const ALPN_CLIENT: &[u8] = b"golek-client/1";
pub const ALPN_JOIN: &[u8] = b"golek-join/1";
/// Model files between nodes (placement's transfers).
pub const ALPN_MODEL: &[u8] = b"golek-model/1";

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const NODE_CERT: &str = "node.pem";
pub const NODE_KEY: &str = "node.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, e))
}

/// Writes `contents`, refusing to replace an existing file; keys are private to the owner.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| file_err(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| file_err(path, e))
}

pub(crate) fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA's parameters: the same at `init` and whenever it signs (the issuer's name and key
/// id are derived from them and its key).
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "golek cluster CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// `golek cluster init DIR`: a new cluster CA (`ca.pem`, `ca.key`).
pub fn init_ca(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let key = KeyPair::generate().map_err(|e| TlsError::Invalid(e.to_string()))?;
    let params = ca_params()?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    write_new(&dir.join(CA_KEY), &key.serialize_pem(), true)?;
    write_new(&dir.join(CA_CERT), &cert.pem(), false)
}

/// `golek cluster issue`: a key and certificate for `node_id`, signed by the CA in `ca_dir`,
/// written to `out_dir` with a copy of the CA certificate.
pub fn issue(ca_dir: &Path, node_id: &str, out_dir: &Path) -> Result<(), TlsError> {
    let issued = issue_pems(ca_dir, node_id)?;
    write_identity(out_dir, &issued)
}

/// A node's certificate, key and the CA certificate, as PEM.
pub struct IssuedPems {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

/// Signs a new key and certificate for `node_id` with the CA in `ca_dir`.
pub fn issue_pems(ca_dir: &Path, node_id: &str) -> Result<IssuedPems, TlsError> {
    golek_protocol::cluster::check_node_id(node_id).map_err(TlsError::Invalid)?;
    let ca_pem = read(&ca_dir.join(CA_CERT))?;
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join(CA_KEY))?)
        .map_err(|e| file_err(&ca_dir.join(CA_KEY), e))?;
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate().map_err(|e| TlsError::Invalid(e.to_string()))?;
    let mut params = CertificateParams::new(vec![
        SERVER_NAME.to_string(),
        format!("{node_id}{ID_SUFFIX}"),
    ])
    .map_err(|e| TlsError::Invalid(e.to_string()))?;
    params.distinguished_name.push(DnType::CommonName, node_id);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    Ok(IssuedPems {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem,
    })
}

/// Writes an identity where `NodeIdentity::load` reads it (never over existing files).
pub fn write_identity(out_dir: &Path, pems: &IssuedPems) -> Result<(), TlsError> {
    std::fs::create_dir_all(out_dir).map_err(|e| file_err(out_dir, e))?;
    write_new(&out_dir.join(NODE_KEY), &pems.key_pem, true)?;
    write_new(&out_dir.join(NODE_CERT), &pems.cert_pem, false)?;
    write_new(&out_dir.join(CA_CERT), &pems.ca_pem, false)
}

/// Reads a file of the CA folder (the join authority needs the key).
pub fn read_ca_file(ca_dir: &Path, name: &str) -> Result<String, TlsError> {
    read(&ca_dir.join(name))
}

/// The SHA-256 of the first certificate in a PEM text, hex.
pub fn pem_fingerprint(path: &Path, pem: &str) -> Result<String, TlsError> {
    let certs = pem_certs(path, pem)?;
    Ok(hex(ring::digest::digest(
        &ring::digest::SHA256,
        certs[0].as_ref(),
    )
    .as_ref()))
}

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn pem_certs(path: &Path, text: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("not PEM certificates: {e:?}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no certificate"));
    }
    Ok(certs)
}

/// A node's loaded identity: its id (read from its own certificate), chain, key and the CA.
pub struct NodeIdentity {
    pub node_id: String,
    chain: Vec<CertificateDer<'static>>,
    ca: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl NodeIdentity {
    /// Loads what `golek cluster issue` wrote into `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let cert_path = dir.join(NODE_CERT);
        let chain = pem_certs(&cert_path, &read(&cert_path)?)?;
        let key_path = dir.join(NODE_KEY);
        let key = PrivatePkcs8KeyDer::from_pem_slice(read(&key_path)?.as_bytes())
            .map_err(|e| file_err(&key_path, format!("not a PKCS#8 PEM key: {e:?}")))?;
        let ca_path = dir.join(CA_CERT);
        let mut roots = RootCertStore::empty();
        let ca = pem_certs(&ca_path, &read(&ca_path)?)?;
        for cert in ca.clone() {
            roots
                .add(cert)
                .map_err(|e| file_err(&ca_path, format!("not a usable CA certificate: {e}")))?;
        }
        let node_id = node_id_of(&chain[0])
            .ok_or_else(|| file_err(&cert_path, "is not a golek node certificate (no node id)"))?;
        Ok(NodeIdentity {
            node_id,
            chain,
            ca,
            key: key.into(),
            roots: Arc::new(roots),
        })
    }

    /// The QUIC server side: TLS 1.3; a client certificate from the cluster CA is checked when
    /// presented, and every protocol but `golek-join/1` refuses a connection without one. The
    /// chain includes the CA, so that a joining node can match it against its token.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots.clone(), ring())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Invalid(format!("client verifier: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(ring())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.chain.iter().chain(&self.ca).cloned().collect(),
                self.key.clone_key(),
            )
            .map_err(|e| TlsError::Invalid(format!("node certificate and key: {e}")))?;
        config.alpn_protocols = vec![
            ALPN_GOSSIP.to_vec(),
            ALPN_PEER.to_vec(),
            ALPN_CLIENT.to_vec(),
            ALPN_JOIN.to_vec(),
            ALPN_MODEL.to_vec(),
        ];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config)
            .map_err(|e| TlsError::Invalid(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport());
        Ok(server)
    }

    /// The QUIC client side for one ALPN: the server must hold a certificate from the CA.
    pub fn client_config(&self, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(ring())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Invalid(format!("node certificate and key: {e}")))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
            .map_err(|e| TlsError::Invalid(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport());
        Ok(client)
    }
}

/// Keep-alives well under the idle timeout, so an idle peer connection stays up and a dead
/// one is noticed.
/// The largest UDP payload a connection may grow to (path MTU discovery finds what the path
/// takes: 1452 on a plain Ethernet LAN, up to this on jumbo frames or loopback).
pub const MAX_UDP_PAYLOAD: u16 = 8952;

pub(crate) fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    // Room for model file chunks (4 MiB) in flight on several streams at once.
    t.stream_receive_window(quinn::VarInt::from_u32(8 << 20));
    t.receive_window(quinn::VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    t.keep_alive_interval(Some(std::time::Duration::from_secs(2)));
    t.max_idle_timeout(Some(
        std::time::Duration::from_secs(10)
            .try_into()
            .expect("10 s is a valid idle timeout"),
    ));
    Arc::new(t)
}

/// The node id a certificate names (`<id>.node.golek`), if any.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let id = parsed
        .valid_dns_names()
        .find_map(|name| name.strip_suffix(ID_SUFFIX).map(str::to_string));
    id
}

/// When the first certificate in the PEM file at `path` expires.
pub fn not_after(path: &Path) -> Result<std::time::SystemTime, TlsError> {
    let certs = pem_certs(path, &read(path)?)?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs[0].as_ref())
        .map_err(|e| file_err(path, format!("not an X.509 certificate: {e}")))?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).map_err(|_| file_err(path, "expires before 1970"))?;
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The node id of the other end of a verified connection.
pub fn peer_node_id(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().and_then(node_id_of)
}

/// The SHA-256 (hex) of the certificate the other end of a connection presented, as
/// [`pem_fingerprint`] gives for a file.
pub fn peer_fingerprint(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let first = certs.first()?;
    Some(hex(ring::digest::digest(
        &ring::digest::SHA256,
        first.as_ref(),
    )
    .as_ref()))
}

/// The ALPN a connection negotiated.
pub fn alpn_of(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    data.protocol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_node_certificates_that_name_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca).unwrap();
        // Never overwrites a CA.
        assert!(init_ca(&ca).unwrap_err().to_string().contains("ca.key"));
        issue(&ca, "node-a", &dir.path().join("a")).unwrap();
        let id = NodeIdentity::load(&dir.path().join("a")).unwrap();
        assert_eq!(id.node_id, "node-a");
        id.server_config().unwrap();
        id.client_config(ALPN_GOSSIP).unwrap();
        let err = issue(&ca, "Bad_Id", &dir.path().join("b")).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        let Err(err) = NodeIdentity::load(&dir.path().join("missing")) else {
            panic!("a missing folder must fail")
        };
        assert!(err.to_string().contains("node.pem"), "{err}");
    }
}
