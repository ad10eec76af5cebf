//! What the remote providers share: a small runtime on the worker thread, a pooled HTTP client,
//! and a loop that runs queued jobs concurrently up to a limit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::queue::{Job, JobQueue};
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

/// Takes jobs from the queue and runs `task` for each, at most `max_in_flight` at once; when
/// the queue closes, waits for the ones in flight.
pub fn serve_concurrently<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    max_in_flight: usize,
    queue: &JobQueue,
    mut task: F,
) -> Result<()>
where
    F: FnMut(Job) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    while let Some(job) = queue.next() {
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
