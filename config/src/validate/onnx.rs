//! The `onnx` provider's params: pipeline, model and tokenizer paths, input limits, threads.

use std::path::Path;

use serde::Deserialize;

use super::{typed, yes, Checker};
use crate::node_config::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOnnxParams {
    pipeline: String,
    model_path: String,
    #[serde(default)]
    tokenizer_path: Option<String>,
    #[serde(default = "default_max_input_tokens")]
    max_input_tokens: i64,
    #[serde(default = "default_intra_threads")]
    intra_threads: i64,
    #[serde(default = "yes")]
    normalize: bool,
}

fn default_max_input_tokens() -> i64 {
    512
}
fn default_intra_threads() -> i64 {
    1
}

pub(super) fn onnx_params(
    model_prefix: &str,
    params: toml::Table,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<OnnxParams> {
    let prefix = format!("{model_prefix}.params");
    let raw: RawOnnxParams = typed(toml::Value::Table(params), &prefix, c)?;
    let pipeline = match raw.pipeline.as_str() {
        "sentence-embedding" => Some(OnnxPipeline::SentenceEmbedding),
        "tensor" => Some(OnnxPipeline::Tensor),
        other => {
            c.fail(
                &format!("{prefix}.pipeline"),
                format!("must be \"sentence-embedding\" or \"tensor\", got {other:?}"),
            );
            None
        }
    };
    let model_path = c.path(&format!("{prefix}.model_path"), &raw.model_path, assets_dir);
    let tokenizer_path = raw
        .tokenizer_path
        .as_deref()
        .and_then(|p| c.path(&format!("{prefix}.tokenizer_path"), p, assets_dir));
    if pipeline == Some(OnnxPipeline::SentenceEmbedding) && raw.tokenizer_path.is_none() {
        c.fail(
            &format!("{prefix}.tokenizer_path"),
            "is required when pipeline is \"sentence-embedding\"",
        );
    }
    let max_input_tokens = c.range(
        &format!("{prefix}.max_input_tokens"),
        raw.max_input_tokens,
        2,
        1 << 20,
    );
    let intra_threads = c.range(
        &format!("{prefix}.intra_threads"),
        raw.intra_threads,
        1,
        256,
    );
    Some(OnnxParams {
        pipeline: pipeline?,
        model_path: model_path?,
        tokenizer_path,
        max_input_tokens: max_input_tokens? as usize,
        intra_threads: intra_threads? as usize,
        normalize: raw.normalize,
    })
}
