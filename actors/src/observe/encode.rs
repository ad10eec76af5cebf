//! Recorded spans as the protobuf body of an OTLP `ExportTraceServiceRequest`, written straight
//! from the records: no intermediate messages, each length computed once. The field numbers
//! are those of `opentelemetry/proto/trace/v1/trace.proto` (and `common`, `resource`); the
//! tests decode what this writes with the `opentelemetry-proto` crate's definitions.

use crate::trace::{SpanRecord, Value};

/// An attribute's value as it is written, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Any<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Value {
    pub fn as_any(&self) -> Any<'_> {
        match self {
            Value::Str(s) => Any::Str(s),
            Value::Int(i) => Any::Int(*i),
            Value::Float(f) => Any::Float(*f),
            Value::Bool(b) => Any::Bool(*b),
        }
    }
}

/// A span's attributes, kept as they are exported: each one an OTLP `KeyValue` (the span's
/// field 9, with its key and length), encoded when it is recorded, so that no value is copied
/// into a string of its own and the span's message takes them as they are.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attributes {
    encoded: Vec<u8>,
}

/// The `attributes` field of `Span`.
const SPAN_ATTRIBUTES: u32 = 9;

impl Attributes {
    /// Room for about `n` short attributes.
    pub fn with_capacity(n: usize) -> Self {
        Attributes {
            encoded: Vec::with_capacity(n.saturating_mul(32)),
        }
    }

    /// Adds `name` (not set before: the fields of one callsite, as a span is made).
    pub fn push(&mut self, name: &str, value: Any<'_>) {
        attribute(&mut self.encoded, SPAN_ATTRIBUTES, name, value);
    }

    /// Sets `name`, replacing the value it had (it keeps its place no longer: it moves last).
    pub fn set(&mut self, name: &str, value: Any<'_>) {
        if let Some(range) = self.find(name) {
            self.encoded.drain(range);
        }
        self.push(name, value);
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// The bytes `name`'s entry takes, when it is set.
    fn find(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let buf = self.encoded.as_slice();
        let mut at = 0;
        while at < buf.len() {
            // One key byte (field 9, LEN), the entry's length, then its `key` field first.
            let (len, n) = read_varint(buf.get(at + 1..)?)?;
            let body = at + 1 + n;
            let end = body.checked_add(usize::try_from(len).ok()?)?;
            let (key_len, m) = read_varint(buf.get(body + 1..end)?)?;
            let key_start = body + 1 + m;
            let key = buf.get(key_start..key_start.checked_add(usize::try_from(key_len).ok()?)?)?;
            if key == name.as_bytes() {
                return Some(at..end);
            }
            at = end;
        }
        None
    }
}

/// A varint at the start of `buf` and the bytes it took.
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// W3C trace flags: the trace is sampled (every exported span is).
const SAMPLED: u32 = 0x01;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;
/// `Status.code`: error.
const STATUS_ERROR: u64 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

/// A length-delimited field (bytes, string or a message already encoded), left out when empty.
fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    key(out, field, LEN);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, VARINT);
        varint(out, v);
    }
}

/// The length of a length-delimited field holding `n` bytes (its key of one byte included).
fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

/// An `AnyValue`'s encoded length.
fn any_len(value: Any<'_>) -> usize {
    match value {
        Any::Str(s) => field_len(s.len()),
        Any::Bool(_) => 2,
        Any::Int(i) => 1 + varint_len(i as u64),
        Any::Float(_) => 9,
    }
}

