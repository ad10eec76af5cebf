//! One trace per request across nodes: a request through entry node `a`, served by `b`, is
//! exported by both over OTLP/HTTP (protobuf) to a receiver inside the test, which decodes it
//! with the OpenTelemetry protobuf definitions. The client's `traceparent` is honoured, `a`'s
//! peer hop is the parent of `b`'s server span, and `b`'s queue wait, prefill and decode are
//! spans of their own under it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use golek_cluster_tests::{serves, wait_until, Ca, Models, Node, NodeSpec};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;

/// A span as received: its node (service.instance.id), name, ids and kind.
#[derive(Debug, Clone)]
struct Got {
    node: String,
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver on a free loopback port; returns its traces URL and what it got.
async fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut spans = sink.lock().unwrap();
                for rs in request.resource_spans {
                    let attr = |key: &str| {
                        rs.resource
                            .as_ref()
                            .and_then(|r| r.attributes.iter().find(|a| a.key == key))
                            .and_then(|a| a.value.as_ref())
                            .and_then(|v| v.value.as_ref())
                            .map(|v| match v {
                                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default()
                    };
                    let node = attr("service.instance.id");
                    let service = attr("service.name");
                    for ss in &rs.scope_spans {
                        for s in &ss.spans {
                            spans.push(Got {
                                node: node.clone(),
                                service: service.clone(),
                                name: s.name.clone(),
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                kind: s.kind,
                            });
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn exporting(spec: NodeSpec, url: &str) -> NodeSpec {
    sampling(spec, url, 1.0)
}

fn sampling(mut spec: NodeSpec, url: &str, ratio: f64) -> NodeSpec {
    for kv in [
        format!("telemetry.otlp_endpoint={url}"),
        "telemetry.export_interval_ms=100".to_string(),
        format!("telemetry.sampling_ratio={ratio}"),
    ] {
        spec.args.push("--set".into());
        spec.args.push(kv);
    }
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_one_trace_across_both_nodes() {
    let (url, got) = receiver().await;
    let ca = Ca::new();
    let b = Node::start(exporting(
        NodeSpec::new("b", ca.issue("b"), Models::Generation),
        &url,
    ))
    .await;
    let a = Node::start(exporting(
        NodeSpec::new("a", ca.issue("a"), Models::None).seed(b.spec.quic),
        &url,
    ))
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            serves(&a.cluster().await, "b")
        })
        .await,
        "{}",
        a.cluster().await
    );

    let trace = "5af7183fb1d4cf5f8d2e61b9a0c3e7d4";
    let client_span = "b7ad6b7169203331";
    let answer = reqwest::Client::new()
        .post(a.url("/v1/completions"))
        .header("traceparent", format!("00-{trace}-{client_span}-01"))
        .json(
            &json!({"model": "golek-tiny", "prompt": "trace me", "max_tokens": 6,
                      "ignore_eos": true, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-golek-served-by"], "b/golek-tiny");
    let back = answer.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(back.starts_with(&format!("00-{trace}-")), "{back}");
    let body = answer.text().await.unwrap();
    assert!(body.contains("[DONE]"), "{body}");

    let names = |node: &str| -> Vec<String> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace && s.node == node)
            .map(|s| s.name.clone())
            .collect()
    };
    let complete = wait_until(Duration::from_secs(15), || async {
        let a_names = names("a");
        let b_names = names("b");
        a_names.iter().any(|n| n == "forward golek-tiny")
            && a_names.iter().any(|n| n.starts_with("POST "))
            && ["serve golek-tiny", "queue_wait", "prefill", "decode"]
                .iter()
                .all(|want| b_names.iter().any(|n| n == want))
    })
    .await;
    let spans: Vec<Got> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id == trace)
        .cloned()
        .collect();
    if !complete {
        let metrics = reqwest::get(a.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let trace_metrics: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains("golek_trace"))
            .collect();
        let log: Vec<String> = a
            .log()
            .lines()
            .filter(|l| l.contains("OTLP") || l.contains("trace") || l.contains("export"))
            .map(str::to_string)
            .collect();
        panic!("spans of both nodes in one trace: {spans:#?}\na's trace metrics: {trace_metrics:?}\na's log: {log:#?}");
    }

    let one = |node: &str, name: &str| -> Got {
        spans
            .iter()
            .find(|s| s.node == node && (s.name == name || s.name.starts_with(name)))
            .unwrap_or_else(|| panic!("{node}/{name} in {spans:#?}"))
            .clone()
    };
    let ingress = one("a", "POST ");
    let hop = one("a", "forward golek-tiny");
    let served = one("b", "serve golek-tiny");
    // The client's span is the parent of the entry node's server span.
    assert_eq!(ingress.parent, client_span);
    assert_eq!(ingress.kind, 2, "server");
    assert_eq!(back, format!("00-{trace}-{}-01", ingress.span_id));
    // The hop is a client span under the request; the serving node's span is its child.
    assert_eq!(hop.kind, 3, "client");
    let by_id: HashMap<&str, &Got> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut up = hop.parent.as_str();
    while up != ingress.span_id {
        up = by_id
            .get(up)
            .map(|s| s.parent.as_str())
            .unwrap_or_else(|| panic!("the hop descends from the request span: {spans:#?}"));
    }
    assert_eq!(
        served.parent, hop.span_id,
        "b's server span is a's hop's child"
    );
    assert_eq!(served.kind, 2, "server");
    for work in ["queue_wait", "prefill", "decode"] {
        let s = one("b", work);
        assert_eq!(s.parent, served.span_id, "{work} under b's server span");
    }
    assert!(spans.iter().all(|s| s.service == "golek"));
}

/// Streams a short completion with `traceparent` (if any); returns the answer's `traceparent`.
async fn complete(node: &Node, traceparent: Option<&str>) -> String {
    let mut request = reqwest::Client::new()
        .post(node.url("/v1/completions"))
        .json(
            &json!({"model": "golek-tiny", "prompt": "sample me", "max_tokens": 2,
                "ignore_eos": true, "stream": true}),
        );
    if let Some(t) = traceparent {
        request = request.header("traceparent", t);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let back = answer.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(answer.text().await.unwrap().contains("[DONE]"));
    back
}

/// The trace id of a `traceparent` header value.
fn trace_of(traceparent: &str) -> String {
    traceparent.split('-').nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_decided_where_a_request_arrives_and_follows_the_caller() {
    let (url, got) = receiver().await;
    let ca = Ca::new();
    let node = Node::start(sampling(
        NodeSpec::new("s", ca.issue("s"), Models::Generation),
        &url,
        0.0,
    ))
    .await;
    // Sampling 0: a request of its own is not traced, nor is one whose caller did not sample;
    // both still get a trace id back, marked not sampled.
    let own = complete(&node, None).await;
    assert!(own.ends_with("-00"), "{own}");
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let back = complete(&node, Some(&format!("00-{unsampled}-b7ad6b7169203331-00"))).await;
    assert!(
        back.starts_with(&format!("00-{unsampled}-")) && back.ends_with("-00"),
        "{back}"
    );
    // A caller that sampled is followed, down to the work on the model's thread.
    let sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    let back = complete(&node, Some(&format!("00-{sampled}-00f067aa0ba902b7-01"))).await;
    assert!(
        back.starts_with(&format!("00-{sampled}-")) && back.ends_with("-01"),
        "{back}"
    );
    let names = |trace: &str| -> Vec<String> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace)
            .map(|s| s.name.clone())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(15), || async {
            let n = names(sampled);
            ["POST ", "queue_wait", "prefill", "decode"]
                .iter()
                .all(|want| n.iter().any(|s| s.starts_with(want)))
        })
        .await,
        "the sampled caller's trace: {:#?}",
        got.lock().unwrap()
    );
    // What ended before it would have been exported with it or before.
    for trace in [trace_of(&own), unsampled.to_string()] {
        assert!(names(&trace).is_empty(), "{trace} was exported");
    }

    // The ratio is hot: at 1, a request of its own is traced.
    let changed = reqwest::Client::new()
        .put(node.url("/admin/config"))
        .body("[telemetry]\nsampling_ratio = 1.0\n")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "{}", changed.text().await.unwrap());
    let own = complete(&node, None).await;
    assert!(own.ends_with("-01"), "{own}");
    let trace = trace_of(&own);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            names(&trace).iter().any(|n| n == "decode")
        })
        .await,
        "{trace} exported after the ratio changed: {:#?}",
        got.lock().unwrap()
    );
}
