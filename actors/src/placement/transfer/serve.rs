//! The sending side of `golek-model/1`: a node serves the files of its store, and the chunks
//! it already holds of a file it is fetching (so that several nodes fetching one file at once
//! take most of it from each other, not all from the seed).

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use golek_protocol::cluster::{decode_frame, encode_frame};
use golek_providers::Faults;

use super::{
    chunk_len, ChunkMap, Digest, FileReply, FileRequest, Manifest, CHUNK_BYTES,
    FILE_PROTOCOL_VERSION,
};
use crate::cluster::frames::read_frame;
use crate::placement::store::{hash_bytes, hex, ModelStore};

/// How long a chunk sent to a peer counts as being on its way there (what `Have` answers).
const SENT_FRESH: Duration = Duration::from_secs(60);

const TODO: u8 = 0;
const TAKEN: u8 = 1;
const HERE: u8 = 2;

/// A file this node is fetching: its manifest and where each chunk stands.
pub struct Partial {
    pub size: u64,
    /// How `chunks` (the manifest's digests) are made.
    pub digest: Digest,
    pub chunks: Vec<String>,
    pub file: Arc<std::fs::File>,
    state: Vec<AtomicU8>,
}

impl Partial {
    pub fn new(
        size: u64,
        digest: Digest,
        chunks: Vec<String>,
        file: Arc<std::fs::File>,
    ) -> Arc<Partial> {
        let state = chunks.iter().map(|_| AtomicU8::new(TODO)).collect();
        Arc::new(Partial {
            size,
            digest,
            chunks,
            file,
            state,
        })
    }

    /// How many chunks the file has.
    pub fn chunk_count(&self) -> usize {
        self.state.len()
    }

    pub fn is_here(&self, i: usize) -> bool {
        self.state
            .get(i)
            .is_some_and(|s| s.load(Ordering::Acquire) == HERE)
    }

