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

/// Finished spans waiting for the export thread.
#[derive(Debug, Default)]
struct Queue {
    spans: Vec<SpanRecord>,
    /// An exporter runs (else spans are dropped).
    open: bool,
    cap: usize,
    batch: usize,
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
    pub fn push(&self, span: SpanRecord) {
        let mut q = self.lock();
        if !q.open || q.spans.len() >= q.cap {
            drop(q);
            self.drop_span();
            return;
        }
        q.spans.push(span);
        if q.spans.len() == q.batch {
            self.ready.notify_one();
        }
    }

    /// The next batch: up to `batch` spans, once that many wait or `interval` has passed;
    /// `None` once the queue is closed and empty.
    fn next_batch(&self, batch: usize, interval: Duration) -> Option<Vec<SpanRecord>> {
        let deadline = Instant::now() + interval;
        let mut q = self.lock();
        while q.open && q.spans.len() < batch {
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
        if !q.open && q.spans.is_empty() {
            return None;
        }
        let n = q.spans.len().min(batch);
        Some(q.spans.drain(..n).collect())
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

/// Sends one encoded batch; the error says what went wrong.
fn post(client: &reqwest::blocking::Client, endpoint: &str, body: Vec<u8>) -> Result<(), String> {
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
    pipeline: &Pipeline,
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
            while let Some(batch) = pipeline.next_batch(batch_size, interval) {
                for _ in batch {
                    pipeline.drop_span();
                }
            }
            return;
        }
    };
    tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    let mut last_error: Option<Instant> = None;
    while let Some(batch) = pipeline.next_batch(batch_size, interval) {
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        match post(&client, endpoint, encoder.encode(batch)) {
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
