//! A layer that is told nothing of spans being entered, left or closed when it needs none of
//! it: each such call would otherwise look the span up for its per-layer filter, on every
//! poll of every instrumented future.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Whether the log filter has span scopes (directives such as `golek_node[http_request]=debug`),
/// which need the spans entered and left to be told to it.
static SCOPED: AtomicBool = AtomicBool::new(false);

/// Notes whether the log filter being installed has span scopes.
pub(super) fn set_log_filter_text(text: &str) {
    SCOPED.store(text.contains('['), Ordering::Relaxed);
}

/// When a wrapped layer wants entering, leaving and closing spans.
#[derive(Clone, Copy)]
pub(super) enum Wants {
    /// Never (the request-id layer keeps what it needs when a span is made or recorded).
    Never,
    /// While the log filter has span scopes (the log layer: its filter tracks scopes; the
    /// layer itself records no span events).
    WhileScoped,
}

pub(super) struct Quiet<L> {
    pub(super) inner: L,
    pub(super) wants: Wants,
}

impl<L> Quiet<L> {
    fn told(&self) -> bool {
        match self.wants {
            Wants::Never => false,
            Wants::WhileScoped => SCOPED.load(Ordering::Relaxed),
        }
    }
}

impl<S, L> Layer<S> for Quiet<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber)
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber)
    }
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(meta)
    }
    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        self.inner.enabled(meta, cx)
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.inner.on_new_span(attrs, id, cx)
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        self.inner.on_record(id, values, cx)
    }
    fn on_follows_from(
        &self,
        id: &tracing::span::Id,
        follows: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.inner.on_follows_from(id, follows, cx)
    }
    fn event_enabled(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, cx)
    }
    fn on_event(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) {
        self.inner.on_event(event, cx)
    }
    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        if self.told() {
            self.inner.on_enter(id, cx)
        }
    }
    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        if self.told() {
            self.inner.on_exit(id, cx)
        }
    }
    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        if self.told() {
            self.inner.on_close(id, cx)
        }
    }
    fn on_id_change(&self, old: &tracing::span::Id, new: &tracing::span::Id, cx: Context<'_, S>) {
        self.inner.on_id_change(old, new, cx)
    }
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // Asked at every span's close, by every layer above, for the registry below: no layer
        // is it, so the layers inside need not each be asked.
        if id == std::any::TypeId::of::<tracing_subscriber::Registry>() {
            return None;
        }
        // SAFETY: forwarded as is; the inner layer answers for its own types.
        unsafe { self.inner.downcast_raw(id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::EnvFilter;

    /// A log filter with a span scope still sees spans entered and left through [`Quiet`],
    /// and without one, a log line outside the scope stays out.
    #[test]
    fn a_scoped_log_filter_sees_its_spans_entered() {
        let text = "warn,[scoped]=debug";
        set_log_filter_text(text);
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .with_filter(EnvFilter::new(text));
        let subscriber = tracing_subscriber::registry().with(Quiet {
            inner: fmt,
            wants: Wants::WhileScoped,
        });
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("outside the scope");
            let span = tracing::info_span!("scoped");
            span.in_scope(|| tracing::debug!("inside the scope"));
            tracing::debug!("after the scope");
        });
        set_log_filter_text("info");
        let log = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert!(log.contains("inside the scope"), "{log}");
        assert!(
            !log.contains("outside the scope") && !log.contains("after the scope"),
            "{log}"
        );
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
