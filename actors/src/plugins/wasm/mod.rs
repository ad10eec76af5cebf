//! WebAssembly plugins on `wasmi`: core modules that exchange JSON in their own memory.
//!
//! The ABI (version [`super::PLUGIN_API_VERSION`]), for plain C or WAT:
//!
//! - exports `memory`, `alloc(len: i32) -> i32` and `manifest() -> i64`;
//! - one export per hook it implements, `on_request`, `on_route`, `on_response`, `on_chunk`,
//!   `on_event`, each `(ptr: i32, len: i32) -> i64`;
//! - optionally `init(ptr: i32, len: i32) -> i32`, called once on each new instance with the
//!   plugin's configuration (the keys of its `[plugins.NAME]` table, a JSON object); not 0 fails
//!   the plugin's start.
//!
//! For each call the host calls `alloc` once with the input's length, writes the input JSON
//! there, then calls the hook with that pointer and length (a guest may reset its heap in
//! `alloc`: nothing is kept between calls). A hook returns 0 for "no change", or
//! `(ptr << 32) | len` of its answer JSON in its memory. `manifest` returns the same packing.
//!
//! Imports, each only when granted by `capabilities` in the plugin's table:
//! `golek.log(level: i32, ptr: i32, len: i32)` (0 error .. 4 trace; rate-limited) and
//! `golek.clock_ms() -> i64` (milliseconds since the Unix epoch). Nothing else: no files,
//! network or randomness.
//!
//! Each call runs under a fuel budget, a wall-clock limit (checked each fuel slice) and a
//! memory cap (growing past it traps). An instance that failed in any way is dropped.

mod host;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmi::{Engine, Instance, Memory, Module, Store, TypedFunc, TypedResumableCall};

use super::{
    ChunkCall, Hook, Manifest, NodeEvent, Plugin, RequestCall, ResponseCall, ResponseEdit,
    RouteAdvice, RouteCall, Verdict,
};
use host::HostState;

/// Fuel given at a time: the wall clock is checked between slices.
const FUEL_SLICE: u64 = 1_000_000;
/// Instances kept for reuse per plugin.
const POOL: usize = 16;
/// The largest module file taken.
pub const MAX_MODULE_BYTES: usize = 16 << 20;

/// What a plugin may use and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Fuel per call (about one unit per instruction).
    pub fuel: u64,
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub log: bool,
    pub clock: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 100_000_000,
            memory_bytes: 32 << 20,
            timeout: Duration::from_millis(100),
            log: false,
            clock: false,
        }
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmi::Config::default();
        config.consume_fuel(true);
        Engine::new(&config)
    })
}

/// One live instance and its exports.
struct Live {
    store: Store<HostState>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
}

/// A compiled plugin module: checked, with its manifest read.
pub struct WasmPlugin {
    name: String,
    module: Module,
    limits: Limits,
    /// The configuration `init` gets, as JSON.
    config: Vec<u8>,
    hooks: BTreeSet<Hook>,
    has_init: bool,
    pool: Mutex<Vec<Live>>,
    instances: AtomicU64,
    log: Arc<host::LogBudget>,
}