/// A `KeyValue` (`key`, `value`: an `AnyValue`) as field `field`.
fn attribute(out: &mut Vec<u8>, field: u32, name: &str, value: Any<'_>) {
    let any = any_len(value);
    key(out, field, LEN);
    varint(out, (field_len(name.len()) + field_len(any)) as u64);
    key(out, 1, LEN);
    varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    key(out, 2, LEN);
    varint(out, any as u64);
    match value {
        Any::Str(s) => {
            key(out, 1, LEN);
            varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Any::Bool(b) => {
            key(out, 2, VARINT);
            out.push(u8::from(b));
        }
        Any::Int(i) => {
            key(out, 3, VARINT);
            varint(out, i as u64);
        }
        Any::Float(f) => {
            key(out, 4, FIXED64);
            out.extend_from_slice(&f.to_le_bytes());
        }
    }
}

/// One `Span` message (its fields, without its own key and length) into `out`.
fn span(out: &mut Vec<u8>, scratch: &mut Vec<u8>, r: &SpanRecord) {
    bytes(out, 1, &r.trace_id);
    bytes(out, 2, &r.span_id);
    bytes(out, 3, r.trace_state.as_bytes());
    if r.parent_span_id != [0; 8] {
        bytes(out, 4, &r.parent_span_id);
    }
    bytes(out, 5, r.name.as_bytes());
    uint(out, 6, r.kind as u64);
    fixed64(out, 7, r.start_unix_nano);
    fixed64(out, 8, r.end_unix_nano);
    out.extend_from_slice(&r.attributes.encoded);
    for e in &r.events {
        scratch.clear();
        fixed64(scratch, 1, e.time_unix_nano);
        bytes(scratch, 2, e.name.as_bytes());
        for (name, value) in &e.attributes {
            attribute(scratch, 3, name, value.as_any());
        }
        key(out, 11, LEN);
        varint(out, scratch.len() as u64);
        out.extend_from_slice(scratch);
    }
    uint(out, 12, u64::from(r.dropped_events));
    if let Some(message) = &r.error {
        let text = if message.is_empty() {
            0
        } else {
            field_len(message.len())
        };
        key(out, 15, LEN);
        varint(out, (text + 2) as u64);
        bytes(out, 2, message.as_bytes());
        uint(out, 3, STATUS_ERROR);
    }
    key(out, 16, FIXED32);
    out.extend_from_slice(&SAMPLED.to_le_bytes());
}

/// Encodes batches of one node's spans.
pub struct Encoder {
    /// The `resource` field of `ResourceSpans`, encoded once.
    resource: Vec<u8>,
    /// The `scope` field of `ScopeSpans`, encoded once.
    scope: Vec<u8>,
}

impl Encoder {
    /// The resource says `service.name = "golek"`, `service.instance.id` = `node_id` and the
    /// version.
    pub fn new(node_id: &str) -> Self {
        let version = env!("CARGO_PKG_VERSION");
        let mut attributes = Vec::new();
        for (name, value) in [
            ("service.name", "golek"),
            ("service.instance.id", node_id),
            ("service.version", version),
        ] {
            attribute(&mut attributes, 1, name, Any::Str(value));
        }
        let mut resource = Vec::new();
        bytes(&mut resource, 1, &attributes);
        let mut fields = Vec::new();
        bytes(&mut fields, 1, b"golek");
        bytes(&mut fields, 2, version.as_bytes());
        let mut scope = Vec::new();
        bytes(&mut scope, 1, &fields);
        Encoder { resource, scope }
    }

    /// The protobuf body of one export request holding `batch`.
    #[cfg(test)]
    pub fn encode(&self, batch: Vec<SpanRecord>) -> Vec<u8> {
        let (mut spans, mut one, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        for r in &batch {
            one.clear();
            span_message(&mut one, &mut scratch, r);
            push_span(&mut spans, &one);
        }
        self.body(&spans)
    }

    /// The most bytes [`Encoder::body_in_place_with`] writes in front of the spans.
    pub fn head_room(&self) -> usize {
        2 * (1 + 10) + self.resource.len() + self.scope.len()
    }

    /// The body of one export request, written into `buf` in place: its spans (each by
    /// [`push_span`]) start at `room` (at least [`Encoder::head_room`]), and the head goes
    /// right in front of them; no byte of the spans is copied.
    #[cfg(test)]
    pub fn body_in_place(&self, buf: Vec<u8>, room: usize) -> bytes::Bytes {
        self.body_in_place_with(buf, room, bytes::Bytes::from)
    }

    /// The body written in place as `body_in_place` does, the buffer made into `Bytes` by
    /// `own` (which may give it back to its owner once sent).
    pub fn body_in_place_with(
        &self,
        mut buf: Vec<u8>,
        room: usize,
        own: impl FnOnce(Vec<u8>) -> bytes::Bytes,
    ) -> bytes::Bytes {
        let mut head = Vec::with_capacity(self.head_room());
        self.head(&mut head, buf.len().saturating_sub(room));
        if head.len() > room || buf.len() < room {
            // Not laid out as asked: the body made the ordinary way.
            return self.body(buf.get(room..).unwrap_or_default()).into();
        }
        let start = room - head.len();
        buf[start..room].copy_from_slice(&head);
        own(buf).slice(start..)
    }

    /// The protobuf body of one export request whose spans are already encoded (each by
    /// [`push_span`]).
    pub fn body(&self, spans: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head_room() + spans.len());
        self.head(&mut out, spans.len());
        out.extend_from_slice(spans);
        out
    }

    /// What comes before `spans` bytes of encoded spans in a body.
    fn head(&self, out: &mut Vec<u8>, spans: usize) {
        let scope_spans = self.scope.len() + spans;
        let resource_spans = self.resource.len() + field_len(scope_spans);
        key(out, 1, LEN);
        varint(out, resource_spans as u64);
        out.extend_from_slice(&self.resource);
        key(out, 2, LEN);
        varint(out, scope_spans as u64);
        out.extend_from_slice(&self.scope);
    }
}

/// `r` as one `Span` message (without its key and length) into `out`; `scratch` is working
/// space, reused by the caller.
pub fn span_message(out: &mut Vec<u8>, scratch: &mut Vec<u8>, r: &SpanRecord) {
    span(out, scratch, r);
}

/// Appends one encoded `Span` message (from [`span_message`]) to `spans` as a field of a
/// `ScopeSpans`, as [`Encoder::body`] takes them.
pub fn push_span(spans: &mut Vec<u8>, message: &[u8]) {
    key(spans, 2, LEN);
    varint(spans, message.len() as u64);
    spans.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::status;
    use prost::Message;
    use std::borrow::Cow;

    fn attributes(list: &[(&str, Any<'_>)]) -> Attributes {
        let mut a = Attributes::default();
        for (name, value) in list {
            a.push(name, *value);
        }
        a
    }

    #[test]
    fn an_attribute_set_again_is_replaced_and_the_others_kept() {
        let mut a = attributes(&[
            ("model", Any::Str("m")),
            ("long", Any::Str(&"y".repeat(200))),
            ("n", Any::Int(1)),
        ]);
        a.set("long", Any::Bool(true));
        a.set("n", Any::Int(2));
        a.set("new", Any::Float(0.5));
        let mut want = attributes(&[
            ("model", Any::Str("m")),
            ("long", Any::Bool(true)),
            ("n", Any::Int(2)),
            ("new", Any::Float(0.5)),
        ]);
        assert_eq!(a, want);
        a.set("model", Any::Str("other"));
        want = attributes(&[
            ("long", Any::Bool(true)),
            ("n", Any::Int(2)),
            ("new", Any::Float(0.5)),
            ("model", Any::Str("other")),
        ]);
        assert_eq!(a, want);
        assert!(Attributes::default().find("model").is_none());
    }

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
            attributes: attributes(&[("model", Any::Str("m")), ("n", Any::Int(-3))]),
            events: vec![crate::trace::SpanEvent {
                time_unix_nano: 20,
                name: "failed".into(),
                attributes: vec![("retry", Value::Bool(true))],
            }],
            dropped_events: 2,
            error: Some("upstream down".into()),
        };
        let child = SpanRecord {
            trace_id: [7; 16],
            span_id: [9; 8],
            parent_span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            trace_state: String::new(),
            name: Cow::Owned("forward m".into()),
            kind: crate::trace::SpanKind::Client,
            start_unix_nano: u64::MAX,
            end_unix_nano: u64::MAX,
            attributes: attributes(&[
                ("ratio", Any::Float(0.25)),
                ("ok", Any::Bool(false)),
                ("big", Any::Int(i64::MAX)),
                ("long", Any::Str(&"x".repeat(300))),
            ]),
            events: Vec::new(),
            dropped_events: 0,
            error: Some(String::new()),
        };
        let body = Encoder::new("node-a").encode(vec![record, child]);
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
        let e = &s.events[0];
        assert_eq!(
            (e.time_unix_nano, e.attributes[0].key.as_str()),
            (20, "retry")
        );
        assert_eq!(s.flags, 1);

        let c = &rs.scope_spans[0].spans[1];
        assert_eq!(c.parent_span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!((c.name.as_str(), c.kind), ("forward m", 3));
        assert_eq!(c.end_time_unix_nano, u64::MAX);
        let values: Vec<_> = c
            .attributes
            .iter()
            .map(|a| a.value.as_ref().unwrap().value.clone().unwrap())
            .collect();
        assert_eq!(
            values,
            [
                any_value::Value::DoubleValue(0.25),
                any_value::Value::BoolValue(false),
                any_value::Value::IntValue(i64::MAX),
                any_value::Value::StringValue("x".repeat(300)),
            ]
        );
        let status = c.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, ""));
        assert!(c.events.is_empty() && c.trace_state.is_empty());
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "golek");
    }

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
    }
}
