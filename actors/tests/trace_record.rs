//! What the recorder exports for a traced span, decoded with OpenTelemetry's own protobuf
//! definitions: its name, kind and parent, the fields given when it was made and those recorded
//! later (a field recorded twice holds its last value, once), and never its `trace_id` field.
//! Its own process: it installs the exporter flag, which is process-wide.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use golek_actors::observe::{Exporting, Pipeline};
use golek_actors::trace;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

/// An OTLP/HTTP receiver on a thread: each body it gets, decoded, into `got`.
fn receiver(got: Arc<Mutex<Vec<Span>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let got = got.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                    let mut spans = got.lock().unwrap();
                    for rs in request.resource_spans {
                        for ss in rs.scope_spans {
                            spans.extend(ss.spans);
                        }
                    }
                    drop(spans);
                    writer
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    url
}

fn attributes(span: &Span) -> Vec<(String, Value)> {
    span.attributes
        .iter()
        .map(|a| {
            let value = a.value.as_ref().and_then(|v| v.value.clone()).unwrap();
            (a.key.clone(), value)
        })
        .collect()
}

#[test]
fn a_traced_span_exports_its_fields_once_each_with_their_last_values() {
    trace::set_otel_installed();
    let got = Arc::new(Mutex::new(Vec::new()));
    let telemetry = golek_config::TelemetryConfig {
        otlp_endpoint: Some(receiver(got.clone())),
        sampling_ratio: 1.0,
        queue_spans: 64,
        batch_spans: 64,
        export_interval: Duration::from_millis(20),
    };
    let pipeline = Pipeline::new(1.0);
    let mut exporting = Exporting::start(pipeline.clone(), &telemetry, "node-t").unwrap();
    let subscriber = tracing_subscriber::registry().with(trace::recording_layer(pipeline));
    tracing::subscriber::with_default(subscriber, || {
        let request = trace::ingress(true, || {
            tracing::info_span!(
                target: "golek_actors::test",
                "http_request",
                otel.name = "POST /v1/x",
                otel.kind = "server",
                method = "POST",
                trace_id = tracing::field::Empty,
                status = tracing::field::Empty,
            )
        });
        request.record("trace_id", "0af7651916cd43dd8448eb211c80319c");
        request.in_scope(|| {
            let child = tracing::info_span!(
                target: "golek_actors::test",
                "route",
                model = "a",
                tokens = tracing::field::Empty,
            );
            child.record("model", "b");
            child.record("tokens", 3u64);
        });
        request.record("status", 503u64);
        request.record("status", 200u64);
    });
    exporting.stop(Duration::from_secs(5));

    let spans = got.lock().unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let server = spans.iter().find(|s| s.name == "POST /v1/x").unwrap();
    let route = spans.iter().find(|s| s.name == "route").unwrap();
    assert_eq!(server.kind, 2, "otel.kind = server");
    assert!(
        server.parent_span_id.is_empty(),
        "the request's span is a root"
    );
    assert_eq!(route.parent_span_id, server.span_id);
    assert_eq!(route.trace_id, server.trace_id);
    assert!(route.end_time_unix_nano >= route.start_time_unix_nano);
    assert_eq!(
        attributes(server),
        [
            ("method".to_string(), Value::StringValue("POST".into())),
            ("status".to_string(), Value::IntValue(200)),
        ],
        "trace_id and otel.* are not attributes; status holds its last value once"
    );
    assert_eq!(
        attributes(route),
        [
            ("model".to_string(), Value::StringValue("b".into())),
            ("tokens".to_string(), Value::IntValue(3)),
        ]
    );
}