impl WasmPlugin {
    /// Compiles and checks `bytes` (its imports, exports and manifest); `name` is what the
    /// file is called, and the manifest must say the same.
    pub fn load(
        name: &str,
        bytes: &[u8],
        limits: Limits,
        config: &Value,
    ) -> Result<(Self, Manifest), String> {
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(format!(
                "the module is {} bytes, over the limit of {MAX_MODULE_BYTES}",
                bytes.len()
            ));
        }
        let module = Module::new(engine(), bytes)
            .map_err(|e| format!("not a valid WebAssembly module: {e}"))?;
        for import in module.imports() {
            let what = format!("{}.{}", import.module(), import.name());
            let granted = match what.as_str() {
                "golek.log" => limits.log,
                "golek.clock_ms" => limits.clock,
                _ => {
                    return Err(format!(
                        "it imports {what}, which this node does not provide (only golek.log and golek.clock_ms)"
                    ))
                }
            };
            if !granted {
                let cap = import.name().trim_end_matches("_ms");
                return Err(format!(
                    "it imports {what}: grant it with capabilities = [\"{cap}\"] in [plugins.{name}]"
                ));
            }
        }
        let exports: BTreeSet<String> = module.exports().map(|e| e.name().to_string()).collect();
        for needed in ["memory", "alloc", "manifest"] {
            if !exports.contains(needed) {
                return Err(format!(
                    "it does not export {needed:?} (see the plugin ABI)"
                ));
            }
        }
        let mut plugin = WasmPlugin {
            name: name.to_string(),
            module,
            limits,
            config: serde_json::to_vec(config).unwrap_or_else(|_| b"{}".to_vec()),
            hooks: BTreeSet::new(),
            has_init: exports.contains("init"),
            pool: Mutex::new(Vec::new()),
            instances: AtomicU64::new(0),
            log: Arc::new(host::LogBudget::new(name)),
        };
        // The manifest comes from an instance that has not been initialised.
        let mut live = plugin.instantiate(false)?;
        let out = plugin.run(&mut live, "manifest", None)?;
        let raw = out.ok_or("its manifest() returned nothing")?;
        let manifest: Manifest =
            serde_json::from_slice(&raw).map_err(|e| format!("its manifest is not valid: {e}"))?;
        manifest.check()?;
        if manifest.name != name {
            return Err(format!(
                "the file is named {name:?} and its manifest names {:?}: they must match",
                manifest.name
            ));
        }
        for hook in &manifest.hooks {
            if !exports.contains(hook.name()) {
                return Err(format!(
                    "its manifest lists {} and it does not export it",
                    hook.name()
                ));
            }
        }
        plugin.hooks = manifest.hooks.iter().copied().collect();
        Ok((plugin, manifest))
    }

    /// Makes (and initialises) one instance now, so a bad configuration or a trapping `init`
    /// fails the plugin's start rather than its first request.
    pub fn warm(&self) -> Result<(), String> {
        let live = self.instantiate(true)?;
        self.give_back(live);
        Ok(())
    }

    fn instantiate(&self, init: bool) -> Result<Live, String> {
        let state = HostState::new(&self.limits, self.log.clone());
        let mut store = Store::new(engine(), state);
        store.limiter(|s| &mut s.limits);
        let linker = host::linker(engine(), &self.limits);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| e.to_string())?;
        let instance: Instance = linker
            .instantiate_and_start(&mut store, &self.module)
            .map_err(|e| format!("cannot instantiate it: {e}"))?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or("its \"memory\" export is not a memory")?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&store, "alloc")
            .map_err(|e| format!("its alloc export has the wrong type: {e}"))?;
        self.instances.fetch_add(1, Ordering::Relaxed);
        let mut live = Live {
            store,
            instance,
            memory,
            alloc,
        };
        if init && self.has_init {
            let f = instance
                .get_typed_func::<(i32, i32), i32>(&live.store, "init")
                .map_err(|e| format!("its init export has the wrong type: {e}"))?;
            let (ptr, len) = self.write_input(&mut live, &self.config.clone())?;
            let code = self.resumable(&mut live, &f, (ptr, len))?;
            if code != 0 {
                return Err(format!(
                    "its init returned {code}: the configuration was refused"
                ));
            }
        }
        Ok(live)
    }

    fn give_back(&self, live: Live) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL {
            pool.push(live);
        }
    }

    fn take(&self) -> Result<Live, String> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(live) => Ok(live),
            None => self.instantiate(true),
        }
    }

    /// Writes `input` where the guest's `alloc` says.
    fn write_input(&self, live: &mut Live, input: &[u8]) -> Result<(i32, i32), String> {
        let len = i32::try_from(input.len()).map_err(|_| "the input is too large".to_string())?;
        let alloc = live.alloc;
        let ptr = self.resumable(live, &alloc, len)?;
        let start = usize::try_from(ptr).map_err(|_| format!("alloc returned {ptr}"))?;
        live.memory
            .write(&mut live.store, start, input)
            .map_err(|_| format!("alloc returned {ptr}, which cannot hold {len} bytes"))?;
        Ok((ptr, len))
    }

    /// Runs a function under the fuel and time limits, fuel slice by slice.
    fn resumable<P, R>(&self, live: &mut Live, f: &TypedFunc<P, R>, params: P) -> Result<R, String>
    where
        P: wasmi::WasmParams,
        R: wasmi::WasmResults,
    {
        let began = Instant::now();
        let mut left = self.limits.fuel;
        let slice = FUEL_SLICE.min(left);
        left -= slice;
        live.store.set_fuel(slice).map_err(|e| e.to_string())?;
        let mut call = f.call_resumable(&mut live.store, params).map_err(trap)?;
        loop {
            match call {
                TypedResumableCall::Finished(r) => return Ok(r),
                TypedResumableCall::HostTrap(t) => return Err(trap(t.host_error().to_string())),
                TypedResumableCall::OutOfFuel(more) => {
                    if left == 0 {
                        return Err(format!(
                            "it ran out of fuel ({} units for one call)",
                            self.limits.fuel
                        ));
                    }
                    if began.elapsed() > self.limits.timeout {
                        return Err(format!(
                            "it ran past its time limit ({} ms for one call)",
                            self.limits.timeout.as_millis()
                        ));
                    }
                    let slice = FUEL_SLICE.min(left);
                    left -= slice;
                    live.store.set_fuel(slice).map_err(|e| e.to_string())?;
                    call = more.resume(&mut live.store).map_err(trap)?;
                }
            }
        }
    }

    /// Calls export `name` with `input` (none for `manifest`); the answer's bytes, if any.
    fn run(
        &self,
        live: &mut Live,
        name: &str,
        input: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, String> {
        let instance = live.instance;
        let packed = match input {
            None => {
                let f = instance
                    .get_typed_func::<(), i64>(&live.store, name)
                    .map_err(|e| format!("its {name} export has the wrong type: {e}"))?;
                self.resumable(live, &f, ())?
            }
            Some(input) => {
                let f = instance
                    .get_typed_func::<(i32, i32), i64>(&live.store, name)
                    .map_err(|e| format!("its {name} export has the wrong type: {e}"))?;
                let (ptr, len) = self.write_input(live, input)?;
                self.resumable(live, &f, (ptr, len))?
            }
        };
        if packed == 0 {
            return Ok(None);
        }
        let ptr = (packed as u64 >> 32) as usize;
        let len = (packed as u64 & 0xffff_ffff) as usize;
        let end = ptr
            .checked_add(len)
            .filter(|&e| e <= live.memory.data_size(&live.store))
            .ok_or_else(|| format!("{name} returned {len} bytes at {ptr}, outside its memory"))?;
        Ok(Some(live.memory.data(&live.store)[ptr..end].to_vec()))
    }

    /// One hook call: an instance from the pool (or a new one), the input JSON in, the answer
    /// out; an instance that failed is dropped.
    fn call(&self, hook: Hook, input: &impl serde::Serialize) -> Result<Option<Value>, String> {
        let input = serde_json::to_vec(input).map_err(|e| e.to_string())?;
        let mut live = self.take()?;
        match self.run(&mut live, hook.name(), Some(&input)) {
            Ok(out) => {
                self.give_back(live);
                match out {
                    None => Ok(None),
                    Some(bytes) => serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|e| format!("its {} answer is not JSON: {e}", hook.name())),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn answer<T: serde::de::DeserializeOwned + Default>(
        &self,
        hook: Hook,
        input: &impl serde::Serialize,
    ) -> Result<T, String> {
        match self.call(hook, input)? {
            None => Ok(T::default()),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| format!("its {} answer does not fit: {e}", hook.name())),
        }
    }
}

fn trap(e: impl std::fmt::Display) -> String {
    let e = e.to_string();
    if e.contains("grow") || e.contains("limit") {
        format!("it went over its memory limit ({e})")
    } else {
        format!("it trapped: {e}")
    }
}

/// What `on_request` may answer.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestAnswer {
    #[serde(default)]
    reject: Option<Rejection>,
    #[serde(default)]
    body: Option<Value>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rejection {
    #[serde(default = "bad_request")]
    status: u16,
    message: String,
}

fn bad_request() -> u16 {
    400
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkAnswer {
    #[serde(default)]
    chunk: Option<Value>,
}

impl Plugin for WasmPlugin {
    fn on_request(&self, call: &RequestCall) -> Result<Verdict, String> {
        let a: RequestAnswer = self.answer(Hook::OnRequest, call)?;
        Ok(match (a.reject, a.body) {
            (Some(r), _) => Verdict::Reject {
                status: r.status,
                message: r.message,
            },
            (None, Some(body)) => Verdict::Rewrite(body),
            (None, None) => Verdict::Continue,
        })
    }

    fn on_route(&self, call: &RouteCall) -> Result<RouteAdvice, String> {
        self.answer(Hook::OnRoute, call)
    }

    fn on_response(&self, call: &ResponseCall) -> Result<ResponseEdit, String> {
        self.answer(Hook::OnResponse, call)
    }

    fn on_chunk(&self, call: &ChunkCall) -> Result<Option<Value>, String> {
        let a: ChunkAnswer = self.answer(Hook::OnChunk, call)?;
        Ok(a.chunk)
    }

    fn on_event(&self, event: &NodeEvent) -> Result<(), String> {
        self.call(Hook::OnEvent, event).map(|_| ())
    }

    fn stats(&self) -> Value {
        json!({
            "name": self.name,
            "instances_made": self.instances.load(Ordering::Relaxed),
            "instances_pooled": self.pool.lock().map(|p| p.len()).unwrap_or(0),
            "log_lines_dropped": self.log.dropped(),
            "fuel": self.limits.fuel,
            "memory_bytes": self.limits.memory_bytes,
            "timeout_ms": self.limits.timeout.as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod tests;
