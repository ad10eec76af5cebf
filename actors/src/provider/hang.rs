//! Hung workers: whether the node can afford a replacement. A hung llama.cpp or ONNX Runtime
//! thread cannot be killed, so its memory stays taken; a second copy of the model starts only
//! when the machine has the memory for it. Remote providers hold no model: always room.

use golek_config::{ModelConfig, ProviderParams};

/// The memory one more copy of the model needs, roughly: the size of its weights file.
pub fn footprint_bytes(model: &ModelConfig) -> u64 {
    let path = match &model.params {
        ProviderParams::Gguf(p) => &p.model_path,
        ProviderParams::Onnx(p) => &p.model_path,
        _ => return 0,
    };
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Memory the OS says is available (`MemAvailable`), where it can be read.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib.saturating_mul(1024))
}

/// `Ok` when a replacement for `model`'s hung worker fits in memory; why not otherwise.
pub fn room_for_another(model: &ModelConfig) -> Result<(), String> {
    let need = footprint_bytes(model);
    if need == 0 {
        return Ok(());
    }
    match available_bytes() {
        Some(free) if free >= need => Ok(()),
        Some(free) => Err(format!(
            "a second copy needs about {need} bytes and {free} are available"
        )),
        // Without a way to tell, try: the load fails cleanly if memory runs out.
        None => Ok(()),
    }
}
