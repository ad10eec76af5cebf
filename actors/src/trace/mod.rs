//! Trace context on the request path: the span that serves a request begins (or continues) a
//! W3C trace, and a hop to a peer sends it on.
//!
//! Whether a request is traced is decided once, where it arrives ([`decide`]): parent-based
//! when the caller sent a `traceparent`, else by `telemetry.sampling_ratio`. The spans of a
//! traced request reach the recording layer ([`Recorder`]), whose ids then are the request's,
//! so a request served by another node is one trace with parent and child spans on both. The
//! spans of an untraced one never reach it ([`Sampled`]): the node still continues the caller's
//! trace id (or starts one), returns it, logs it and sends it to peers, kept in the span's
//! extensions, at the cost of tracing off.

mod gate;
mod record;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use golek_protocol::trace::TraceParent;
use tracing::subscriber::Interest;
use tracing::{Metadata, Span, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

pub use crate::observe::{Any, Attributes};
pub use gate::Noted;
pub use record::{Recorder, SpanEvent, SpanKind, SpanRecord, Value};

/// The recording layer as the process installs it: innermost (on the registry itself), and every
/// other layer's filter wrapped in [`Noted`] (see [`WhileTraced`]).
pub type RecordingLayer = WhileTraced;

/// The recording layer that exports into `pipeline`.
pub fn recording_layer(pipeline: std::sync::Arc<crate::observe::Pipeline>) -> RecordingLayer {
    use tracing_subscriber::Layer;
    WhileTraced(Recorder::new(pipeline).with_filter(Noted(Sampled)))
}

static OTEL: AtomicBool = AtomicBool::new(false);

/// `telemetry.sampling_ratio` as `f64` bits (hot: [`set_sampling_ratio`]).
static RATIO: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The decision for the span an [`ingress`] call is creating on this thread.
    static INGRESS: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The share of new traces exported, from 0 to 1 (outside is clamped).
pub fn set_sampling_ratio(ratio: f64) {
    let ratio = if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    RATIO.store(ratio.to_bits(), Ordering::Relaxed);
}

/// Whether a request that arrives with `incoming` (the caller's trace context) is traced:
/// as the caller's says when it sent one, else by the sampling ratio; never when traces are
/// not exported.
pub fn decide(incoming: Option<&TraceParent>) -> bool {
    if !otel_installed() {
        return false;
    }
    match incoming {
        Some(parent) => parent.sampled,
        None => {
            let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
            ratio >= 1.0 || (ratio > 0.0 && fastrand::f64() < ratio)
        }
    }
}

/// Creates the span `make` makes (the one a request that arrives is served in) as traced or
/// not as `traced` says, whatever span is current; its children follow it.
pub fn ingress(traced: bool, make: impl FnOnce() -> Span) -> Span {
    INGRESS.with(|d| d.set(Some(traced)));
    let span = make();
    INGRESS.with(|d| d.set(None));
    span
}

/// Whether the span being created on this thread is one [`ingress`] makes.
fn creating_ingress() -> bool {
    INGRESS.with(Cell::get).is_some()
}

/// The filter in front of the recording layer ([`Recorder`]): Golek's own spans (at info and above) of
/// traced requests. A span is traced when [`ingress`] made it so, or when the span current
/// where it is created is traced (spans with an explicit parent are created with the parent
/// entered, see `Job::work_span`). Untraced requests cost the layer next to nothing: while no
/// traced span is open, nothing is looked up.
#[derive(Default)]
pub struct Sampled;

/// Traced spans open now, in this process.
static OPEN: AtomicU64 = AtomicU64::new(0);

/// Golek's own crates, at info and above (a dependency's spans never become traces).
fn ours(meta: &Metadata<'_>) -> bool {
    *meta.level() <= tracing::Level::INFO && meta.target().starts_with("golek_")
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for Sampled {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if !ours(meta) {
            return false;
        }
        if meta.is_span() {
            if let Some(traced) = INGRESS.with(Cell::get) {
                return traced;
            }
        }
        // The current span as this filter sees it: the innermost traced one.
        OPEN.load(Ordering::Relaxed) > 0 && cx.lookup_current().is_some()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Without an exporter (installed before the subscriber), nothing is ever traced.
        if ours(meta) && otel_installed() {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        if otel_installed() {
            Some(LevelFilter::INFO)
        } else {
            Some(LevelFilter::OFF)
        }
    }

    /// One more traced span open ([`WhileTraced`] counts it closed).
    fn on_new_span(
        &self,
        _attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _cx: Context<'_, S>,
    ) {
        OPEN.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wraps the filtered recording layer: while no traced span is open, recording on and closing
/// spans skip it (its filter would look each span up only to find it untraced); entering and
/// leaving spans always skip it (the recorder keeps no busy time, and the current span is the
/// registry's). Span creation, events and the filter's own calls always go through. A record
/// or a close is handed to the recorder after one lookup (a traced span is one that holds a
/// [`SpanRecord`]), not the filter's and then the recorder's.
///
/// It must be the innermost layer (the one asked last whether a span is wanted), with every
/// other layer's filter wrapped in [`Noted`]: a span or event that no filter wanted is then
/// refused here, where `tracing-subscriber` would make it anyway (see `gate.rs`).
pub struct WhileTraced(tracing_subscriber::filter::Filtered<Recorder, Noted<Sampled>, Registry>);

impl tracing_subscriber::Layer<Registry> for WhileTraced {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber)
    }
    fn on_layer(&mut self, subscriber: &mut Registry) {
        self.0.on_layer(subscriber)
    }
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.0.register_callsite(meta)
    }
    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, Registry>) -> bool {
        let pass = self.0.enabled(meta, cx);
        gate::take_wanted() && pass
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, Registry>,
    ) {
        self.0.on_new_span(attrs, id, cx)
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, Registry>,
    ) {
        if OPEN.load(Ordering::Relaxed) == 0 || only_trace_id(values) {
            return;
        }
        if let Some(span) = cx.span(id) {
            if let Some(record) = span.extensions_mut().get_mut::<SpanRecord>() {
                Recorder::record(record, values);
            }
        }
    }
    fn on_follows_from(
        &self,
        id: &tracing::span::Id,
        follows: &tracing::span::Id,
        cx: Context<'_, Registry>,
    ) {
        if OPEN.load(Ordering::Relaxed) > 0 {
            self.0.on_follows_from(id, follows, cx)
        }
    }
    fn event_enabled(&self, event: &tracing::Event<'_>, cx: Context<'_, Registry>) -> bool {
        self.0.event_enabled(event, cx)
    }
    fn on_event(&self, event: &tracing::Event<'_>, cx: Context<'_, Registry>) {
        self.0.on_event(event, cx)
    }
    fn on_enter(&self, _id: &tracing::span::Id, _cx: Context<'_, Registry>) {}
    fn on_exit(&self, _id: &tracing::span::Id, _cx: Context<'_, Registry>) {}
    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, Registry>) {
        if OPEN.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(span) = cx.span(&id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(record) = extensions.get_mut::<SpanRecord>() {
            OPEN.fetch_sub(1, Ordering::Relaxed);
            self.0.inner().close(record);
        }
    }
    fn on_id_change(
        &self,
        old: &tracing::span::Id,
        new: &tracing::span::Id,
        cx: Context<'_, Registry>,
    ) {
        self.0.on_id_change(old, new, cx)
    }
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // Asked at every span's close, by every layer above, for the registry below: no layer
        // is it, so the layers inside need not each be asked.
        if id == std::any::TypeId::of::<Registry>() {
            return None;
        }
        // SAFETY: forwarded as is; the inner layer answers for its own types.
        unsafe { self.0.downcast_raw(id) }
    }
}

/// Whether a record sets only `trace_id`: a span's trace id is its own (recorded for the log
/// by [`begin`]), so the recorder has nothing to do with it.
fn only_trace_id(values: &tracing::span::Record<'_>) -> bool {
    struct Names(bool);
    impl tracing::field::Visit for Names {
        fn record_debug(&mut self, field: &tracing::field::Field, _: &dyn std::fmt::Debug) {
            self.0 &= field.name() == "trace_id";
        }
        fn record_str(&mut self, field: &tracing::field::Field, _: &str) {
            self.0 &= field.name() == "trace_id";
        }
    }
    if values.len() != 1 {
        return false;
    }
    let mut names = Names(true);
    values.record(&mut names);
    names.0
}

/// Says that the recording layer is installed in this process (the node's start-up).
pub fn set_otel_installed() {
    OTEL.store(true, Ordering::SeqCst);
}

pub fn otel_installed() -> bool {
    OTEL.load(Ordering::Relaxed)
}

/// This hop's trace context, kept on an untraced request's span.
#[derive(Clone, Copy)]
struct Hop(TraceParent);

fn random_ids() -> ([u8; 16], [u8; 8]) {
    let trace = fastrand::u128(1..).to_be_bytes();
    let span = fastrand::u64(1..).to_be_bytes();
    (trace, span)
}

/// A caller's `tracestate` as it is carried on: at most 512 printable ASCII characters (W3C),
/// else dropped.
fn carried_state(tracestate: Option<&str>) -> String {
    match tracestate.map(str::trim) {
        Some(s) if s.len() <= 512 && s.bytes().all(|b| (0x20..0x7f).contains(&b)) => s.to_string(),
        _ => String::new(),
    }
}

/// Runs `f` on the span data of `span` in the process's registry.
fn with_data<T>(
    span: &Span,
    f: impl FnOnce(tracing_subscriber::registry::SpanRef<'_, Registry>) -> Option<T>,
) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        f(registry.span(id)?)
    })
    .flatten()
}

