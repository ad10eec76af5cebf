//! Unit tests of the transfer protocol's pieces.

use super::*;

#[test]
fn chunk_maps_say_what_they_hold_and_are_checked_against_the_file() {
    let mut map = ChunkMap::empty(10);
    map.set_have(0);
    map.set_have(9);
    map.set_pending(3);
    map.set_have(10); // outside: ignored
    assert!(map.has(0) && map.has(9) && !map.has(1) && !map.has(10));
    assert!(map.pending(3) && !map.pending(0));
    assert!(map.fits(10) && !map.fits(11) && !map.fits(16));
    assert!((0..10).all(|i| ChunkMap::full(10).has(i)));
    assert_eq!(chunk_len(10 * CHUNK_BYTES + 5, 10), 5);
    assert_eq!(chunk_len(CHUNK_BYTES, 3), 0);
}

/// `FileRequest` as a node of protocol version 1 has it.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum FileRequestV1 {
    Manifest {
        version: u16,
        sha256: String,
    },
    Range {
        version: u16,
        sha256: String,
        offset: u64,
        len: u64,
    },
    Have {
        version: u16,
        sha256: String,
    },
}

#[test]
fn a_version_1_node_cannot_read_the_blake3_request_and_says_malformed() {
    let sha = "ab".repeat(32);
    let new = FileRequest::ManifestBlake3 {
        version: FILE_PROTOCOL_VERSION,
        sha256: sha.clone(),
    };
    let frame = golek_protocol::cluster::encode_frame(&new).unwrap();
    // What its server answers is this error, which `manifest_of` takes as "ask for SHA-256".
    let err = decode_frame::<FileRequestV1>(&frame[4..]).unwrap_err();
    assert!(err.starts_with("malformed"), "{err}");
    // And the SHA-256 request is still the one it reads.
    let old = FileRequest::Manifest {
        version: FILE_PROTOCOL_VERSION,
        sha256: sha,
    };
    let frame = golek_protocol::cluster::encode_frame(&old).unwrap();
    assert!(matches!(
        decode_frame::<FileRequestV1>(&frame[4..]),
        Ok(FileRequestV1::Manifest { .. })
    ));
}

#[test]
fn digests_are_lowercase_hex_of_their_kind() {
    assert_eq!(
        Digest::Sha256.of(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        Digest::Blake3.of(b"abc"),
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
}

#[test]
fn chunks_are_taken_once_and_given_back() {
    let file = Arc::new(tempfile::tempfile().unwrap());
    let p = Partial::new(
        3 * CHUNK_BYTES,
        Digest::Blake3,
        vec![String::new(); 3],
        file,
    );
    assert_eq!(p.take(1, |_| true), Some(1));
    assert_eq!(p.take(1, |_| true), Some(2), "taken chunks are skipped");
    assert_eq!(p.take(1, |i| i != 0), None);
    p.give_back(2);
    assert_eq!(p.take(0, |i| i == 2), Some(2));
    p.mark_here(2);
    assert!(p.is_here(2) && !p.is_here(1));
    assert_eq!(p.missing(), 2);
}
