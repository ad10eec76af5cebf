//! Recorded spans as an OTLP `ExportTraceServiceRequest` (protobuf), built with the message
//! types of `opentelemetry-proto` and encoded by `prost`. The records are moved into the
//! messages (nothing is copied but the ids), and the resource and scope are built once.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::trace::{SpanRecord, Value};

/// W3C trace flags: the trace is sampled (every exported span is).
const SAMPLED: u32 = 0x01;

/// Encodes batches of one node's spans.
pub struct Encoder {
    resource: Resource,
    scope: InstrumentationScope,
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn attribute((key, value): (&'static str, Value)) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Float(f) => any_value::Value::DoubleValue(f),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn span(record: SpanRecord) -> Span {
    let parent = if record.parent_span_id == [0; 8] {
        Vec::new()
    } else {
        record.parent_span_id.to_vec()
    };
    let status = record.error.map(|message| Status {
        message,
        code: status::StatusCode::Error as i32,
    });
    Span {
        trace_id: record.trace_id.to_vec(),
        span_id: record.span_id.to_vec(),
        trace_state: record.trace_state,
        parent_span_id: parent,
        flags: SAMPLED,
        name: record.name.into_owned(),
        kind: record.kind as i32,
        start_time_unix_nano: record.start_unix_nano,
        end_time_unix_nano: record.end_unix_nano,
        attributes: record.attributes.into_iter().map(attribute).collect(),
        events: record
            .events
            .into_iter()
            .map(|e| span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name,
                attributes: e.attributes.into_iter().map(attribute).collect(),
                ..Default::default()
            })
            .collect(),
        dropped_events_count: record.dropped_events,
        status,
        ..Default::default()
    }
}

impl Encoder {
    /// The resource says `service.name = "golek"`, `service.instance.id` = `node_id` and the
    /// version.
    pub fn new(node_id: &str) -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Encoder {
            resource: Resource {
                attributes: vec![
                    string("service.name", "golek"),
                    string("service.instance.id", node_id),
                    string("service.version", version),
                ],
                ..Default::default()
            },
            scope: InstrumentationScope {
                name: "golek".into(),
                version: version.into(),
                ..Default::default()
            },
        }
    }

    /// The protobuf body of one export request.
    pub fn encode(&self, batch: Vec<SpanRecord>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans: batch.into_iter().map(span).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn a_record_decodes_as_the_span_it_was() {
        let record = SpanRecord {
            trace_id: [7; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: [0; 8],
            trace_state: "vendor=x".into(),
            name: Cow::Borrowed("route"),
            kind: crate::trace::SpanKind::Server,
            start_unix_nano: 10,
            end_unix_nano: 25,
            attributes: vec![("model", Value::Str("m".into())), ("n", Value::Int(-3))],
            events: vec![crate::trace::SpanEvent {
                time_unix_nano: 20,
                name: "failed".into(),
                attributes: vec![("retry", Value::Bool(true))],
            }],
            dropped_events: 2,
            error: Some("upstream down".into()),
        };
        let body = Encoder::new("node-a").encode(vec![record]);
        let got = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rs = &got.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        let keys: Vec<&str> = resource.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["service.name", "service.instance.id", "service.version"]
        );
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(s.parent_span_id.is_empty(), "a root has no parent id");
        assert_eq!((s.name.as_str(), s.kind), ("route", 2));
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (10, 25));
        assert_eq!(s.trace_state, "vendor=x");
        assert_eq!(s.attributes[1].key, "n");
        assert_eq!(
            s.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(-3))
        );
        assert_eq!(s.events[0].name, "failed");
        assert_eq!(s.dropped_events_count, 2);
        let status = s.status.as_ref().unwrap();
        assert_eq!(status.code, status::StatusCode::Error as i32);
        assert_eq!(status.message, "upstream down");
    }
}
