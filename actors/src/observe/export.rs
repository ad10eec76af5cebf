//! The trace export pipeline: finished spans go into a bounded queue (a full queue drops the
//! span and counts it; a request never waits), and one thread sends them in batches over
//! OTLP/HTTP (protobuf, written by [`super::encode`]).
//!
//! [`Pipeline`] is built once per process, with the recording layer
//! ([`crate::trace::Recorder`]); the ObservabilityManager starts its export thread
//! ([`Exporting`]) and, on a restart, a new one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use golek_config::TelemetryConfig;

use super::encode::Encoder;
use crate::metrics as m;
use crate::trace::SpanRecord;

/// Finished spans waiting for the export thread, already encoded: a span is encoded and
/// freed on the thread that closed it (where its memory came from), and the export thread
/// only frees whole batches.
#[derive(Debug, Default)]
struct Queue {
    /// The queued spans, each a `spans` field of a `ScopeSpans` ([`super::encode::push_span`]).
    encoded: Vec<u8>,
    /// Where each queued span ends in `encoded`.
    ends: Vec<usize>,
    /// Bytes left free at the start of `encoded` for the request's head
    /// ([`Encoder::body_in_place_with`]).
    room: usize,
    /// The buffer of the last batch sent, back from the HTTP client ([`Recycled`]): the next
    /// batch's, so that no batch allocates (and frees) its large buffer.
    spare: Vec<u8>,
    /// An exporter runs (else spans are dropped).
    open: bool,
    cap: usize,
    batch: usize,
}

thread_local! {
    /// A span's message and the encoder's working space, reused by each thread that closes
    /// spans.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// What the provider, the request path and the ObservabilityManager share.
#[derive(Debug)]
pub struct Pipeline {
    queue: Mutex<Queue>,
    /// Wakes the export thread when a batch is full or the queue closes; between those it
    /// sleeps for the export interval, whatever the rate of spans.
    ready: Condvar,
    pub dropped: AtomicU64,
    pub exported: AtomicU64,
    pub failed: AtomicU64,
}

impl Pipeline {
    pub fn new(sampling_ratio: f64) -> Arc<Pipeline> {
        crate::trace::set_sampling_ratio(sampling_ratio);
        Arc::new(Pipeline {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A changed `telemetry.sampling_ratio`, for the next requests.
    pub fn set_sampling_ratio(&self, ratio: f64) {
        crate::trace::set_sampling_ratio(ratio);
    }

    /// Hands a finished span to the export thread without waiting: when the queue is full,
    /// or no exporter runs, it is dropped and counted.
    pub fn push(&self, span: &SpanRecord) {
        let queued = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut bufs) => {
                let (one, scratch) = &mut *bufs;
                one.clear();
                super::encode::span_message(one, scratch, span);
                self.enqueue(one)
            }
            // Only if a span closes while this thread encodes one (never, today).
            Err(_) => {
                let (mut one, mut scratch) = (Vec::new(), Vec::new());
                super::encode::span_message(&mut one, &mut scratch, span);
                self.enqueue(&one)
            }
        });
        if !queued {
            self.drop_span();
        }
    }

    fn enqueue(&self, message: &[u8]) -> bool {
        let mut q = self.lock();
        if !q.open || q.ends.len() >= q.cap {
            return false;
        }
        if q.encoded.is_empty() {
            let room = q.room;
            q.encoded.resize(room, 0);
        }
        super::encode::push_span(&mut q.encoded, message);
        let end = q.encoded.len();
        q.ends.push(end);
        if q.ends.len() == q.batch {
            self.ready.notify_one();
        }
        true
    }

    /// The next batch, encoded, and how many spans it holds: up to `batch` spans, once that
    /// many wait or `interval` has passed; `None` once the queue is closed and empty.
    fn next_batch(&self, batch: usize, interval: Duration) -> Option<(Vec<u8>, usize)> {
        let deadline = Instant::now() + interval;
        let mut q = self.lock();
        while q.open && q.ends.len() < batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if !q.open && q.ends.is_empty() {
            return None;
        }
        let n = q.ends.len().min(batch);
        if n == 0 {
            return Some((Vec::new(), 0));
        }
        let q = &mut *q;
        let taken = if n == q.ends.len() {
            q.ends.clear();
            let fresh = match std::mem::take(&mut q.spare) {
                spare if spare.capacity() > 0 => spare,
                _ => Vec::with_capacity(q.encoded.capacity()),
            };
            std::mem::replace(&mut q.encoded, fresh)
        } else {
            // The spans left over move to a new buffer, behind the same room.
            let cut = q.ends[n - 1];
            let mut rest = Vec::with_capacity(q.encoded.capacity());
            rest.resize(q.room, 0);
            rest.extend_from_slice(&q.encoded[cut..]);
            q.encoded.truncate(cut);
            q.ends.drain(..n);
            for end in &mut q.ends {
                *end = *end - cut + q.room;
            }
            std::mem::replace(&mut q.encoded, rest)
        };
        Some((taken, n))
    }

    fn drop_span(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::TRACE_SPANS_DROPPED_TOTAL).increment(1);
    }
}

/// A running export thread; [`Exporting::stop`] (or dropping it) sends what is queued and ends
/// it.
pub struct Exporting {
    pipeline: Arc<Pipeline>,
    thread: Option<JoinHandle<()>>,
}

