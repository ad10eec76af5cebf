//! The process's log and trace subscriber, installed once: the log (text or JSON lines, its
//! filter reloadable at run time) and, when traces are exported, the recording layer.
//!
//! A JSON line carries `timestamp`, `level`, `target`, `node_id`, the `request_id` and
//! `trace_id` of the request it belongs to (taken from the request's span), the span's name, and
//! the event's own fields.

mod quiet;

use std::sync::{Arc, OnceLock};

use golek_actors::trace::Noted;
use golek_config::{LogConfig, LogFormat};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

use quiet::{Quiet, Wants};

/// The trace recording layer, when traces are exported (built by [`crate::telemetry`]).
pub type OtelLayer = golek_actors::trace::RecordingLayer;

/// Applies a filter text to the installed subscriber.
type SetFilter = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// Changes the installed log filter; cheap to clone.
#[derive(Clone)]
pub struct LogControl {
    set: Arc<SetFilter>,
}

impl LogControl {
    /// Applies a new filter (`info`, `info,golek_actors=debug`).
    pub fn set_filter(&self, filter: &str) -> Result<(), String> {
        (self.set)(filter)
    }

    fn inert() -> Self {
        LogControl {
            set: Arc::new(|_| Err("the log subscriber was installed by someone else".into())),
        }
    }
}

/// The control of the subscriber this process installed.
static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// Changes the log filter of this process (inert when Golek did not install the subscriber).
pub fn control() -> LogControl {
    CONTROL.get().cloned().unwrap_or_else(LogControl::inert)
}

/// The node id every JSON line carries, once known.
static NODE_ID: OnceLock<String> = OnceLock::new();

pub fn set_node_id(id: &str) {
    let _ = NODE_ID.set(id.to_string());
}

/// `[log]` as the node starts with it: `log.filter` when a layer set it, else `RUST_LOG` when
/// that is set, else the default.
pub fn start_config(loaded: &golek_config::LoadedConfig) -> LogConfig {
    let mut log = loaded.config.log.clone();
    let set = !matches!(
        loaded.provenance.get("log.filter"),
        None | Some(golek_config::Source::Default)
    );
    if !set {
        if let Ok(env) = std::env::var("RUST_LOG") {
            if EnvFilter::try_new(&env).is_ok() {
                log.filter = env;
            }
        }
    }
    log
}

fn start_filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the subscriber for this process (once; a second call returns an inert control).
pub fn install(config: &LogConfig, otel: Option<OtelLayer>) -> LogControl {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let start = start_filter(config);
    quiet::set_log_filter_text(&config.filter);
    let (filter, handle) = reload::Layer::new(start);
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(terminal)
            .with_writer(std::io::stderr)
            .boxed()
    };
    // Without traces, the same layer, inert (`Option::None` as a layer would say it wants every
    // callsite, and every span and event of every dependency would then be made). It is the
    // innermost layer, and the other filters are `Noted`: what none of them wants is not made.
    let otel = otel.unwrap_or_else(crate::telemetry::inert_layer);
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(Quiet {
            inner: RequestIds.with_filter(Noted(
                tracing_subscriber::filter::filter_fn(carries_ids)
                    .with_max_level_hint(tracing_subscriber::filter::LevelFilter::INFO),
            )),
            wants: Wants::Never,
        })
        .with(Quiet {
            inner: fmt_layer.with_filter(Noted(filter)),
            wants: Wants::WhileScoped,
        })
        .try_init();
    if installed.is_err() {
        return LogControl::inert();
    }
    let control = LogControl {
        set: Arc::new(move |text: &str| {
            let filter = EnvFilter::try_new(text).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())?;
            quiet::set_log_filter_text(text);
            Ok(())
        }),
    };
    let _ = CONTROL.set(control.clone());
    control
}

/// The `request_id` and `trace_id` a span was given, kept in its extensions for the log lines
/// of everything inside it.
#[derive(Default, Clone)]
struct Ids {
    request_id: Option<String>,
    trace_id: Option<String>,
}

impl Visit for Ids {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "request_id" => self.request_id = Some(value.to_string()),
            "trace_id" => self.trace_id = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "request_id" | "trace_id") {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

struct RequestIds;

/// The spans [`RequestIds`] looks at: those at info and above that name a request or trace id
/// (the spans that serve a request are info spans; decided once per
/// callsite, so that the spans and events of dependencies, at any level, are never even made
/// for it).
fn carries_ids(meta: &tracing::Metadata<'_>) -> bool {
    let fields = meta.fields();
    meta.is_span()
        && *meta.level() <= tracing::Level::INFO
        && (fields.field("request_id").is_some() || fields.field("trace_id").is_some())
}

impl<S> Layer<S> for RequestIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut ids = Ids::default();
        attrs.record(&mut ids);
        if ids.request_id.is_some() || ids.trace_id.is_some() {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(ids);
            }
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut ids = Ids::default();
        values.record(&mut ids);
        if ids.request_id.is_none() && ids.trace_id.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<Ids>() {
            Some(kept) => {
                if ids.request_id.is_some() {
                    kept.request_id = ids.request_id;
                }
                if ids.trace_id.is_some() {
                    kept.trace_id = ids.trace_id;
                }
            }
            None => extensions.insert(ids),
        }
    }
}

/// An event's fields as JSON values.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// One JSON object a line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        let mut time = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut time))?;
        line.insert("timestamp".into(), time.into());
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(node) = NODE_ID.get() {
            line.insert("node_id".into(), node.as_str().into());
        }
        if let Some(scope) = ctx.event_scope() {
            let mut spans = scope.into_iter();
            if let Some(leaf) = spans.next() {
                line.insert("span".into(), leaf.name().into());
                let found = std::iter::once(leaf)
                    .chain(spans)
                    .find_map(|s| s.extensions().get::<Ids>().cloned());
                if let Some(ids) = found {
                    if let Some(r) = ids.request_id {
                        line.insert("request_id".into(), r.into());
                    }
                    if let Some(t) = ids.trace_id {
                        line.insert("trace_id".into(), t.into());
                    }
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut JsonFields(&mut fields));
        if let Some(message) = fields.remove("message") {
            line.insert("message".into(), message);
        }
        if !fields.is_empty() {
            line.insert("fields".into(), Value::Object(fields));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Before the configuration is known (or for commands that load none): text, `RUST_LOG` or
/// `info`.
pub fn install_default() -> LogControl {
    install_default_at("info")
}

/// [`install_default`] with `level` when `RUST_LOG` does not say (`golek run` keeps the
/// terminal for the conversation: warnings only).
pub fn install_default_at(level: &str) -> LogControl {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| EnvFilter::try_new(f).is_ok())
        .unwrap_or_else(|| level.into());
    install(
        &LogConfig {
            filter,
            format: LogFormat::Text,
        },
        None,
    )
}
