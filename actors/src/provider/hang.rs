//! Hung workers: whether the node can afford a replacement. A hung llama.cpp or ONNX Runtime
//! thread cannot be killed, so its memory stays taken; a second copy of the model starts only
//! when the machine has the memory for it. Remote providers hold no model: always room.

use golek_config::{ModelConfig, ProviderParams};

use crate::machine::MemInfo;

/// The memory one more copy of the model needs, roughly: the size of its weights file.
pub fn footprint_bytes(model: &ModelConfig) -> u64 {
    let path = match &model.params {
        ProviderParams::Gguf(p) => &p.model_path,
        ProviderParams::Onnx(p) => &p.model_path,
        _ => return 0,
    };
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// `Ok` when a replacement for `model`'s hung worker fits in memory; why not otherwise.
pub fn room_for_another(model: &ModelConfig) -> Result<(), String> {
    let need = footprint_bytes(model);
    if need == 0 {
        return Ok(());
    }
    match MemInfo::read().and_then(|m| m.bytes("MemAvailable")) {
        Some(free) if free >= need => Ok(()),
        Some(free) => Err(format!(
            "a second copy needs about {need} bytes and {free} are available"
        )),
        // Without a way to tell, try: the load fails cleanly if memory runs out.
        None => Ok(()),
    }
}
