//! The process-wide ONNX Runtime environment, loaded once from the configured library.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::{ProviderError, Result};

static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// The shared environment; the first call loads the library at `library` (later calls reuse
/// it, whatever path they give). A missing or wrong library is an error, not a panic.
pub fn environment(library: &Path) -> Result<&'static Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        if !library.exists() {
            return Err(format!(
                "ONNX Runtime library not found at {} (run scripts/setup.sh, or set runtime.onnxruntime_path)",
                library.display()
            ));
        }
        let builder = ort::init_from(library).map_err(|e| {
            format!("cannot load ONNX Runtime from {}: {e}", library.display())
        })?;
        builder
            .with_name("golek")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    env.as_ref().map_err(|e| ProviderError::Load(e.clone()))
}
