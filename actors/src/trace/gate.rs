//! A span or event that no layer's filter wants is not made.
//!
//! With per-layer filters, `tracing-subscriber` (0.3) asks every filter whether it wants a span
//! whose callsite one of them called `sometimes`, and then makes the span even when each filter
//! said no: its registry only refuses when all 64 filter slots did, not only the filters that
//! exist. [`crate::trace::Sampled`] says `sometimes` for Golek's spans once traces are exported,
//! so a request that is not traced would pay for every span of Golek's (allocated, entered,
//! closed) with tracing on and sampling 0.
//!
//! The fix: each filter of the process's subscriber is wrapped in [`Noted`], which notes on the
//! thread when it wants what is being asked about; the innermost layer
//! ([`crate::trace::WhileTraced`], asked last) refuses it globally when no filter did.

use std::cell::Cell;

use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};

thread_local! {
    /// Whether a filter asked in the current pass wanted the span or event.
    static WANTED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a filter of this pass wanted what is asked about; the pass ends here.
pub(crate) fn take_wanted() -> bool {
    WANTED.with(|w| w.replace(false))
}

/// A filter that notes on the thread when it wants a span or event (see the module's text).
pub struct Noted<F>(pub F);

impl<S: Subscriber, F: Filter<S>> Filter<S> for Noted<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        let enabled = self.0.enabled(meta, cx);
        if enabled {
            WANTED.with(|w| w.set(true));
        }
        enabled
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        self.0.callsite_enabled(meta)
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, cx)
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        self.0.on_record(id, values, cx)
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx)
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx)
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx)
    }
}
