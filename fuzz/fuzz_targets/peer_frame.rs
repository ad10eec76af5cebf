//! The peer frame decoder: a 4-byte length header, then a bincode body (`frame_length`,
//! `decode_frame`, `cluster_v2::decode_request`). Whatever decodes must re-encode, and decode
//! again to the same bytes.
#![no_main]

use golek_protocol::cluster::{
    decode_frame, encode_frame, frame_length, ForwardReply, ForwardRequest, JoinReply, JoinRequest,
    PEER_PROTOCOL_VERSION,
};
use golek_protocol::cluster_v2::{self, decode_request, encode_reply, ForwardRequestV2};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Re-encodes a decoded value; its frame decodes to a value that encodes to the same frame.
fn round_trip<T: Serialize + DeserializeOwned>(value: &T) {
    let frame = encode_frame(value).expect("a decoded value re-encodes");
    let n = frame_length(frame[..4].try_into().unwrap()).expect("its length is under the cap");
    assert_eq!(n, frame.len() - 4);
    let again: T = decode_frame(&frame[4..]).expect("a re-encoded frame decodes");
    assert_eq!(encode_frame(&again).unwrap(), frame, "encoding is stable");
}

fn request(body: &[u8]) {
    if let Ok((request, version)) = decode_request(body) {
        assert!(version == PEER_PROTOCOL_VERSION || version == cluster_v2::VERSION);
        round_trip(&request);
        let _ = request.request.check();
    }
}

fn any_body(body: &[u8]) {
    request(body);
    if let Ok(r) = decode_frame::<ForwardRequest>(body) {
        round_trip(&r);
    }
    if let Ok(r) = decode_frame::<ForwardReply>(body) {
        round_trip(&r);
        for version in [cluster_v2::VERSION, PEER_PROTOCOL_VERSION] {
            if let Some(frame) = encode_reply(&r, version).expect("a decoded reply re-encodes") {
                let n = frame_length(frame[..4].try_into().unwrap()).unwrap();
                assert_eq!(n, frame.len() - 4);
                decode_frame::<ForwardReply>(&frame[4..]).expect("a reply decodes");
            }
        }
    }
    if let Ok(r) = decode_frame::<ForwardRequestV2>(body) {
        round_trip(&r);
    }
    if let Ok(r) = decode_frame::<JoinRequest>(body) {
        round_trip(&r);
    }
    if let Ok(r) = decode_frame::<JoinReply>(body) {
        round_trip(&r);
    }
}

fuzz_target!(|data: &[u8]| {
    // The input as one frame body, all decoders.
    any_body(data);
    // The input as a stream of frames, read as a peer reads requests off a QUIC stream.
    let mut rest = data;
    while let Some((header, tail)) = rest.split_first_chunk::<4>() {
        let Ok(n) = frame_length(*header) else {
            break;
        };
        if n > tail.len() {
            break;
        }
        let (body, tail) = tail.split_at(n);
        request(body);
        rest = tail;
    }
});
