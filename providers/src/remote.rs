//! What the remote providers share: a small runtime on the worker thread, a pooled HTTP client,
//! and a loop that runs queued jobs concurrently up to a limit.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::queue::{Job, JobQueue, Waited};
use crate::{ProviderError, Result};

/// A one-worker runtime for the requests of one remote deployment.
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("golek-remote-{name}"))
        .enable_all()
        .build()
        .map_err(|e| ProviderError::Load(format!("cannot start the remote runtime: {e}")))
}

/// A keep-alive client with the deployment's timeouts.
pub fn client(
    timeout: Duration,
    connect_timeout: Duration,
    pool: usize,
) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .pool_max_idle_per_host(pool)
        .build()
        .map_err(|e| ProviderError::Load(format!("cannot build the HTTP client: {e}")))
}

/// How often a remote is probed while serving, and how many failed probes in a row mean it
/// is down.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
pub const PROBE_FAILURES: u32 = 3;

/// What a remote's health probe calls: GET `url` (2xx = up), with a bearer token if any.
pub struct Probe {
    pub client: reqwest::Client,
    pub url: String,
    pub auth: Option<String>,
}

/// Probes every [`PROBE_INTERVAL`]; after [`PROBE_FAILURES`] failures in a row, sets `down` and
/// stops.
fn spawn_probe(
    runtime: &tokio::runtime::Runtime,
    Probe { client, url, auth }: Probe,
    down: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    runtime.spawn(async move {
        let mut failures = 0;
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let mut request = client.get(&url);
            if let Some(key) = &auth {
                request = request.bearer_auth(key);
            }
            let up = matches!(request.send().await, Ok(r) if r.status().is_success());
            failures = if up { 0 } else { failures + 1 };
            if failures >= PROBE_FAILURES {
                down.store(true, Ordering::SeqCst);
                return;
            }
        }
    })
}

/// Takes jobs from the queue and runs `task` for each, at most `max_in_flight` at once; when
/// the queue closes, waits for the ones in flight. When the health probe marks the remote
/// down, the worker fails: its supervisor restarts it with backoff (a load that checks the
/// remote again) and opens the breaker if the remote stays down, so clients get a 503 at once
/// instead of each waiting on a dead connection.
pub fn serve_concurrently<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    max_in_flight: usize,
    queue: &JobQueue,
    probe: Probe,
    mut task: F,
) -> Result<()>
where
    F: FnMut(Job) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let down = Arc::new(AtomicBool::new(false));
    let _stop_probe = AbortOnDrop(spawn_probe(runtime, probe, down.clone()));
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    loop {
        if down.load(Ordering::SeqCst) {
            return Err(ProviderError::Inference(format!(
                "the remote failed {PROBE_FAILURES} health probes in a row"
            )));
        }
        let job = match queue.next_within(PROBE_INTERVAL) {
            Waited::Job(job) => job,
            Waited::Idle => continue,
            Waited::Closed => break,
        };
        if job.is_abandoned() {
            continue;
        }
        let permit = runtime
            .block_on(permits.clone().acquire_owned())
            .map_err(|e| ProviderError::Inference(e.to_string()))?;
        let running = task(job);
        runtime.spawn(async move {
            running.await;
            drop(permit);
        });
    }
    let _ = runtime.block_on(permits.acquire_many(max_in_flight as u32));
    Ok(())
}

/// Aborts a background task when dropped (the probe ends with its worker's `serve`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
