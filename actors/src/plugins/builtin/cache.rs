//! `response-cache`: answers a deterministic request again from memory. Deterministic means an
//! embeddings request, or a chat or completion request with `temperature` 0 or a fixed `seed`
//! that is not streamed. The key is the tenant, the path and the body (keys in any order); the
//! cache is bounded by bytes (least recently used entries go first) and by age.
//!
//! ```toml
//! [plugins.response-cache]
//! max_bytes = 67108864
//! ttl_s = 300
//! ```
//!
//! A cached answer says so: `x-golek-cache: hit`; a stored one `x-golek-cache: miss`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::super::{Answer, Hook, Plugin, RequestCall, ResponseCall, ResponseEdit, Verdict};
use crate::metrics as m;

pub const HOOKS: [Hook; 2] = [Hook::OnRequest, Hook::OnResponse];
pub const HEADER: &str = "x-golek-cache";

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "max_bytes": {"type": "integer", "minimum": 1024, "maximum": 17179869184u64},
            "max_entry_bytes": {"type": "integer", "minimum": 1, "maximum": 1073741824},
            "ttl_s": {"type": "integer", "minimum": 1, "maximum": 31536000}
        },
        "additionalProperties": false
    })
}

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    #[serde(default = "default_entry")]
    max_entry_bytes: u64,
    #[serde(default = "default_ttl")]
    ttl_s: u64,
}

fn default_max_bytes() -> u64 {
    64 << 20
}
fn default_entry() -> u64 {
    4 << 20
}
fn default_ttl() -> u64 {
    300
}

struct Entry {
    body: bytes::Bytes,
    stored: Instant,
}

struct Store {
    entries: lru::LruCache<[u8; 32], Entry>,
    bytes: u64,
}

pub struct ResponseCache {
    store: Mutex<Store>,
    max_bytes: u64,
    max_entry_bytes: u64,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResponseCache {
    pub fn new(config: &Value) -> Result<Self, String> {
        let c: Config = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
        Ok(ResponseCache {
            store: Mutex::new(Store {
                entries: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            max_bytes: c.max_bytes,
            max_entry_bytes: c.max_entry_bytes.min(c.max_bytes),
            ttl: Duration::from_secs(c.ttl_s),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the same request always gets the same answer.
fn deterministic(path: &str, body: &Value) -> bool {
    match path {
        "/v1/embeddings" => true,
        "/v1/chat/completions" | "/v1/completions" => {
            let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
            let greedy = body
                .get("temperature")
                .and_then(Value::as_f64)
                .is_some_and(|t| t == 0.0);
            let seeded = body.get("seed").is_some_and(Value::is_number);
            !streamed && (greedy || seeded)
        }
        _ => false,
    }
}

fn key(tenant: Option<&str>, path: &str, body: &Value) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(tenant.unwrap_or("").as_bytes());
    h.update(&[0]);
    h.update(path.as_bytes());
    h.update(&[0]);
    canonical(body, &mut h);
    *h.finalize().as_bytes()
}

/// Feeds `v` as JSON with every object's keys sorted (the same body, whatever the key order).
fn canonical(v: &Value, h: &mut blake3::Hasher) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                h.update(serde_json::to_string(k).unwrap_or_default().as_bytes());
                h.update(b":");
                canonical(&o[k], h);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for i in a {
                canonical(i, h);
                h.update(b",");
            }
            h.update(b"]");
        }
        // 0 and 0.0 are the same number: whole numbers are written as integers.
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                h.update(i.to_string().as_bytes());
            }
            (None, Some(u), _) => {
                h.update(u.to_string().as_bytes());
            }
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                h.update((f as i64).to_string().as_bytes());
            }
            _ => {
                h.update(n.to_string().as_bytes());
            }
        },
        other => {
            h.update(other.to_string().as_bytes());
        }
    }
}

