//! With traces exported and a request not traced, a span that no layer wants is not made
//! (`tracing-subscriber` alone would make it, see `actors/src/trace/gate.rs`), while the spans
//! a log filter or a traced request wants still are. Its own process: it installs the exporter
//! flag, which is process-wide.

use golek_actors::trace::{self, Noted};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// A layer standing for the log: it wants what its level filter passes.
struct Log;
impl<S: tracing::Subscriber> Layer<S> for Log {}

/// The node's layout: the recorder innermost, the log's filter noted.
fn subscriber() -> impl tracing::Subscriber {
    let pipeline = golek_actors::observe::Pipeline::new(0.0);
    tracing_subscriber::registry()
        .with(trace::recording_layer(pipeline))
        .with(Log.with_filter(Noted(LevelFilter::WARN)))
}

#[test]
fn spans_no_layer_wants_are_not_made() {
    trace::set_otel_installed();
    tracing::subscriber::with_default(subscriber(), || {
        // Untraced: an info span of Golek's is wanted by no one (the log is at warn).
        let request = trace::ingress(
            false,
            || tracing::info_span!(target: "golek_actors::test", "http_request"),
        );
        assert!(request.is_disabled(), "an untraced request's span was made");
        let _in = request.enter();
        let validate = tracing::info_span!(target: "golek_actors::test", "validate");
        assert!(validate.is_disabled(), "a span no layer wants was made");
        // A warn span is the log's.
        let warned = tracing::warn_span!(target: "golek_actors::test", "warned");
        assert!(!warned.is_disabled(), "a span the log wants was not made");
    });
    tracing::subscriber::with_default(subscriber(), || {
        // Traced: its span and the spans made inside it are the recorder's.
        let request = trace::ingress(
            true,
            || tracing::info_span!(target: "golek_actors::test", "http_request"),
        );
        assert!(
            !request.is_disabled(),
            "a traced request's span was not made"
        );
        let _in = request.enter();
        let validate = tracing::info_span!(target: "golek_actors::test", "validate");
        assert!(
            !validate.is_disabled(),
            "a traced request's child span was not made"
        );
        // A dependency's span is never traced, and the log does not want it at info.
        let other = tracing::info_span!(target: "hyper::proto", "parse");
        assert!(other.is_disabled(), "a dependency's span was made");
    });
}
