//! The bounded queue in front of a provider's worker thread: the model's bulkhead.
//!
//! The async side submits with [`JobSender::try_submit`], which never blocks: a full queue is
//! answered "overloaded" at once. The worker side pulls single jobs or dynamic batches (jobs that
//! arrive within `max_queue_delay`, up to `max_batch_rows` rows).
//!
//! The batching window is only waited for under load: when the previous batch held one row and
//! nothing else is queued, a lone request runs at once instead of paying the window.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use golek_protocol::inference::{InferenceEvent, InferenceRequest};
use golek_protocol::ErrorInfo;

use crate::fair::FairLines;
pub use crate::faults::Faults;
use crate::heartbeat::Heartbeat;
use crate::metrics as m;
pub use crate::outcome::OutcomeHook;

/// Where a provider sends a job's events. The stream ends when the sender is dropped.
pub type EventTx = tokio::sync::mpsc::UnboundedSender<Result<InferenceEvent, ErrorInfo>>;

/// One request waiting for, or running on, a worker.
#[derive(Debug)]
pub struct Job {
    pub request: InferenceRequest,
    pub events: EventTx,
    pub enqueued_at: Instant,
    /// Past this instant nobody waits for the answer any more.
    pub deadline: Instant,
    /// Told how the job ended (`OutcomeHook::default()` tells no one).
    pub outcome: OutcomeHook,
    /// The tenant it is for: the queue serves its tenants in turn.
    pub tenant: Option<std::sync::Arc<str>>,
    /// The request's span: the work done for it on the worker is inside the request's trace.
    pub span: tracing::Span,
    /// Open while the job waits in the queue (closed when a worker takes it).
    pub queued: Option<tracing::Span>,
}

impl Job {
    /// A span of the work done for this job (`prefill`, `decode`, `batch`, `upstream`), a child of the
    /// request's span; it ends when dropped.
    pub fn work_span(&self, name: &'static str) -> tracing::Span {
        // Created inside the request's span (not only with it as parent): whether a span is
        // traced follows the span current where it is made.
        let _inside = self.span.enter();
        match name {
            "prefill" => tracing::info_span!(parent: &self.span, "prefill"),
            "decode" => tracing::info_span!(parent: &self.span, "decode"),
            "upstream" => tracing::info_span!(parent: &self.span, "upstream"),
            _ => tracing::info_span!(parent: &self.span, "batch"),
        }
    }

    /// True when the client is gone or the deadline passed: the job need not run.
    pub fn is_abandoned(&self) -> bool {
        self.events.is_closed() || Instant::now() >= self.deadline
    }

    /// Drops an abandoned job; one whose deadline passed while its client still waits gets a
    /// timeout (504) saying it never ran, rather than a stream that just ends.
    pub fn expire(self) {
        self.outcome.disarm();
        if !self.events.is_closed() {
            self.emit(Err(ErrorInfo::new(
                golek_protocol::ErrorCode::Timeout,
                "the request waited past its deadline in the model's queue and was not run",
            )));
        }
    }

    /// Sends one event; a closed receiver is not an error (the client left).
    pub fn emit(&self, event: Result<InferenceEvent, ErrorInfo>) {
        self.outcome.see(&event);
        let _ = self.events.send(event);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the model's queue is full")]
    Full,
    #[error("the model's worker is not running")]
    Closed,
}

struct Shared {
    model: String,
    depth: AtomicUsize,
    /// The cap on `depth`; changes at run time ([`JobSender::set_limits`]).
    capacity: AtomicUsize,
    /// The batching window in microseconds; changes at run time.
    max_delay_us: AtomicU64,
    heartbeat: Heartbeat,
}

/// The submitting side; cheap to clone.
#[derive(Clone)]
pub struct JobSender {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl JobSender {
    pub fn try_submit(&self, job: Job) -> Result<(), SubmitError> {
        // Count first so the worker never sees depth underflow. Jobs the worker took off the
        // channel into its tenants' lines still count: the depth, not the channel, is the cap.
        // The channel itself is unbounded so that the cap can change while jobs wait.
        if self.shared.depth.fetch_add(1, Ordering::SeqCst) >= self.capacity().max(1) {
            self.shared.depth.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Full);
        }
        match self.tx.send(job) {
            Ok(()) => Ok(()),
            Err(SendError(_)) => {
                self.shared.depth.fetch_sub(1, Ordering::SeqCst);
                Err(SubmitError::Closed)
            }
        }
    }

