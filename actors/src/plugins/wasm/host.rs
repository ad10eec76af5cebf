//! What a WebAssembly plugin's instance may reach: its memory cap and the two capabilities,
//! `golek.log` (rate-limited) and `golek.clock_ms`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmi::{Caller, Engine, Linker, StoreLimits, StoreLimitsBuilder};

use super::Limits;

/// Log lines a plugin may write a second (and at once, as a burst).
const LOG_PER_S: f64 = 20.0;
const LOG_BURST: f64 = 40.0;
/// The longest log line taken from a plugin.
const LOG_LINE_BYTES: usize = 1024;

pub struct HostState {
    pub limits: StoreLimits,
    log: Arc<LogBudget>,
}

impl HostState {
    pub fn new(limits: &Limits, log: Arc<LogBudget>) -> Self {
        HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .memories(1)
                .tables(4)
                .instances(1)
                .trap_on_grow_failure(true)
                .build(),
            log,
        }
    }
}

/// A token bucket shared by every instance of one plugin.
pub struct LogBudget {
    name: String,
    bucket: Mutex<(f64, Instant)>,
    dropped: AtomicU64,
}

impl LogBudget {
    pub fn new(name: &str) -> Self {
        LogBudget {
            name: name.to_string(),
            bucket: Mutex::new((LOG_BURST, Instant::now())),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, at) = *b;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * LOG_PER_S).min(LOG_BURST);
        if tokens >= 1.0 {
            *b = (tokens - 1.0, now);
            true
        } else {
            *b = (tokens, now);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

fn log(caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let budget = caller.data().log.clone();
    if !budget.take() {
        return;
    }
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return;
    };
    let (Ok(start), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return;
    };
    let data = memory.data(&caller);
    let Some(bytes) = start
        .checked_add(len.min(LOG_LINE_BYTES))
        .and_then(|end| data.get(start..end))
    else {
        return;
    };
    let line = String::from_utf8_lossy(bytes);
    let plugin = budget.name.as_str();
    match level {
        0 => tracing::error!(target: "golek::plugin", plugin, "{line}"),
        1 => tracing::warn!(target: "golek::plugin", plugin, "{line}"),
        2 => tracing::info!(target: "golek::plugin", plugin, "{line}"),
        3 => tracing::debug!(target: "golek::plugin", plugin, "{line}"),
        _ => tracing::trace!(target: "golek::plugin", plugin, "{line}"),
    }
}

fn clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// The imports a plugin with `limits` may have (the others are refused at load).
pub fn linker(engine: &Engine, limits: &Limits) -> Linker<HostState> {
    let mut linker = Linker::new(engine);
    if limits.log {
        let _ = linker.func_wrap("golek", "log", log);
    }
    if limits.clock {
        let _ = linker.func_wrap("golek", "clock_ms", clock_ms);
    }
    linker
}
