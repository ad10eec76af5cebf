//! What the remote providers share: the runtime their requests run on (the node's), a pooled
//! HTTP client, and a loop that runs queued jobs concurrently up to a limit.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use golek_config::RemoteConnection;

use crate::queue::{Job, JobQueue, Waited};
use crate::{ProviderError, Result};

/// The header a request's remaining deadline travels in, in milliseconds (to a remote Golek it
/// is the client's deadline; any other server ignores it).
pub const TIMEOUT_HEADER: &str = "x-golek-timeout-ms";

/// `request` bounded by what remains of the job's deadline: the remote call times out with
/// it, and the remaining milliseconds travel in `x-golek-timeout-ms`.
pub fn within_deadline(request: reqwest::RequestBuilder, job: &Job) -> reqwest::RequestBuilder {
    let left = job
        .deadline
        .saturating_duration_since(std::time::Instant::now())
        .max(Duration::from_millis(1));
    request
        .timeout(left)
        .header(TIMEOUT_HEADER, left.as_millis().to_string())
}

/// Where a remote deployment's requests run.
pub enum Rt {
    /// The node's own runtime: the worker thread runs inside it (the provider actor enters it),
    /// so upstream I/O, the client's events and the HTTP answer share its threads, with no
    /// runtime or OS thread per deployment. The bulkhead is the semaphore in
    /// [`serve_concurrently`].
    Shared(tokio::runtime::Handle),
    /// A one-worker runtime of the deployment's own, for a provider used outside a node's
    /// runtime (its unit tests, a program that drives providers on plain threads) or inside a
    /// current-thread runtime (which only its own thread drives).
    Own(tokio::runtime::Runtime),
}

impl Rt {
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self {
            Rt::Shared(handle) => handle.block_on(future),
            Rt::Own(runtime) => runtime.block_on(future),
        }
    }

    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Rt::Shared(handle) => handle.spawn(future),
            Rt::Own(runtime) => runtime.spawn(future),
        }
    }
}

/// The runtime for the requests of one remote deployment: the node's when this thread runs
/// inside a multi-thread runtime, else a one-worker runtime of its own.
pub fn runtime(name: &str) -> Result<Rt> {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return Ok(Rt::Shared(handle));
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("golek-remote-{name}"))
        .enable_all()
        .build()
        .map(Rt::Own)
        .map_err(|e| ProviderError::Load(format!("cannot start the remote runtime: {e}")))
}

/// A keep-alive client with the deployment's timeouts and TLS options. A missing or unreadable
/// CA, certificate or key file fails the load with the file named.
pub fn client(connection: &RemoteConnection) -> Result<reqwest::Client> {
    let tls = &connection.tls;
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            ProviderError::Load(format!(
                "cannot read the TLS {what} {}: {e}",
                path.display()
            ))
        })
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(connection.timeout)
        .connect_timeout(connection.connect_timeout)
        .pool_max_idle_per_host(connection.max_in_flight as usize);
    if let Some(path) = &tls.ca_path {
        let certs = reqwest::Certificate::from_pem_bundle(&read("CA file", path)?)
            .map_err(|e| ProviderError::Load(format!("{} is not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ProviderError::Load(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert_path, &tls.client_key_path) {
        let mut pem = read("client certificate", cert)?;
        pem.push(b'\n');
        pem.extend(read("client key", key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            ProviderError::Load(format!(
                "{} and {} are not a PEM certificate and key: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        builder = builder.identity(identity);
    }
    if tls.insecure_skip_verify {
        tracing::warn!("TLS verification of the remote is off (tls_insecure_skip_verify)");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| ProviderError::Load(format!("cannot build the HTTP client: {e}")))
}

/// An HTTP error with its causes ("error sending request: ...: invalid peer certificate:
/// UnknownIssuer"), so that a TLS or connection failure says what went wrong.
pub fn why(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
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
    runtime: &Rt,
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
    runtime: &Rt,
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
            job.expire();
            continue;
        }
        let permit = runtime
            .block_on(permits.clone().acquire_owned())
            .map_err(|e| ProviderError::Inference(e.to_string()))?;
        let work = job.work_span("upstream");
        let running = task(job);
        runtime.spawn(tracing::Instrument::instrument(
            async move {
                running.await;
                drop(permit);
            },
            work,
        ));
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