    /// A new queue capacity and batching window, applied at once: jobs already queued beyond a
    /// smaller capacity still run; new ones are refused until the queue is under it.
    pub fn set_limits(&self, capacity: usize, max_delay: Duration) {
        self.shared.capacity.store(capacity, Ordering::SeqCst);
        self.shared
            .max_delay_us
            .store(micros(max_delay), Ordering::SeqCst);
    }

    /// Jobs waiting for the worker.
    /// Nothing queued and nothing in the worker's hands.
    pub fn is_idle(&self) -> bool {
        self.depth() == 0 && !self.shared.heartbeat.busy.load(Ordering::SeqCst)
    }

    pub fn depth(&self) -> usize {
        self.shared.depth.load(Ordering::SeqCst)
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity.load(Ordering::SeqCst)
    }

    /// How long the worker has held work without coming back to its queue; `None` while it
    /// waits for work.
    pub fn stalled_for(&self) -> Option<Duration> {
        self.shared.heartbeat.stalled_for()
    }
}

/// What [`JobQueue::next_within`] found.
#[derive(Debug)]
// A job moves by value once per pull; boxing it would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Waited {
    Job(Job),
    /// Nothing arrived in time.
    Idle,
    /// Every sender is gone.
    Closed,
}

/// The worker's side of the queue.
pub struct JobQueue {
    rx: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    faults: Arc<Faults>,
    max_batch_rows: usize,
    /// A job taken while filling a batch that did not fit; it opens the next batch.
    held: RefCell<Option<Job>>,
    /// Jobs off the channel, one line per tenant, taken in turn (still counted in the depth).
    lines: RefCell<FairLines>,
    /// Rows in the previous batch: a sign of whether other requests are arriving.
    last_batch_rows: Cell<usize>,
}

