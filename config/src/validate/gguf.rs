//! The `gguf` provider's params: context and slots, threads, templates, the prompt cache.

use std::path::Path;

use serde::Deserialize;

use super::{typed, Checker};
use crate::node_config::GgufParams;

/// An optional text that, when given, must say something.
fn not_blank(c: &mut Checker<'_>, path: &str, value: Option<&str>, left_out: &str) {
    if value.is_some_and(|t| t.trim().is_empty()) {
        c.fail(
            path,
            format!("must not be empty (leave it out for {left_out})"),
        );
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGgufParams {
    model_path: String,
    #[serde(default = "default_n_ctx")]
    n_ctx: i64,
    #[serde(default = "default_slots")]
    slots: i64,
    #[serde(default)]
    threads: i64,
    #[serde(default = "default_gguf_batch")]
    batch_size: i64,
    #[serde(default)]
    n_gpu_layers: i64,
    #[serde(default)]
    chat_template: Option<String>,
    #[serde(default)]
    embeddings: bool,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default = "default_true")]
    prompt_cache: bool,
    #[serde(default = "default_prompt_cache_min_tokens")]
    prompt_cache_min_tokens: i64,
}

fn default_true() -> bool {
    true
}
fn default_prompt_cache_min_tokens() -> i64 {
    32
}
fn default_n_ctx() -> i64 {
    8192
}
fn default_slots() -> i64 {
    8
}
fn default_gguf_batch() -> i64 {
    512
}

pub(super) fn gguf_params(
    model_prefix: &str,
    params: toml::Table,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<GgufParams> {
    let prefix = format!("{model_prefix}.params");
    let raw: RawGgufParams = typed(toml::Value::Table(params), &prefix, c)?;
    let model_path = c.path(&format!("{prefix}.model_path"), &raw.model_path, assets_dir);
    let n_ctx = c.range(&format!("{prefix}.n_ctx"), raw.n_ctx, 64, 1 << 20);
    let slots = c.range(&format!("{prefix}.slots"), raw.slots, 1, 256);
    if let (Some(n_ctx), Some(slots)) = (n_ctx, slots) {
        if n_ctx / slots < 32 {
            c.fail(
                &format!("{prefix}.n_ctx"),
                format!(
                    "gives each of the {slots} slots only {} tokens; make it at least {}",
                    n_ctx / slots,
                    slots * 32
                ),
            );
        }
    }
    let threads = c.range(&format!("{prefix}.threads"), raw.threads, 0, 1024);
    let batch_size = c.range(&format!("{prefix}.batch_size"), raw.batch_size, 1, 65_536);
    let n_gpu_layers = c.range(
        &format!("{prefix}.n_gpu_layers"),
        raw.n_gpu_layers,
        0,
        10_000,
    );
    let prompt_cache_min_tokens = c.range(
        &format!("{prefix}.prompt_cache_min_tokens"),
        raw.prompt_cache_min_tokens,
        1,
        1 << 20,
    );
    not_blank(
        c,
        &format!("{prefix}.chat_template"),
        raw.chat_template.as_deref(),
        "the model's own",
    );
    not_blank(
        c,
        &format!("{prefix}.system_prompt"),
        raw.system_prompt.as_deref(),
        "none",
    );
    Some(GgufParams {
        model_path: model_path?,
        n_ctx: n_ctx? as u32,
        slots: slots? as u32,
        threads: threads? as u32,
        batch_size: batch_size? as u32,
        n_gpu_layers: n_gpu_layers? as u32,
        chat_template: raw.chat_template,
        embeddings: raw.embeddings,
        system_prompt: raw.system_prompt,
        prompt_cache: raw.prompt_cache,
        prompt_cache_min_tokens: prompt_cache_min_tokens? as u32,
    })
}