    /// Takes the first chunk still to fetch, from `start` on (wrapping), that `wanted` accepts.
    pub fn take(&self, start: usize, wanted: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.state.len();
        (0..n).map(|k| (start + k) % n).find(|&i| {
            self.state[i].load(Ordering::Acquire) == TODO
                && wanted(i)
                && self.state[i]
                    .compare_exchange(TODO, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
        })
    }

    /// A taken chunk that could not be fetched goes back.
    pub fn give_back(&self, i: usize) {
        let _ = self.state[i].compare_exchange(TAKEN, TODO, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A chunk is written and verified (or was kept from an earlier try).
    pub fn mark_here(&self, i: usize) {
        self.state[i].store(HERE, Ordering::Release);
    }

    /// Chunks not yet here.
    pub fn missing(&self) -> usize {
        self.state
            .iter()
            .filter(|s| s.load(Ordering::Acquire) != HERE)
            .count()
    }

    fn map(&self) -> ChunkMap {
        let mut map = ChunkMap::empty(self.state.len());
        for (i, s) in self.state.iter().enumerate() {
            match s.load(Ordering::Acquire) {
                HERE => map.set_have(i),
                TAKEN => map.set_pending(i),
                _ => {}
            }
        }
        map
    }
}

/// Per chunk of one file, the peers it was sent to and when.
type SentChunks = HashMap<usize, Vec<(String, Instant)>>;

/// What a node serves from its store, with the manifests it computed, the files it is
/// fetching, and which chunks of its files it recently sent to whom.
pub struct FileServer {
    pub store: Arc<ModelStore>,
    manifests: Mutex<HashMap<String, Arc<Manifest>>>,
    partials: Mutex<HashMap<String, Arc<Partial>>>,
    /// Per file: per chunk, the peers it was sent to and when.
    sent: Mutex<HashMap<String, SentChunks>>,
    /// The cluster's fault switches: with `debug.fault_injection`, each chunk sent can be held
    /// back (a slow sender).
    faults: Arc<Faults>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FileServer {
    pub fn new(store: Arc<ModelStore>, faults: Arc<Faults>) -> Self {
        FileServer {
            store,
            manifests: Mutex::new(HashMap::new()),
            partials: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            faults,
        }
    }

    /// A fetch of `sha` begins here: its chunks are served as they arrive.
    pub fn begin_partial(&self, sha: &str, partial: Arc<Partial>) {
        lock(&self.partials).insert(sha.to_string(), partial);
    }

    /// The fetch of `sha` ended (the file is in the store, or the fetch failed).
    pub fn end_partial(&self, sha: &str) {
        lock(&self.partials).remove(sha);
    }

    /// The files being fetched here (advertised so that other fetchers take chunks from here).
    pub fn fetching(&self) -> Vec<String> {
        let mut shas: Vec<String> = lock(&self.partials).keys().cloned().collect();
        shas.sort();
        shas
    }

    fn partial(&self, sha: &str) -> Option<Arc<Partial>> {
        lock(&self.partials).get(sha).cloned()
    }

    fn stored(&self, sha: &str) -> Option<std::fs::File> {
        std::fs::File::open(self.store.path(sha)?).ok()
    }

    /// The manifest of `sha` with `digest` chunk digests: of the stored file (hashed once, and
    /// only for a file whose whole hash is `sha`), else the one a fetch in progress here got
    /// (when its digests are of that kind).
    fn manifest(&self, sha: &str, digest: Digest) -> Result<(u64, Vec<String>), String> {
        let pick = |m: &Manifest| {
            let chunks = match digest {
                Digest::Sha256 => m.sha256.clone(),
                Digest::Blake3 => m.blake3.clone(),
            };
            (m.size, chunks)
        };
        if let Some(m) = lock(&self.manifests).get(sha) {
            return Ok(pick(m));
        }
        let Some(file) = self.stored(sha) else {
            return match self.partial(sha) {
                Some(p) if p.digest == digest => Ok((p.size, p.chunks.clone())),
                Some(_) => Err(format!(
                    "this node is fetching it with other chunk digests than {digest:?}"
                )),
                None => Err("this node does not have it".into()),
            };
        };
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
        let (mut sha256, mut blake3) = (Vec::new(), Vec::new());
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK_BYTES as usize];
        while offset < size {
            let n = (size - offset).min(CHUNK_BYTES) as usize;
            file.read_exact_at(&mut buf[..n], offset)
                .map_err(|e| e.to_string())?;
            whole.update(&buf[..n]);
            sha256.push(hash_bytes(&buf[..n]));
            blake3.push(Digest::Blake3.of(&buf[..n]));
            offset += n as u64;
        }
        if hex(whole.finish().as_ref()) != sha {
            return Err("its copy does not match its sha256".into());
        }
        let m = Arc::new(Manifest {
            size,
            sha256,
            blake3,
        });
        lock(&self.manifests).insert(sha.to_string(), m.clone());
        Ok(pick(&m))
    }

    /// Which chunks of `sha` this node can send to `peer` now, and which are on their way to
    /// (or at) other nodes, with those nodes.
    fn have(&self, sha: &str, peer: &str) -> FileReply {
        if let Some(size) = self.store.size(sha) {
            let mut map = ChunkMap::full(size.div_ceil(CHUNK_BYTES) as usize);
            let mut holders = Vec::new();
            let mut sent = lock(&self.sent);
            if let Some(chunks) = sent.get_mut(sha) {
                for (&i, to) in chunks.iter_mut() {
                    to.retain(|(_, at)| at.elapsed() < SENT_FRESH);
                    for (node, _) in to.iter().filter(|(node, _)| node != peer) {
                        map.set_pending(i);
                        if !holders.contains(node) {
                            holders.push(node.clone());
                        }
                    }
                }
            }
            return FileReply::Have { map, holders };
        }
        match self.partial(sha) {
            Some(p) => FileReply::Have {
                map: p.map(),
                holders: Vec::new(),
            },
            None => FileReply::Refused("this node does not have it".into()),
        }
    }

    fn note_sent(&self, sha: &str, chunk: usize, peer: &str) {
        let mut sent = lock(&self.sent);
        let to = sent
            .entry(sha.to_string())
            .or_default()
            .entry(chunk)
            .or_default();
        to.retain(|(node, at)| node != peer && at.elapsed() < SENT_FRESH);
        to.push((peer.to_string(), Instant::now()));
    }
}

async fn send_frame(send: &mut quinn::SendStream, reply: &FileReply) -> Result<(), String> {
    let frame = encode_frame(reply)?;
    send.write_all(&frame).await.map_err(|e| e.to_string())
}

/// Answers a manifest request of protocol `version` (this one or the one before).
async fn send_manifest(
    server: &Arc<FileServer>,
    send: &mut quinn::SendStream,
    version: u16,
    sha: String,
    digest: Digest,
) -> Result<(), String> {
    if !(FILE_PROTOCOL_VERSION - 1..=FILE_PROTOCOL_VERSION).contains(&version) {
        let e = format!(
            "model file protocol version {version} is not served here (this node speaks {} and {FILE_PROTOCOL_VERSION})",
            FILE_PROTOCOL_VERSION - 1
        );
        return send_frame(send, &FileReply::Refused(e)).await;
    }
    let s = server.clone();
    let made = tokio::task::spawn_blocking(move || s.manifest(&sha, digest)).await;
    let reply = match (made, digest) {
        (Ok(Ok((size, chunks))), Digest::Sha256) => FileReply::Manifest {
            size,
            chunk_bytes: CHUNK_BYTES,
            chunks,
        },
        (Ok(Ok((size, chunks))), Digest::Blake3) => FileReply::ManifestBlake3 {
            size,
            chunk_bytes: CHUNK_BYTES,
            chunks,
        },
        (Ok(Err(e)), _) => FileReply::Refused(e),
        (Err(e), _) => FileReply::Refused(e.to_string()),
    };
    send_frame(send, &reply).await
}

/// Serves one connection's file requests.
pub async fn serve(server: Arc<FileServer>, connection: quinn::Connection, peer: String) {
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let server = server.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            let request = match read_frame(&mut recv).await {
                Ok(Some(body)) => decode_frame::<FileRequest>(&body),
                _ => return,
            };
            let outcome = match request {
                Ok(FileRequest::Manifest { version, sha256 }) => {
                    send_manifest(&server, &mut send, version, sha256, Digest::Sha256).await
                }
                Ok(FileRequest::ManifestBlake3 { version, sha256 }) => {
                    send_manifest(&server, &mut send, version, sha256, Digest::Blake3).await
                }
                Ok(FileRequest::Range {
                    sha256,
                    offset,
                    len,
                    ..
                }) => send_range(&server, &mut send, &sha256, offset, len, &peer).await,
                Ok(FileRequest::Have { sha256, .. }) => {
                    send_frame(&mut send, &server.have(&sha256, &peer)).await
                }
                Err(e) => send_frame(&mut send, &FileReply::Refused(e)).await,
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, "model file request ended: {e}");
            }
            let _ = send.finish();
        });
    }
}

