//! `audit-log`: one JSON line per exchange (the request and its answer: tenant, model,
//! served-by, status, token counts, latency; the request's texts only with `prompts = true`)
//! to a file rotated by size. Lines are written by a thread of their own: a request never
//! waits on the disk, and lines that do not fit the queue are dropped and counted.
//!
//! ```toml
//! [plugins.audit-log]
//! path = "audit/requests.log"   # relative to node.data_dir
//! max_bytes = 67108864          # rotate past this size
//! keep = 5                      # requests.log.1 .. requests.log.5
//! prompts = false
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use super::super::{Done, Hook, Plugin};
use super::Context;

/// The audit log needs no hook of the API: it writes when an exchange is done.
pub const HOOKS: [Hook; 0] = [];
/// Lines waiting for the writer.
const QUEUE: usize = 8192;

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "max_bytes": {"type": "integer", "minimum": 4096, "maximum": 1099511627776u64},
            "keep": {"type": "integer", "minimum": 1, "maximum": 100},
            "prompts": {"type": "boolean"}
        },
        "additionalProperties": false
    })
}

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    #[serde(default = "default_keep")]
    keep: u32,
    #[serde(default)]
    prompts: bool,
}

fn default_path() -> String {
    "audit/requests.log".into()
}
fn default_max_bytes() -> u64 {
    64 << 20
}
fn default_keep() -> u32 {
    5
}

pub struct AuditLog {
    lines: mpsc::SyncSender<Vec<u8>>,
    prompts: bool,
    path: PathBuf,
    written: Arc<AtomicU64>,
    dropped: AtomicU64,
}

impl AuditLog {
    pub fn new(config: &Value, ctx: &Context) -> Result<Self, String> {
        let c: Config = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
        let path = {
            let p = PathBuf::from(&c.path);
            if p.is_absolute() {
                p
            } else {
                ctx.data_dir.join(p)
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("path: cannot make {}: {e}", dir.display()))?;
        }
        let file = open(&path).map_err(|e| format!("path: cannot open {}: {e}", path.display()))?;
        let (lines, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            path: path.clone(),
            size: file.metadata().map(|m| m.len()).unwrap_or(0),
            file: std::io::BufWriter::new(file),
            max_bytes: c.max_bytes,
            keep: c.keep,
            written: written.clone(),
        };
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the writer: {e}"))?;
        Ok(AuditLog {
            lines,
            prompts: c.prompts,
            path,
            written,
            dropped: AtomicU64::new(0),
        })
    }
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

struct Writer {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    size: u64,
    max_bytes: u64,
    keep: u32,
    written: Arc<AtomicU64>,
}

impl Writer {
    /// Writes lines until the plugin is dropped; flushes after each burst.
    fn run(&mut self, rx: mpsc::Receiver<Vec<u8>>) {
        while let Ok(line) = rx.recv() {
            let mut n = u64::from(self.write(&line));
            while let Ok(line) = rx.try_recv() {
                n += u64::from(self.write(&line));
            }
            match self.file.flush() {
                Ok(()) => {
                    self.written.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "audit-log: cannot write")
                }
            }
        }
        let _ = self.file.flush();
    }

    /// Whether the line went into the buffer.
    fn write(&mut self, line: &[u8]) -> bool {
        if self.size > 0 && self.size.saturating_add(line.len() as u64) > self.max_bytes {
            self.rotate();
        }
        let ok = self.file.write_all(line).is_ok();
        if ok {
            self.size = self.size.saturating_add(line.len() as u64);
        }
        ok
    }

    /// `log` -> `log.1` -> ... -> `log.keep` (the oldest goes).
    fn rotate(&mut self) {
        let _ = self.file.flush();
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = std::fs::remove_file(name(self.keep));
        for i in (1..self.keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        let _ = std::fs::rename(&self.path, name(1));
        match open(&self.path) {
            Ok(f) => {
                self.file = std::io::BufWriter::new(f);
                self.size = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "audit-log: cannot open a new file")
            }
        }
    }
}

impl Plugin for AuditLog {
    fn on_done(&self, done: &Done) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut line = json!({
            "ts_ms": ts,
            "tenant": done.tenant,
            "path": done.path,
            "model": done.model,
            "served_by": done.served_by,
            "status": done.status,
            "stream": done.stream,
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "latency_ms": done.latency_ms,
            "answered_by_plugin": done.answered_by_plugin,
        });
        if self.prompts {
            if let Some(request) = &done.request {
                line["prompts"] = json!(super::texts(request));
            }
        }
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        if self.lines.try_send(bytes).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::metrics::PLUGIN_AUDIT_DROPPED_TOTAL).increment(1);
        }
    }

    fn stats(&self) -> Value {
        json!({
            "path": self.path,
            "lines_written": self.written.load(Ordering::Relaxed),
            "lines_dropped": self.dropped.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(i: u64) -> Done {
        Done {
            path: "/v1/chat/completions".into(),
            model: "m".into(),
            tenant: Some("acme".into()),
            served_by: Some("n1/m".into()),
            status: 200,
            stream: false,
            latency_ms: i,
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            answered_by_plugin: false,
            request: Some(json!({"messages": [{"role": "user", "content": "the prompt"}]})),
            response: None,
        }
    }

    #[test]
    fn lines_are_json_prompts_only_when_asked_and_files_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context {
            data_dir: dir.path().into(),
        };
        let log = AuditLog::new(
            &json!({"path": "a/log", "max_bytes": 4096, "keep": 2}),
            &ctx,
        )
        .unwrap();
        for i in 0..100 {
            log.on_done(&done(i));
        }
        let path = dir.path().join("a/log");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.written.load(Ordering::Relaxed) < 100 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["tenant"], "acme");
        assert_eq!(first["completion_tokens"], 4);
        assert!(first.get("prompts").is_none());
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        assert!(dir.path().join("a/log.1").exists());
        assert!(dir.path().join("a/log.2").exists());
        assert!(!dir.path().join("a/log.3").exists());

        let with = AuditLog::new(&json!({"path": "b.log", "prompts": true}), &ctx).unwrap();
        with.on_done(&done(1));
        while with.written.load(Ordering::Relaxed) < 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let line = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
        assert!(line.contains("the prompt"), "{line}");
    }
}