/// Makes a queue of `capacity` jobs for `model`.
pub fn job_queue(
    model: &str,
    capacity: usize,
    max_batch_rows: usize,
    max_delay: Duration,
    faults: Arc<Faults>,
) -> (JobSender, JobQueue) {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        model: model.to_string(),
        depth: AtomicUsize::new(0),
        capacity: AtomicUsize::new(capacity),
        max_delay_us: AtomicU64::new(micros(max_delay)),
        heartbeat: Heartbeat::new(),
    });
    (
        JobSender {
            tx,
            shared: shared.clone(),
        },
        JobQueue {
            rx,
            shared,
            faults,
            max_batch_rows: max_batch_rows.max(1),
            held: RefCell::new(None),
            lines: RefCell::new(FairLines::default()),
            last_batch_rows: Cell::new(0),
        },
    )
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl JobQueue {
    pub fn model(&self) -> &str {
        &self.shared.model
    }

    /// The batching window as it is now.
    pub fn max_delay(&self) -> Duration {
        Duration::from_micros(self.shared.max_delay_us.load(Ordering::SeqCst))
    }

    pub fn max_batch_rows(&self) -> usize {
        self.max_batch_rows
    }

    fn taken(&self, job: Job) -> Job {
        self.shared.depth.fetch_sub(1, Ordering::SeqCst);
        self.took(job)
    }

    /// A job goes to the worker: it now holds work; an armed hang blocks it here.
    fn took(&self, mut job: Job) -> Job {
        // Its wait in the queue ends here.
        job.queued = None;
        self.shared.heartbeat.beat(true);
        if let Some(hang) = self.faults.take_hang() {
            tracing::warn!(model = %self.shared.model, hang_ms = hang.as_millis() as u64, "fault injection: worker hangs");
            std::thread::sleep(hang);
        }
        job
    }

    /// The worker is between jobs (or looking for more while it works): a heartbeat. Called
    /// by every pull, and by providers that loop without pulling (each decode step).
    pub fn beat(&self) {
        let busy = self.shared.heartbeat.busy.load(Ordering::SeqCst);
        self.shared.heartbeat.beat(busy);
    }

    /// The worker holds no work any more (it finished what it had).
    pub fn idle(&self) {
        self.shared.heartbeat.beat(false);
    }

    /// The held job, else the next tenant's turn among the jobs already sent (all of them are
    /// moved off the channel into their lines first).
    fn ready(&self) -> Option<Job> {
        if let Some(job) = self.held.borrow_mut().take() {
            return Some(self.took(job));
        }
        let mut lines = self.lines.borrow_mut();
        while let Ok(job) = self.rx.try_recv() {
            lines.push(job);
        }
        lines.pop().map(|j| self.taken(j))
    }

    /// Puts a job that was just received into its line and takes the next turn.
    fn arrived(&self, job: Job) -> Job {
        let mut lines = self.lines.borrow_mut();
        lines.push(job);
        while let Ok(job) = self.rx.try_recv() {
            lines.push(job);
        }
        let next = lines.pop().expect("a job was just put in a line");
        self.taken(next)
    }

    /// Blocks for the next job; `None` once every sender is gone.
    pub fn next(&self) -> Option<Job> {
        self.faults.trip("worker");
        if let Some(job) = self.ready() {
            return Some(job);
        }
        self.idle();
        self.rx.recv().ok().map(|j| self.arrived(j))
    }

    /// Waits up to `wait` for a job.
    pub fn next_within(&self, wait: Duration) -> Waited {
        self.faults.trip("worker");
        if let Some(job) = self.ready() {
            return Waited::Job(job);
        }
        self.idle();
        match self.rx.recv_timeout(wait) {
            Ok(job) => Waited::Job(self.arrived(job)),
            Err(RecvTimeoutError::Timeout) => Waited::Idle,
            Err(RecvTimeoutError::Disconnected) => Waited::Closed,
        }
    }

    /// The next job if one is waiting, without blocking.
    pub fn try_next(&self) -> Option<Job> {
        self.beat();
        self.ready()
    }

    /// Blocks for a job, then gathers more for up to `max_delay` until the batch holds
    /// `max_batch_rows` rows. Abandoned jobs are dropped on the way. `None` once the queue is
    /// closed and drained.
    pub fn next_batch(&self) -> Option<Vec<Job>> {
        loop {
            let first = self.next()?;
            if first.is_abandoned() {
                first.expire();
                continue;
            }
            let mut rows = first.request.batch_rows();
            let mut batch = vec![first];
            let until = Instant::now() + self.max_delay();
            let wait_for_more = self.last_batch_rows.get() > 1;
            while rows < self.max_batch_rows {
                let next = match self.try_next() {
                    Some(job) => job,
                    None if !wait_for_more => break,
                    None => {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match self.rx.recv_timeout(left) {
                            Ok(job) => self.arrived(job),
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                };
                if next.is_abandoned() {
                    next.expire();
                    continue;
                }
                let next_rows = next.request.batch_rows();
                if rows + next_rows > self.max_batch_rows {
                    *self.held.borrow_mut() = Some(next);
                    break;
                }
                rows += next_rows;
                batch.push(next);
            }
            let now = Instant::now();
            for job in &batch {
                metrics::histogram!(m::QUEUE_WAIT_SECONDS, "model" => self.shared.model.clone())
                    .record(now.duration_since(job.enqueued_at).as_secs_f64());
            }
            metrics::histogram!(m::BATCH_SIZE, "model" => self.shared.model.clone())
                .record(rows as f64);
            self.last_batch_rows.set(rows);
            return Some(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::inference::{EmbeddingInput, EmbeddingsRequest};

    fn job(
        rows: usize,
    ) -> (
        Job,
        tokio::sync::mpsc::UnboundedReceiver<Result<InferenceEvent, ErrorInfo>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let request = InferenceRequest::Embeddings(EmbeddingsRequest {
            inputs: vec![EmbeddingInput::Text("x".into()); rows],
        });
        let now = Instant::now();
        (
            Job {
                request,
                events: tx,
                enqueued_at: now,
                deadline: now + Duration::from_secs(60),
                outcome: OutcomeHook::default(),
                tenant: None,
                span: tracing::Span::none(),
                queued: None,
            },
            rx,
        )
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_depth_is_counted() {
        let (tx, q) = job_queue("m", 2, 8, Duration::ZERO, Default::default());
        let (a, _ra) = job(1);
        let (b, _rb) = job(1);
        let (c, _rc) = job(1);
        tx.try_submit(a).unwrap();
        tx.try_submit(b).unwrap();
        assert_eq!(tx.try_submit(c).unwrap_err(), SubmitError::Full);
        assert_eq!(tx.depth(), 2);
        assert!(q.next().is_some());
        assert_eq!(tx.depth(), 1);
        // A larger cap applies at once; a smaller one keeps what waits and refuses new jobs.
        tx.set_limits(3, Duration::ZERO);
        let (e, _re) = job(1);
        let (f, _rf) = job(1);
        tx.try_submit(e).unwrap();
        tx.try_submit(f).unwrap();
        tx.set_limits(1, Duration::ZERO);
        let (g, _rg) = job(1);
        assert_eq!(tx.try_submit(g).unwrap_err(), SubmitError::Full);
        assert_eq!(tx.depth(), 3);
        tx.set_limits(8, Duration::ZERO);
        drop(q);
        let (d, _rd) = job(1);
        assert_eq!(tx.try_submit(d).unwrap_err(), SubmitError::Closed);
    }

    #[test]
    fn batches_fill_up_to_max_rows_and_keep_the_overflow_for_the_next() {
        let (tx, q) = job_queue("m", 16, 4, Duration::from_millis(50), Default::default());
        let mut keep = Vec::new();
        for rows in [2, 1, 3, 1] {
            let (j, r) = job(rows);
            keep.push(r);
            tx.try_submit(j).unwrap();
        }
        let first = q.next_batch().unwrap();
        assert_eq!(
            first
                .iter()
                .map(|j| j.request.batch_rows())
                .collect::<Vec<_>>(),
            vec![2, 1]
        );
        let second = q.next_batch().unwrap();
        assert_eq!(
            second
                .iter()
                .map(|j| j.request.batch_rows())
                .collect::<Vec<_>>(),
            vec![3, 1]
        );
        drop(tx);
        assert!(q.next_batch().is_none());
    }

    #[test]
    fn a_lone_request_does_not_wait_for_the_window_but_a_busy_queue_does() {
        let (tx, q) = job_queue("m", 16, 8, Duration::from_millis(600), Default::default());
        let (a, _ra) = job(1);
        tx.try_submit(a).unwrap();
        let started = Instant::now();
        assert_eq!(q.next_batch().unwrap().len(), 1);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "no window after a lone batch"
        );
        // Two queued: they batch; the next batch then waits for its window to fill.
        let (b, _rb) = job(1);
        let (c, _rc) = job(1);
        tx.try_submit(b).unwrap();
        tx.try_submit(c).unwrap();
        assert_eq!(q.next_batch().unwrap().len(), 2);
        let sender = tx.clone();
        let late = std::thread::spawn(move || {
            let (d, rd) = job(1);
            let (e, re) = job(1);
            sender.try_submit(d).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            sender.try_submit(e).unwrap();
            (rd, re)
        });
        assert_eq!(
            q.next_batch().unwrap().len(),
            2,
            "the window caught the late job"
        );
        let _keep = late.join().unwrap();
    }

    #[test]
    fn abandoned_jobs_are_skipped() {
        let (tx, q) = job_queue("m", 4, 4, Duration::ZERO, Default::default());
        let (gone, rx_gone) = job(1);
        drop(rx_gone);
        let (live, _rx_live) = job(1);
        tx.try_submit(gone).unwrap();
        tx.try_submit(live).unwrap();
        let batch = q.next_batch().unwrap();
        assert_eq!(batch.len(), 1);
        assert!(!batch[0].is_abandoned());
    }

    #[test]
    fn a_job_past_its_deadline_is_not_run_and_its_client_hears_why() {
        let (tx, q) = job_queue("m", 4, 4, Duration::ZERO, Arc::new(Faults::default()));
        let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let past = Instant::now() - Duration::from_millis(1);
        tx.try_submit(Job {
            request: job(1).0.request,
            events,
            enqueued_at: past,
            deadline: past,
            outcome: OutcomeHook::default(),
            tenant: None,
            span: tracing::Span::none(),
            queued: None,
        })
        .unwrap();
        let (fresh, _fresh_rx) = job(1);
        tx.try_submit(fresh).unwrap();
        let batch = q.next_batch().unwrap();
        assert_eq!(batch.len(), 1, "only the job within its deadline runs");
        let answer = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(answer.code, golek_protocol::ErrorCode::Timeout);
        assert!(rx.try_recv().is_err(), "and nothing else");
    }

    #[test]
    #[should_panic(expected = "fault injection")]
    fn an_injected_fault_panics_the_worker() {
        let faults = Arc::new(Faults::default());
        let (_tx, q) = job_queue("m", 4, 4, Duration::ZERO, faults.clone());
        faults.crash_next_batch();
        q.next_batch();
    }
}
