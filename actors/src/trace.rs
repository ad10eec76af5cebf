//! Trace context on the request path: the span that serves a request begins (or continues) a
//! W3C trace, and a hop to a peer sends it on.
//!
//! With traces exported (the OpenTelemetry layer installed), the ids are OpenTelemetry's, so a
//! request served by another node is one trace with parent and child spans on both. Without
//! it, the node still continues the caller's trace id (or starts one), returns it, logs it and
//! sends it to peers, kept in the span's extensions.

use std::sync::atomic::{AtomicBool, Ordering};

use golek_protocol::trace::TraceParent;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

static OTEL: AtomicBool = AtomicBool::new(false);

/// Says that the OpenTelemetry layer is installed in this process (the node's start-up).
pub fn set_otel_installed() {
    OTEL.store(true, Ordering::SeqCst);
}

pub fn otel_installed() -> bool {
    OTEL.load(Ordering::Relaxed)
}

/// This hop's trace context, kept on its span when OpenTelemetry is not installed.
#[derive(Clone, Copy)]
struct Hop(TraceParent);

fn random_ids() -> ([u8; 16], [u8; 8]) {
    let trace = fastrand::u128(1..).to_be_bytes();
    let span = fastrand::u64(1..).to_be_bytes();
    (trace, span)
}

fn from_span_context(sc: &SpanContext) -> TraceParent {
    TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        sampled: sc.is_sampled(),
    }
}

/// The OpenTelemetry context of a caller's `traceparent` (and `tracestate`).
pub fn remote_context(parent: &TraceParent, tracestate: Option<&str>) -> opentelemetry::Context {
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        flags,
        true,
        state,
    );
    opentelemetry::Context::new().with_remote_span_context(sc)
}

/// Makes `span` (one that serves a request: HTTP, QUIC client, peer) the next hop of the
/// caller's trace, or the root of a new one; records its `trace_id` field and returns this
/// hop's context (what the response's `traceparent` says).
pub fn begin(span: &Span, incoming: Option<TraceParent>, tracestate: Option<&str>) -> TraceParent {
    if otel_installed() {
        if let Some(parent) = &incoming {
            let _ = span.set_parent(remote_context(parent, tracestate));
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            let hop = from_span_context(&sc);
            span.record("trace_id", hop.trace_id_hex().as_str());
            return hop;
        }
    }
    let (fresh_trace, span_id) = random_ids();
    let hop = TraceParent {
        trace_id: incoming.map_or(fresh_trace, |p| p.trace_id),
        span_id,
        sampled: incoming.is_some_and(|p| p.sampled),
    };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() {
            if let Some(data) = registry.span(id) {
                data.extensions_mut().insert(Hop(hop));
            }
        }
    });
    span.record("trace_id", hop.trace_id_hex().as_str());
    hop
}

/// The trace context to send on from inside `span` (a hop to a peer): its own span when
/// traces are exported, else the trace of the request it belongs to.
pub fn outgoing(span: &Span) -> Option<TraceParent> {
    if otel_installed() {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            return Some(from_span_context(&sc));
        }
    }
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span(id)?;
        data.scope()
            .find_map(|s| s.extensions().get::<Hop>().map(|h| h.0))
    })
    .flatten()
}

/// [`outgoing`] of the current span, as a header value.
pub fn current_traceparent() -> Option<String> {
    outgoing(&Span::current()).map(|t| t.header())
}
