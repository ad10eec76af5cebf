//! Builds a provider from a validated deployment, by kind. Heavy providers sit behind cargo
//! features; a kind whose feature is off fails to load with a message saying so.

use golek_config::{ModelConfig, ProviderParams, RuntimeConfig};

use crate::{Provider, Result};

/// Builds (and loads) the provider for `model`. Blocking: call it on the worker thread.
pub fn build_provider(model: &ModelConfig, runtime: &RuntimeConfig) -> Result<Box<dyn Provider>> {
    match &model.params {
        ProviderParams::Onnx(params) => build_onnx(&model.name, params, runtime),
        ProviderParams::Gguf(params) => build_gguf(&model.name, params),
        ProviderParams::Triton(params) => build_triton(&model.name, params),
        ProviderParams::Openai(params) => build_openai(&model.name, params),
    }
}

#[cfg(feature = "openai")]
fn build_openai(name: &str, params: &golek_config::OpenaiParams) -> Result<Box<dyn Provider>> {
    Ok(Box::new(crate::openai::OpenaiProvider::load(name, params)?))
}

#[cfg(not(feature = "openai"))]
fn build_openai(_name: &str, _params: &golek_config::OpenaiParams) -> Result<Box<dyn Provider>> {
    Err(crate::ProviderError::Load(
        "provider kind \"openai\" is not compiled into this build (cargo feature `openai`)".into(),
    ))
}

#[cfg(feature = "triton")]
fn build_triton(name: &str, params: &golek_config::TritonParams) -> Result<Box<dyn Provider>> {
    Ok(Box::new(crate::triton::TritonProvider::load(name, params)?))
}

#[cfg(not(feature = "triton"))]
fn build_triton(_name: &str, _params: &golek_config::TritonParams) -> Result<Box<dyn Provider>> {
    Err(crate::ProviderError::Load(
        "provider kind \"triton\" is not compiled into this build (cargo feature `triton`)".into(),
    ))
}

#[cfg(feature = "gguf")]
fn build_gguf(name: &str, params: &golek_config::GgufParams) -> Result<Box<dyn Provider>> {
    Ok(Box::new(crate::gguf::GgufProvider::load(name, params)?))
}

#[cfg(not(feature = "gguf"))]
fn build_gguf(_name: &str, _params: &golek_config::GgufParams) -> Result<Box<dyn Provider>> {
    Err(crate::ProviderError::Load(
        "provider kind \"gguf\" is not compiled into this build (cargo feature `gguf`)".into(),
    ))
}

#[cfg(feature = "onnx")]
fn build_onnx(
    name: &str,
    params: &golek_config::OnnxParams,
    runtime: &RuntimeConfig,
) -> Result<Box<dyn Provider>> {
    Ok(Box::new(crate::onnx::OnnxProvider::load(
        name, params, runtime,
    )?))
}

#[cfg(not(feature = "onnx"))]
fn build_onnx(
    _name: &str,
    _params: &golek_config::OnnxParams,
    _runtime: &RuntimeConfig,
) -> Result<Box<dyn Provider>> {
    Err(crate::ProviderError::Load(
        "provider kind \"onnx\" is not compiled into this build (cargo feature `onnx`)".into(),
    ))
}
