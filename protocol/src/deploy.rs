//! Deployments made at run time: what an operator asks for ([`DeploymentSpec`]), the versioned
//! record every node keeps and gossips ([`DesiredRecord`]), and how two records of one name are
//! ordered (last writer wins by a hybrid logical clock, the writing node's id breaking ties).
//!
//! Pure data and pure functions: the placement actor stores, merges and gossips these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many replicas a deployment wants: a number, or one on every eligible node (`"all"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    Count(u32),
    All,
}

/// The most replicas one deployment may ask for by number.
pub const MAX_REPLICAS: u32 = 1024;

impl Serialize for Replicas {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Replicas::Count(n) => s.serialize_u32(*n),
            Replicas::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if (1..=i64::from(MAX_REPLICAS)).contains(&n) => {
                Ok(Replicas::Count(n as u32))
            }
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "must be from 1 to {MAX_REPLICAS} or \"all\", got {n}"
            ))),
            Raw::Text(t) if t == "all" => Ok(Replicas::All),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "must be a number from 1 to {MAX_REPLICAS} or \"all\", got {t:?}"
            ))),
        }
    }
}

fn one() -> Replicas {
    Replicas::Count(1)
}

/// A deployment as an operator asks for it (`POST /admin/deployments`, `golek model deploy`).
/// `provider`, `params` and the queue settings are those of a `[models.NAME]` table and are
/// validated the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default = "one")]
    pub replicas: Replicas,
    /// Only nodes whose `[node] labels` have every one of these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<i64>,
}

impl DeploymentSpec {
    /// Checks what the config validation does not: the replicas, labels and file hash.
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Some(sha) = &self.model_sha256 {
            if !is_sha256(sha) {
                return Err((
                    "model_sha256".into(),
                    format!("must be 64 lowercase hex digits, got {sha:?}"),
                ));
            }
        }
        if let Some(url) = &self.model_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "model_url".into(),
                    format!("must be an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > 63 || v.len() > 63 {
                return Err((
                    format!("labels.{k}"),
                    "label names are 1 to 63 characters, values at most 63".into(),
                ));
            }
        }
        Ok(())
    }
}

pub fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A hybrid logical clock reading: wall-clock milliseconds, and a counter for events within
/// one millisecond (or while the wall clock lags a time already seen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hlc {
    pub ms: u64,
    pub counter: u32,
}

impl Hlc {
    /// The next reading after `self` at wall time `now_ms`: later than `self` and than every
    /// time seen, close to the wall clock.
    pub fn tick(self, now_ms: u64) -> Hlc {
        if now_ms > self.ms {
            Hlc {
                ms: now_ms,
                counter: 0,
            }
        } else {
            match self.counter.checked_add(1) {
                Some(counter) => Hlc {
                    ms: self.ms,
                    counter,
                },
                None => Hlc {
                    ms: self.ms.saturating_add(1),
                    counter: 0,
                },
            }
        }
    }

    /// This clock after seeing `remote` (a record from a peer): never behind it.
    pub fn observe(self, remote: Hlc) -> Hlc {
        self.max(remote)
    }
}

/// The version of a record: when it was written and by which node (ties broken by the id).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub hlc: Hlc,
    pub node: String,
}

/// One deployment as every node keeps it: the spec, or a tombstone (`spec: None`) once it is
/// undeployed, kept for a while so that a node that was away learns of the undeploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredRecord {
    pub name: String,
    pub version: Version,
    #[serde(default)]
    pub spec: Option<DeploymentSpec>,
    /// The model file's size where the deployment was made (0: unknown, or no file): what
    /// placement fits, the same on every node.
    #[serde(default)]
    pub model_bytes: u64,
}

impl DesiredRecord {
    /// Whether `other` replaces `self` (a later version of the same name).
    pub fn superseded_by(&self, other: &DesiredRecord) -> bool {
        other.version > self.version
    }
}

/// The version of the desired-state list a node gossips (`golek.deployments`).
pub const DESIRED_VERSION: u16 = 1;

/// The gossiped desired state: every record a node knows, tombstones included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredList {
    pub version: u16,
    pub records: Vec<DesiredRecord>,
}

impl DesiredList {
    pub fn decode(raw: &str) -> Result<DesiredList, String> {
        let list: DesiredList = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        if list.version != DESIRED_VERSION {
            return Err(format!(
                "desired-state version {} is not supported (this node reads {DESIRED_VERSION})",
                list.version
            ));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_read_numbers_and_all_and_name_bad_values() {
        let r: Replicas = serde_json::from_str("2").unwrap();
        assert_eq!(r, Replicas::Count(2));
        let r: Replicas = serde_json::from_str("\"all\"").unwrap();
        assert_eq!(r, Replicas::All);
        for bad in ["0", "-1", "\"some\"", "100000"] {
            let e = serde_json::from_str::<Replicas>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("must be"), "{bad}: {e}");
        }
        assert_eq!(serde_json::to_string(&Replicas::All).unwrap(), "\"all\"");
    }

    #[test]
    fn the_clock_moves_forward_past_what_it_saw() {
        let t = Hlc::default().tick(100);
        assert_eq!(
            t,
            Hlc {
                ms: 100,
                counter: 0
            }
        );
        // The wall clock stands still or goes back: the counter moves.
        assert_eq!(
            t.tick(100),
            Hlc {
                ms: 100,
                counter: 1
            }
        );
        assert_eq!(
            t.tick(50),
            Hlc {
                ms: 100,
                counter: 1
            }
        );
        let seen = t.observe(Hlc {
            ms: 500,
            counter: 7,
        });
        assert_eq!(
            seen.tick(200),
            Hlc {
                ms: 500,
                counter: 8
            }
        );
        let full = Hlc {
            ms: 9,
            counter: u32::MAX,
        };
        assert_eq!(full.tick(0), Hlc { ms: 10, counter: 0 });
    }

    #[test]
    fn the_later_version_wins_and_the_node_id_breaks_ties() {
        let rec = |ms, node: &str| DesiredRecord {
            name: "m".into(),
            version: Version {
                hlc: Hlc { ms, counter: 0 },
                node: node.into(),
            },
            spec: None,
            model_bytes: 0,
        };
        assert!(rec(1, "a").superseded_by(&rec(2, "a")));
        assert!(!rec(2, "a").superseded_by(&rec(1, "z")));
        assert!(rec(1, "a").superseded_by(&rec(1, "b")));
        assert!(!rec(1, "b").superseded_by(&rec(1, "a")));
    }
}
