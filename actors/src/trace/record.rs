//! The layer that records the spans of traced requests: each span's ids, name, kind, times,
//! fields and events are kept in its extensions while it is open and handed, closed, to the
//! export pipeline ([`crate::observe::Pipeline`]), which encodes them as OTLP.
//!
//! It sits behind the [`super::Sampled`] filter, so it only ever sees Golek's own spans of
//! traced requests. A span made by [`super::ingress`] starts a trace (or, by
//! [`super::begin`], continues the caller's); every other span is the child of the innermost
//! traced span above it.
//!
//! Fields named `otel.name`, `otel.kind`, `otel.status_code` and `otel.status_message` set
//! the span's name, kind and status; an event at error level marks the span failed. Every
//! other field is an attribute (`trace_id` is the span's own and is left out).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::observe::{Any, Attributes, Pipeline};

/// Events kept on one span; more are counted, not kept.
const MAX_EVENTS: usize = 32;

/// OTLP's span kinds (the protobuf's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    fn parse(text: &str) -> Option<SpanKind> {
        [
            ("internal", SpanKind::Internal),
            ("server", SpanKind::Server),
            ("client", SpanKind::Client),
            ("producer", SpanKind::Producer),
            ("consumer", SpanKind::Consumer),
        ]
        .into_iter()
        .find_map(|(name, kind)| text.eq_ignore_ascii_case(name).then_some(kind))
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Something that happened inside a span (a log event).
#[derive(Debug)]
pub struct SpanEvent {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Vec<(&'static str, Value)>,
}

/// One traced span, as it is exported.
#[derive(Debug)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Zero for the root of a trace.
    pub parent_span_id: [u8; 8],
    /// The caller's W3C `tracestate`, carried by every span of the trace on this node.
    pub trace_state: String,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub dropped_events: u32,
    /// Set when the span failed: the message (`otel.status_message` or the error event's).
    pub error: Option<String>,
}

impl SpanRecord {
    fn new(
        name: &'static str,
        fields: usize,
        trace_id: [u8; 16],
        parent: [u8; 8],
        state: String,
    ) -> Self {
        SpanRecord {
            trace_id,
            span_id: fastrand::u64(1..).to_be_bytes(),
            parent_span_id: parent,
            trace_state: state,
            name: Cow::Borrowed(name),
            kind: SpanKind::Internal,
            start_unix_nano: now(),
            end_unix_nano: 0,
            attributes: Attributes::with_capacity(fields),
            events: Vec::new(),
            dropped_events: 0,
            error: None,
        }
    }

    /// A text field: the `otel.*` ones set the span's name, kind and status (without making
    /// a string where none is kept); `trace_id` is the span's own; others are attributes.
    /// `fresh`: the span is being made (its fields are each given once).
    fn set_str(&mut self, key: &'static str, value: &str, fresh: bool) {
        match key {
            "otel.name" => self.name = Cow::Owned(value.to_owned()),
            "otel.kind" => {
                if let Some(kind) = SpanKind::parse(value) {
                    self.kind = kind;
                }
            }
            "otel.status_code" => {
                if value.eq_ignore_ascii_case("error") && self.error.is_none() {
                    self.error = Some(String::new());
                }
            }
            "otel.status_message" => self.error = Some(value.to_owned()),
            "trace_id" => {}
            key => self.put(key, Any::Str(value), fresh),
        }
    }

    /// Any other field: an attribute (`trace_id` is left out).
    fn put(&mut self, key: &'static str, value: Any<'_>, fresh: bool) {
        if key == "trace_id" {
            return;
        }
        if fresh {
            self.attributes.push(key, value);
        } else {
            self.attributes.set(key, value);
        }
    }
}

/// Nanoseconds since the Unix epoch (the real-time clock read directly: twice a span, and
/// `SystemTime`'s checked conversions cost more than the read).
#[cfg(unix)]
fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(not(unix))]
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn value_of(value: &dyn fmt::Debug) -> Value {
    Value::Str(format!("{value:?}"))
}

/// Collects a span's fields: as it is made (`fresh`, each field once) or recorded later.
struct Fields<'a> {
    record: &'a mut SpanRecord,
    fresh: bool,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Any<'_>) {
        self.record.put(field.name(), value, self.fresh);
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "trace_id" => {}
            "otel.name" => self.record.name = Cow::Owned(format!("{value:?}")),
            key => self.record.set_str(key, &format!("{value:?}"), self.fresh),
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record.set_str(field.name(), value, self.fresh);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Any::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.put(field, Any::Int(v)),
            Err(_) => self.put(field, Any::Str(&value.to_string())),
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Any::Float(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Any::Bool(value));
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    attributes: Vec<(&'static str, Value)>,
}

impl EventFields {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Str(message)) => self.message = Some(message),
            (key, value) => self.attributes.push((key, value)),
        }
    }
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, value_of(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).map_or_else(|_| Value::Str(value.to_string()), Value::Int);
        self.put(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::Float(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
}

/// The `tracing` layer that records traced spans into the export pipeline.
pub struct Recorder {
    pipeline: Arc<Pipeline>,
}

impl Recorder {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Recorder { pipeline }
    }

    /// Fields recorded on an open span.
    pub(super) fn record(record: &mut SpanRecord, values: &Record<'_>) {
        values.record(&mut Fields {
            record,
            fresh: false,
        });
    }

    /// A span closes: it is encoded where it is, and the registry drops it with the span.
    pub(super) fn close(&self, record: &mut SpanRecord) {
        record.end_unix_nano = now().max(record.start_unix_nano);
        self.pipeline.push(record);
    }
}

impl<S> tracing_subscriber::Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        let Some(span) = cx.span(id) else {
            return;
        };
        // A span that serves a request starts a trace; others continue their traced parent's.
        let parent = if super::creating_ingress() {
            None
        } else {
            span.parent().and_then(|p| {
                p.extensions()
                    .get::<SpanRecord>()
                    .map(|r| (r.trace_id, r.span_id, r.trace_state.clone()))
            })
        };
        let (trace_id, parent_id, state) =
            parent.unwrap_or_else(|| (fastrand::u128(1..).to_be_bytes(), [0; 8], String::new()));
        let meta = attrs.metadata();
        let mut record =
            SpanRecord::new(meta.name(), meta.fields().len(), trace_id, parent_id, state);
        attrs.record(&mut Fields {
            record: &mut record,
            fresh: true,
        });
        span.extensions_mut().insert(record);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        if let Some(span) = cx.span(id) {
            if let Some(record) = span.extensions_mut().get_mut::<SpanRecord>() {
                Recorder::record(record, values);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, cx: Context<'_, S>) {
        let Some(span) = cx.event_span(event) else {
            return;
        };
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let name = fields
            .message
            .unwrap_or_else(|| event.metadata().name().to_string());
        let mut extensions = span.extensions_mut();
        let Some(record) = extensions.get_mut::<SpanRecord>() else {
            return;
        };
        if *event.metadata().level() == Level::ERROR && record.error.is_none() {
            record.error = Some(name.clone());
        }
        if record.events.len() >= MAX_EVENTS {
            record.dropped_events = record.dropped_events.saturating_add(1);
            return;
        }
        record.events.push(SpanEvent {
            time_unix_nano: now(),
            name,
            attributes: fields.attributes,
        });
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        let Some(span) = cx.span(&id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(record) = extensions.get_mut::<SpanRecord>() {
            self.close(record);
        }
    }
}