/// The file to read a range from: the stored copy, or a fetch in progress that holds that
/// whole chunk; `Err` is the answer to send instead.
fn source_of(
    server: &FileServer,
    sha: &str,
    offset: u64,
    len: u64,
) -> Result<(Arc<std::fs::File>, Option<usize>), FileReply> {
    if let Some(file) = server.stored(sha) {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let fits = offset.checked_add(len).is_some_and(|e| e <= size) && len <= CHUNK_BYTES;
        if !fits {
            return Err(FileReply::Refused(format!(
                "range {offset}+{len} is outside the file or over one chunk"
            )));
        }
        let chunk = (offset % CHUNK_BYTES == 0).then_some((offset / CHUNK_BYTES) as usize);
        return Ok((Arc::new(file), chunk));
    }
    let Some(p) = server.partial(sha) else {
        return Err(FileReply::Refused("this node does not have it".into()));
    };
    let i = offset / CHUNK_BYTES;
    let whole = offset % CHUNK_BYTES == 0
        && i < p.chunk_count() as u64
        && chunk_len(p.size, i as usize) == len;
    if !whole {
        return Err(FileReply::Refused(format!(
            "range {offset}+{len} is not one whole chunk of the file"
        )));
    }
    if !p.is_here(i as usize) {
        return Err(FileReply::Missing);
    }
    Ok((p.file.clone(), None))
}

async fn send_range(
    server: &FileServer,
    send: &mut quinn::SendStream,
    sha: &str,
    offset: u64,
    len: u64,
    peer: &str,
) -> Result<(), String> {
    let (file, chunk) = match source_of(server, sha, offset, len) {
        Ok(found) => found,
        Err(reply) => return send_frame(send, &reply).await,
    };
    let n = len as usize;
    let bytes = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, offset).map(|_| buf)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    if let Some(i) = chunk {
        server.note_sent(sha, i, peer);
    }
    let delay = server.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    send_frame(send, &FileReply::Range { len: n as u64 }).await?;
    // Handed to QUIC as it is (no copy into the stream's buffer).
    send.write_chunk(bytes.into())
        .await
        .map_err(|e| e.to_string())?;
    metrics::counter!(crate::metrics::MODEL_BYTES_SENT_TOTAL, "peer" => peer.to_string())
        .increment(n as u64);
    Ok(())
}