impl Exporting {
    /// Starts exporting `pipeline`'s spans to `telemetry.otlp_endpoint` as `node_id`.
    pub fn start(
        pipeline: Arc<Pipeline>,
        telemetry: &TelemetryConfig,
        node_id: &str,
    ) -> std::io::Result<Exporting> {
        let Some(endpoint) = telemetry.otlp_endpoint.clone() else {
            return Ok(Exporting {
                pipeline,
                thread: None,
            });
        };
        let encoder = Encoder::new(node_id);
        let batch = telemetry.batch_spans.max(1);
        let interval = telemetry.export_interval;
        {
            let mut q = pipeline.lock();
            q.open = true;
            q.cap = telemetry.queue_spans.max(1);
            q.batch = batch;
            // Spans queued behind another room (a restart with another node id) move.
            let room = encoder.head_room();
            if q.room != room {
                if !q.encoded.is_empty() {
                    let mut moved = vec![0; room];
                    moved.extend_from_slice(q.encoded.get(q.room..).unwrap_or_default());
                    let old = q.room;
                    for end in &mut q.ends {
                        *end = *end - old + room;
                    }
                    q.encoded = moved;
                }
                q.room = room;
            }
        }
        let shared = pipeline.clone();
        let thread = std::thread::Builder::new()
            .name("golek-otlp".into())
            .spawn(move || export_loop(&shared, &endpoint, &encoder, batch, interval));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                pipeline.lock().open = false;
                return Err(e);
            }
        };
        Ok(Exporting {
            pipeline,
            thread: Some(thread),
        })
    }

    /// Closes the queue; the thread sends what it holds and ends (waited for up to `grace`).
    pub fn stop(&mut self, grace: Duration) {
        self.pipeline.lock().open = false;
        self.pipeline.ready.notify_all();
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + grace;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!(
                    "the trace exporter did not finish in time; its last spans may be lost"
                );
            }
        }
    }

    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Exporting {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// A sent batch's buffer: given back to the queue when the HTTP client is done with it.
struct Recycled {
    buf: Vec<u8>,
    pipeline: Arc<Pipeline>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut q = self.pipeline.lock();
        if q.spare.capacity() < buf.capacity() {
            q.spare = buf;
        }
    }
}

/// Sends one encoded batch; the error says what went wrong.
fn post(
    client: &reqwest::blocking::Client,
    endpoint: &str,
    body: bytes::Bytes,
) -> Result<(), String> {
    let answer = client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = answer.text().unwrap_or_default();
        Err(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        ))
    }
}

fn export_loop(
    pipeline: &Arc<Pipeline>,
    endpoint: &str,
    encoder: &Encoder,
    batch_size: usize,
    interval: Duration,
) {
    // Built here: a blocking HTTP client must not live on an async runtime's thread.
    let built = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build();
    let client = match built {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%endpoint, %err, "cannot build the OTLP client; spans are dropped");
            while let Some((_, n)) = pipeline.next_batch(batch_size, interval) {
                for _ in 0..n {
                    pipeline.drop_span();
                }
            }
            return;
        }
    };
    tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    let mut last_error: Option<Instant> = None;
    while let Some((spans, n)) = pipeline.next_batch(batch_size, interval) {
        if n == 0 {
            continue;
        }
        let n = n as u64;
        let room = pipeline.lock().room;
        let body = encoder.body_in_place_with(spans, room, |buf| {
            bytes::Bytes::from_owner(Recycled {
                buf,
                pipeline: pipeline.clone(),
            })
        });
        match post(&client, endpoint, body) {
            Ok(()) => {
                pipeline.exported.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(m::TRACE_SPANS_EXPORTED_TOTAL).increment(n);
            }
            Err(err) => {
                pipeline.failed.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(m::TRACE_EXPORT_FAILED_SPANS_TOTAL).increment(n);
                // One warning a minute at most: a collector that is down must not flood the log.
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(%endpoint, %err, spans = n, "cannot export traces");
                    last_error = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::borrow::Cow;

    fn span(name: &'static str) -> SpanRecord {
        SpanRecord {
            trace_id: [3; 16],
            span_id: [4; 8],
            parent_span_id: [0; 8],
            trace_state: String::new(),
            name: Cow::Borrowed(name),
            kind: crate::trace::SpanKind::Internal,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: {
                let mut a = crate::trace::Attributes::default();
                a.push("model", crate::trace::Any::Str(name));
                a
            },
            events: Vec::new(),
            dropped_events: 0,
            error: None,
        }
    }

    fn names(encoder: &Encoder, spans: Vec<u8>, room: usize) -> Vec<String> {
        let body = encoder.body_in_place(spans, room);
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        request.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    #[test]
    fn batches_hold_at_most_batch_spans_in_order_and_a_full_queue_drops() {
        let pipeline = Pipeline::new(0.0);
        {
            let mut q = pipeline.lock();
            q.open = true;
            q.cap = 4;
            q.batch = 2;
            q.room = Encoder::new("n").head_room();
        }
        for name in ["a", "b", "c", "d", "e"] {
            pipeline.push(&span(name));
        }
        assert_eq!(
            pipeline.dropped.load(Ordering::Relaxed),
            1,
            "the fifth span is over cap"
        );
        let encoder = Encoder::new("n");
        let room = encoder.head_room();
        let wait = Duration::from_millis(1);
        let (first, n) = pipeline.next_batch(2, wait).unwrap();
        assert_eq!(
            (n, names(&encoder, first, room)),
            (2, vec!["a".into(), "b".into()])
        );
        pipeline.push(&span("f"));
        let (second, n) = pipeline.next_batch(2, wait).unwrap();
        assert_eq!(
            (n, names(&encoder, second, room)),
            (2, vec!["c".into(), "d".into()])
        );
        let (third, n) = pipeline.next_batch(2, wait).unwrap();
        assert_eq!((n, names(&encoder, third, room)), (1, vec!["f".into()]));
        pipeline.lock().open = false;
        assert!(pipeline.next_batch(2, wait).is_none(), "closed and empty");
    }
}
