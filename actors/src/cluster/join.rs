//! Join tokens: a person adding one machine runs `golek cluster token CA_DIR` where the CA is,
//! and starts the new node with `--seed ADDR --join-token TOKEN`. The node obtains its key and
//! certificate from a seed that holds the CA (`cluster.ca_dir`) over `golek-join/1`.
//!
//! A token is `golek1.<id>.<expiry>.<secret>.<ca-sha256>`. The secret is an HMAC of the id and
//! expiry under the CA key, so a seed needs no token list to check it; it is never sent: the node
//! proves it holds it with an HMAC of its node id. The node checks the seed's certificate chain
//! against the CA fingerprint in the token before sending anything. A token works once: the seed
//! records used ids (flushed) in its data dir.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use golek_protocol::cluster::{decode_frame, encode_frame, JoinReply, JoinRequest};
use ring::hmac;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::close::CloseCode;
use super::frames::read_frame;
use super::tls::{self, TlsError, CA_CERT, CA_KEY};

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn secret(ca_key_pem: &str, id: &str, expires: u64) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, ca_key_pem.as_bytes());
    hmac::sign(&key, format!("golek-join|{id}|{expires}").as_bytes())
        .as_ref()
        .to_vec()
}

fn proof(secret: &[u8], node_id: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::sign(&key, node_id.as_bytes()).as_ref().to_vec()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A parsed token.
struct Token {
    id: String,
    expires: u64,
    secret: Vec<u8>,
    ca_fingerprint: String,
}

fn parse(token: &str) -> Result<Token, String> {
    let bad = || "the join token is malformed (expected golek1.ID.EXPIRY.SECRET.CA)".to_string();
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [version, id, expires, secret, ca] = parts[..] else {
        return Err(bad());
    };
    if version != "golek1" || id.len() != 16 || ca.len() != 64 {
        return Err(bad());
    }
    Ok(Token {
        id: id.to_string(),
        expires: expires.parse().map_err(|_| bad())?,
        secret: unhex(secret).ok_or_else(bad)?,
        ca_fingerprint: ca.to_string(),
    })
}

/// `golek cluster token CA_DIR`: a single-use token valid for `ttl_s` seconds.
pub fn make_token(ca_dir: &Path, ttl_s: u64) -> Result<String, TlsError> {
    let ca_key = tls::read_ca_file(ca_dir, CA_KEY)?;
    let ca_pem = tls::read_ca_file(ca_dir, CA_CERT)?;
    let fingerprint = tls::pem_fingerprint(&ca_dir.join(CA_CERT), &ca_pem)?;
    let mut id = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| TlsError::Invalid("no randomness".into()))?;
    let id = tls::hex(&id);
    let expires = now_s() + ttl_s;
    let secret = tls::hex(&secret(&ca_key, &id, expires));
    Ok(format!("golek1.{id}.{expires}.{secret}.{fingerprint}"))
}

/// What a seed that admits joins holds.
pub struct JoinAuthority {
    pub ca_dir: PathBuf,
    /// Ids of tokens already used, one a line.
    pub used_path: PathBuf,
    lock: Mutex<()>,
}

impl JoinAuthority {
    pub fn new(ca_dir: PathBuf, used_path: PathBuf) -> Result<Self, String> {
        tls::read_ca_file(&ca_dir, CA_KEY).map_err(|e| e.to_string())?;
        Ok(Self {
            ca_dir,
            used_path,
            lock: Mutex::new(()),
        })
    }

    /// Checks a request and issues the certificate, or says why not.
    fn decide(&self, request: &JoinRequest) -> Result<tls::IssuedPems, String> {
        if request.expires_unix_s < now_s() {
            return Err("the join token has expired".into());
        }
        let ca_key = tls::read_ca_file(&self.ca_dir, CA_KEY).map_err(|e| e.to_string())?;
        let secret = secret(&ca_key, &request.token_id, request.expires_unix_s);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        hmac::verify(&key, request.node_id.as_bytes(), &request.proof)
            .map_err(|_| "the join token is not valid for this cluster".to_string())?;
        let _guard = self.lock.lock().expect("join lock");
        let used = std::fs::read_to_string(&self.used_path).unwrap_or_default();
        if used.lines().any(|l| l == request.token_id) {
            return Err("the join token was already used".into());
        }
        let issued = tls::issue_pems(&self.ca_dir, &request.node_id).map_err(|e| e.to_string())?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.used_path)
            .and_then(|mut f| {
                writeln!(f, "{}", request.token_id)?;
                f.sync_all()
            })
            .map_err(|e| format!("cannot record the token: {e}"))?;
        Ok(issued)
    }
}

