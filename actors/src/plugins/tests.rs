use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::chain::{Chain, Loaded, RequestOutcome};
use super::*;
use crate::reliability::BreakerConfig;

/// A native test plugin: counts its calls, fails when told, tags what it sees.
struct Probe {
    tag: &'static str,
    fail: bool,
    reject: bool,
}

impl Plugin for Probe {
    fn on_request(&self, call: &RequestCall) -> Result<Verdict, String> {
        if self.fail {
            return Err("it broke".into());
        }
        if self.reject {
            return Ok(Verdict::Reject {
                status: 403,
                message: format!("{} says no", self.tag),
            });
        }
        let mut body = call.body.clone();
        let mut seen = body
            .get("seen")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        seen.push(json!(self.tag));
        body["seen"] = json!(seen);
        Ok(Verdict::Rewrite(body))
    }
    fn on_response(&self, call: &ResponseCall) -> Result<ResponseEdit, String> {
        let mut body = call.body.clone().unwrap_or(json!({}));
        let order = body["order"].as_str().unwrap_or("").to_string() + self.tag;
        body["order"] = json!(order);
        Ok(ResponseEdit {
            headers: [(format!("x-{}", self.tag), "1".to_string())].into(),
            body: Some(body),
        })
    }
}

fn loaded(
    tag: &'static str,
    fail: bool,
    reject: bool,
    policy: FailurePolicy,
    failures: &mpsc::UnboundedSender<chain::Failure>,
) -> Arc<Loaded> {
    let manifest = Manifest {
        name: tag.into(),
        version: "1.0.0".into(),
        api: PLUGIN_API_VERSION,
        hooks: vec![Hook::OnRequest, Hook::OnResponse],
        depends: Default::default(),
        config_schema: None,
    };
    Arc::new(Loaded::new(
        tag.into(),
        manifest,
        policy,
        Arc::new(Probe { tag, fail, reject }),
        1,
        "native",
        BreakerConfig {
            failures: 2,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
        },
        failures.clone(),
    ))
}

fn call() -> RequestCall {
    RequestCall {
        path: "/v1/chat/completions".into(),
        model: "m".into(),
        tenant: None,
        body: json!({"model": "m"}),
    }
}

fn response(call: &RequestCall) -> ResponseCall {
    ResponseCall {
        path: call.path.clone(),
        model: call.model.clone(),
        tenant: None,
        status: 200,
        served_by: None,
        stream: false,
        body: Some(json!({})),
        request: Some(call.body.clone()),
    }
}

#[test]
fn request_hooks_run_in_order_and_response_hooks_in_reverse() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let chain = Chain {
        plugins: vec![
            loaded("a", false, false, FailurePolicy::Open, &tx),
            loaded("b", false, false, FailurePolicy::Open, &tx),
        ],
    };
    let mut c = call();
    let RequestOutcome::Continue {
        seen,
        rewritten: true,
    } = chain.on_request(&mut c)
    else {
        panic!()
    };
    assert_eq!(seen, 2);
    assert_eq!(c.body["seen"], json!(["a", "b"]));
    let mut r = response(&c);
    let settled = chain.on_response(seen, &mut r).unwrap();
    assert_eq!(r.body.unwrap()["order"], "ba");
    assert!(settled.rewritten);
    assert_eq!(settled.headers.len(), 2);
}

#[test]
fn a_refusal_goes_back_through_the_plugins_before_it_only() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let chain = Chain {
        plugins: vec![
            loaded("a", false, false, FailurePolicy::Open, &tx),
            loaded("guard", false, true, FailurePolicy::Open, &tx),
            loaded("c", false, false, FailurePolicy::Open, &tx),
        ],
    };
    let mut c = call();
    match chain.on_request(&mut c) {
        RequestOutcome::Refused { seen, refusal } => {
            assert_eq!(seen, 1);
            assert_eq!(refusal.status, 403);
            assert_eq!(refusal.plugin, "guard");
        }
        other => panic!("{other:?}"),
    }
    // "c" never saw it.
    assert_eq!(c.body["seen"], json!(["a"]));
}

#[test]
fn failing_open_goes_on_failing_closed_refuses_and_failures_open_the_breaker() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let open = Chain {
        plugins: vec![
            loaded("broken", true, false, FailurePolicy::Open, &tx),
            loaded("b", false, false, FailurePolicy::Open, &tx),
        ],
    };
    let mut c = call();
    assert!(matches!(
        open.on_request(&mut c),
        RequestOutcome::Continue { .. }
    ));
    assert_eq!(c.body["seen"], json!(["b"]));
    let f = rx.try_recv().unwrap();
    assert_eq!((f.plugin.as_str(), f.hook), ("broken", Hook::OnRequest));

    let closed = Chain {
        plugins: vec![loaded("strict", true, false, FailurePolicy::Closed, &tx)],
    };
    match closed.on_request(&mut call()) {
        RequestOutcome::Refused { refusal, .. } => {
            assert_eq!(refusal.status, 503);
            assert!(refusal.message.contains("it broke"), "{}", refusal.message);
        }
        other => panic!("{other:?}"),
    }
    // The second failure opens its breaker: the plugin is not called any more.
    let _ = closed.on_request(&mut call());
    let p = &closed.plugins[0];
    assert_eq!(p.breaker_state(), "open");
    let calls = p.calls.load(std::sync::atomic::Ordering::Relaxed);
    match closed.on_request(&mut call()) {
        RequestOutcome::Refused { refusal, .. } => assert!(refusal.message.contains("breaker")),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.calls.load(std::sync::atomic::Ordering::Relaxed), calls);
}

#[test]
fn lifecycle_transitions_are_checked() {
    use PluginState::*;
    let path = [Discovered, Loaded, Initialized, Started, Stopping, Stopped];
    for w in path.windows(2) {
        assert!(w[0].may_become(w[1]), "{:?} -> {:?}", w[0], w[1]);
    }
    assert!(!Discovered.may_become(Started));
    assert!(!Stopped.may_become(Started));
    assert!(!Started.may_become(Loaded));
    assert!(Started.may_become(Failed));
    assert!(Failed.may_become(Discovered));
}

#[test]
fn manifests_are_checked_by_name() {
    let good = Manifest {
        name: "ok".into(),
        version: "0.1.0".into(),
        api: PLUGIN_API_VERSION,
        hooks: vec![],
        depends: [("base".to_string(), "^1".to_string())].into(),
        config_schema: Some(json!({"type": "object"})),
    };
    good.check().unwrap();
    let api = Manifest {
        api: PLUGIN_API_VERSION + 1,
        ..good.clone()
    };
    assert!(api.check().unwrap_err().contains("plugin API version 2"));
    let version = Manifest {
        version: "one".into(),
        ..good.clone()
    };
    assert!(version.check().unwrap_err().contains("semantic version"));
    let dep = Manifest {
        depends: [("base".to_string(), "not a range".to_string())].into(),
        ..good.clone()
    };
    assert!(dep.check().unwrap_err().contains("\"base\""));
    let schema = Manifest {
        config_schema: Some(json!({"type": 12})),
        ..good
    };
    assert!(schema.check().unwrap_err().contains("JSON Schema"));
}