/// Makes `span` (one that serves a request: HTTP, QUIC client, peer, made by [`ingress`] with
/// `traced`) the next hop of the caller's trace, or the root of a new one; records its
/// `trace_id` field and returns this hop's context (what the response's `traceparent` says).
pub fn begin(
    span: &Span,
    traced: bool,
    incoming: Option<TraceParent>,
    tracestate: Option<&str>,
) -> TraceParent {
    if traced {
        let hop = with_data(span, |data| {
            let mut extensions = data.extensions_mut();
            let record = extensions.get_mut::<SpanRecord>()?;
            if let Some(parent) = &incoming {
                record.trace_id = parent.trace_id;
                record.parent_span_id = parent.span_id;
                record.trace_state = carried_state(tracestate);
            }
            Some(TraceParent {
                trace_id: record.trace_id,
                span_id: record.span_id,
                sampled: true,
            })
        });
        if let Some(hop) = hop {
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
    with_data(span, |data| {
        data.extensions_mut().insert(Hop(hop));
        Some(())
    });
    span.record("trace_id", hop.trace_id_hex().as_str());
    hop
}

/// The trace context to send on from inside `span` (a hop to a peer): its own span when it is
/// traced, else the trace of the request it belongs to.
pub fn outgoing(span: &Span) -> Option<TraceParent> {
    with_data(span, |data| {
        data.scope().find_map(|s| {
            let extensions = s.extensions();
            match extensions.get::<SpanRecord>() {
                Some(r) => Some(TraceParent {
                    trace_id: r.trace_id,
                    span_id: r.span_id,
                    sampled: true,
                }),
                None => extensions.get::<Hop>().map(|h| h.0),
            }
        })
    })
}

/// [`outgoing`] of the current span, as a header value.
pub fn current_traceparent() -> Option<String> {
    outgoing(&Span::current()).map(|t| t.header())
}
