//! The gossip value decoders (`cluster::decode_member`): values are whatever another member
//! published under its keys. The input is read as `key=value` records separated by NUL (a key
//! `0`..`4` stands for a known key), and also as the value of each known key in turn, and as
//! a desired-state list (`golek.deployments`, `deploy::DesiredList::decode`).
#![no_main]

use std::collections::BTreeMap;

use golek_protocol::cluster::{decode_member, encode_member, MemberAdvert};
use golek_protocol::deploy::DesiredList;
use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 5] = [
    "golek.node",
    "golek.models",
    "golek.load",
    "golek.resources",
    "golek.gossip_version",
];
const NODE: &str =
    r#"{"http_addr":"127.0.0.1:8080","quic_addr":"127.0.0.1:7946","version":"0.1.0"}"#;

/// A decoded member encodes to key-values that decode to the same member.
fn round_trip(member: &MemberAdvert) {
    let kv: BTreeMap<String, String> = encode_member(member).into_iter().collect();
    let back = decode_member(|k| kv.get(k).map(String::as_str))
        .expect("an encoded member decodes")
        .expect("an encoded member has its node key");
    // Model `info` is free JSON (floats need not round-trip bit for bit): compare the rest.
    assert_eq!(back.node, member.node);
    assert_eq!(back.load, member.load);
    assert_eq!(back.resources, member.resources);
    assert_eq!(back.models.len(), member.models.len());
    for (a, b) in back.models.iter().zip(&member.models) {
        assert_eq!(
            (&a.name, &a.provider, &a.state),
            (&b.name, &b.provider, &b.state)
        );
    }
}

fn check<'a>(get: impl Fn(&str) -> Option<&'a str>) {
    if let Ok(Some(member)) = decode_member(get) {
        round_trip(&member);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut kv = BTreeMap::new();
    for record in text.split('\0') {
        let (key, value) = record.split_once('=').unwrap_or((record, ""));
        let key = match key {
            "0" | "1" | "2" | "3" | "4" => KEYS[key.parse::<usize>().unwrap()],
            other => other,
        };
        kv.insert(key, value);
    }
    check(|k| kv.get(k).copied());
    check(|_| Some(text));
    // A decoded desired-state list encodes to one that decodes to the same records.
    if let Ok(list) = DesiredList::decode(text) {
        let again = serde_json::to_string(&list).expect("a decoded list encodes");
        let back = DesiredList::decode(&again).expect("an encoded list decodes");
        assert_eq!(back.records.len(), list.records.len());
        for (a, b) in back.records.iter().zip(&list.records) {
            assert_eq!((&a.name, &a.version), (&b.name, &b.version));
        }
    }
    for key in &KEYS[1..] {
        check(|k| match k {
            _ if k == *key => Some(text),
            "golek.node" => Some(NODE),
            _ => None,
        });
    }
});