impl Plugin for ResponseCache {
    fn on_request(&self, call: &RequestCall) -> Result<Verdict, String> {
        if !deterministic(&call.path, &call.body) {
            return Ok(Verdict::Continue);
        }
        let k = key(call.tenant.as_deref(), &call.path, &call.body);
        let mut store = self.lock();
        let fresh = match store.entries.get(&k) {
            Some(e) if e.stored.elapsed() <= self.ttl => Some(e.body.clone()),
            Some(_) => None,
            None => None,
        };
        match fresh {
            Some(body) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::PLUGIN_CACHE_TOTAL, "result" => "hit").increment(1);
                Ok(Verdict::Respond(Answer {
                    status: 200,
                    content_type: "application/json".into(),
                    body,
                    headers: vec![(HEADER.into(), "hit".into())],
                }))
            }
            None => {
                if let Some(old) = store.entries.pop(&k) {
                    store.bytes = store.bytes.saturating_sub(old.body.len() as u64);
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::PLUGIN_CACHE_TOTAL, "result" => "miss").increment(1);
                Ok(Verdict::Continue)
            }
        }
    }

    fn on_response(&self, call: &ResponseCall) -> Result<ResponseEdit, String> {
        let (Some(request), Some(body)) = (&call.request, &call.body) else {
            return Ok(ResponseEdit::default());
        };
        if call.status != 200 || call.stream || !deterministic(&call.path, request) {
            return Ok(ResponseEdit::default());
        }
        let bytes = bytes::Bytes::from(serde_json::to_vec(body).map_err(|e| e.to_string())?);
        let size = bytes.len() as u64;
        if size > self.max_entry_bytes {
            return Ok(ResponseEdit::default());
        }
        let k = key(call.tenant.as_deref(), &call.path, request);
        let mut store = self.lock();
        if let Some(old) = store.entries.put(
            k,
            Entry {
                body: bytes,
                stored: Instant::now(),
            },
        ) {
            store.bytes = store.bytes.saturating_sub(old.body.len() as u64);
        }
        store.bytes = store.bytes.saturating_add(size);
        while store.bytes > self.max_bytes {
            match store.entries.pop_lru() {
                Some((_, e)) => store.bytes = store.bytes.saturating_sub(e.body.len() as u64),
                None => break,
            }
        }
        metrics::gauge!(m::PLUGIN_CACHE_BYTES).set(store.bytes as f64);
        Ok(ResponseEdit {
            headers: [(HEADER.to_string(), "miss".to_string())].into(),
            body: None,
        })
    }

    fn stats(&self) -> Value {
        let store = self.lock();
        json!({
            "hits": self.hits.load(Ordering::Relaxed),
            "misses": self.misses.load(Ordering::Relaxed),
            "entries": store.entries.len(),
            "bytes": store.bytes,
            "max_bytes": self.max_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value, tenant: Option<&str>) -> RequestCall {
        RequestCall {
            path: "/v1/chat/completions".into(),
            model: "m".into(),
            tenant: tenant.map(str::to_string),
            body,
        }
    }

    fn answered(cache: &ResponseCache, req: &RequestCall, answer: Value) {
        let call = ResponseCall {
            path: req.path.clone(),
            model: req.model.clone(),
            tenant: req.tenant.clone(),
            status: 200,
            served_by: None,
            stream: false,
            body: Some(answer),
            request: Some(req.body.clone()),
        };
        let edit = cache.on_response(&call).unwrap();
        assert_eq!(edit.headers.get(HEADER).map(String::as_str), Some("miss"));
    }

    #[test]
    fn a_greedy_request_is_answered_again_per_tenant_and_key_order_does_not_matter() {
        let cache = ResponseCache::new(&json!({})).unwrap();
        let a = request(
            json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}),
            Some("t1"),
        );
        assert!(matches!(cache.on_request(&a).unwrap(), Verdict::Continue));
        answered(&cache, &a, json!({"answer": 1}));
        let same = request(
            json!({"messages": [{"content": "hi", "role": "user"}], "temperature": 0.0, "model": "m"}),
            Some("t1"),
        );
        match cache.on_request(&same).unwrap() {
            Verdict::Respond(hit) => {
                assert_eq!(hit.body.as_ref(), br#"{"answer":1}"#);
                assert!(hit.headers.contains(&(HEADER.into(), "hit".into())));
            }
            other => panic!("{other:?}"),
        }
        // Another tenant does not see it.
        let other = request(same.body.clone(), Some("t2"));
        assert!(matches!(
            cache.on_request(&other).unwrap(),
            Verdict::Continue
        ));
        assert_eq!(cache.stats()["hits"], 1);
    }

    #[test]
    fn sampled_or_streamed_requests_are_not_cached_and_bytes_stay_bounded() {
        let cache = ResponseCache::new(&json!({"max_bytes": 2048})).unwrap();
        for body in [
            json!({"temperature": 0.7, "messages": []}),
            json!({"temperature": 0, "stream": true, "messages": []}),
        ] {
            let r = request(body, None);
            cache.on_request(&r).unwrap();
            let call = ResponseCall {
                path: r.path.clone(),
                model: "m".into(),
                tenant: None,
                status: 200,
                served_by: None,
                stream: false,
                body: Some(json!({"x": 1})),
                request: Some(r.body.clone()),
            };
            assert!(cache.on_response(&call).unwrap().headers.is_empty());
        }
        for i in 0..40 {
            let r = request(json!({"seed": i, "messages": []}), None);
            answered(&cache, &r, json!({"pad": "x".repeat(200)}));
        }
        let stats = cache.stats();
        assert!(stats["bytes"].as_u64().unwrap() <= 2048, "{stats}");
        assert!(stats["entries"].as_u64().unwrap() < 40);
    }
}