/// The seed's side of one join connection.
pub async fn serve(authority: &JoinAuthority, connection: quinn::Connection) {
    let remote = connection.remote_address();
    let Ok((mut send, mut recv)) = connection.accept_bi().await else {
        return;
    };
    let answer = match read_frame(&mut recv).await {
        Ok(Some(body)) => match decode_frame::<JoinRequest>(&body) {
            Ok(request) => match authority.decide(&request) {
                Ok(p) => {
                    tracing::info!(%remote, node = %request.node_id, "cluster: issued a certificate for a joining node");
                    JoinReply::Issued {
                        cert_pem: p.cert_pem,
                        key_pem: p.key_pem,
                        ca_pem: p.ca_pem,
                    }
                }
                Err(why) => {
                    tracing::warn!(%remote, node = %request.node_id, "cluster: refused a join: {why}");
                    JoinReply::Refused(why)
                }
            },
            Err(e) => JoinReply::Refused(e),
        },
        Ok(None) => return,
        Err(e) => JoinReply::Refused(e.to_string()),
    };
    if let Ok(bytes) = encode_frame(&answer) {
        let _ = send.write_all(&bytes).await;
        let _ = send.finish();
        let _ = send.stopped().await;
    }
}

/// Accepts a server whose chain contains the CA with the token's fingerprint and whose
/// certificate that CA signed.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| {
                tls::hex(ring::digest::digest(&ring::digest::SHA256, c.as_ref()).as_ref())
                    == self.fingerprint
            })
            .ok_or_else(|| {
                rustls::Error::General("the seed's CA does not match the join token".into())
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a join did not give this node a certificate.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Token(String),
    /// The seed could not be reached or the exchange broke off: another seed may answer.
    #[error("{0}")]
    Unreachable(String),
    #[error("{seed} refused the join: {why}")]
    Refused { seed: SocketAddr, why: String },
    #[error("{0}")]
    Malformed(String),
    #[error("cannot write the certificate: {0}")]
    Write(String),
}

/// The joining node's side: asks `seed` for a certificate for `node_id` and writes it to
/// `out_dir`.
pub async fn join(
    seed: SocketAddr,
    token: &str,
    node_id: &str,
    out_dir: &Path,
) -> Result<(), JoinError> {
    let token = parse(token).map_err(JoinError::Token)?;
    let reply = exchange(seed, &token, node_id)
        .await
        .map_err(JoinError::Unreachable)?;
    let reply: JoinReply = decode_frame(&reply).map_err(JoinError::Malformed)?;
    match reply {
        JoinReply::Issued {
            cert_pem,
            key_pem,
            ca_pem,
        } => tls::write_identity(
            out_dir,
            &tls::IssuedPems {
                cert_pem,
                key_pem,
                ca_pem,
            },
        )
        .map_err(|e| JoinError::Write(e.to_string())),
        JoinReply::Refused(why) => Err(JoinError::Refused { seed, why }),
    }
}

/// Sends the join request to `seed` and reads the answer's frame.
async fn exchange(seed: SocketAddr, token: &Token, node_id: &str) -> Result<Vec<u8>, String> {
    let provider = tls::ring();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            fingerprint: token.ca_fingerprint.clone(),
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![tls::ALPN_JOIN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(|e| e.to_string())?;
    let bind: SocketAddr = if seed.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| e.to_string())?;
    let connection = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            seed,
            tls::SERVER_NAME,
        )
        .map_err(|e| format!("cannot dial {seed}: {e}"))?
        .await
        .map_err(|e| format!("join handshake with {seed} failed: {e}"))?;
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    let request = JoinRequest {
        token_id: token.id.clone(),
        expires_unix_s: token.expires,
        node_id: node_id.to_string(),
        proof: proof(&token.secret, node_id),
    };
    let body = super::frames::exchange(&mut send, &mut recv, &request)
        .await?
        .ok_or_else(|| format!("{seed} closed the join without answering"))?;
    connection.close(CloseCode::Done.into(), b"joined");
    Ok(body)
}
