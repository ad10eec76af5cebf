//! Writes a small llama-architecture GGUF with random weights and a valid SPM-style tokenizer,
//! for tests and benchmarks (no real chat model can be downloaded here).
//!
//! Format: "GGUF", version 3, tensor and key-value counts, typed key-values, tensor infos
//! (ggml dimension order: innermost first), then the tensor data, 32-byte aligned. Token strings
//! are unique (llama.cpp aborts on duplicates). Weights come from a seeded generator, so the
//! same spec always gives the same file.

use std::io::{self, Write};
use std::path::Path;

/// The shape of a generated model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestModelSpec {
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_ctx_train: u32,
    /// Store weights as F16 (faster on CPU) rather than F32.
    pub f16: bool,
    pub seed: u64,
}

impl TestModelSpec {
    /// `golek-tiny`: about 1M parameters, loads in milliseconds; the default test model.
    pub fn tiny() -> Self {
        TestModelSpec {
            n_layer: 2,
            n_embd: 64,
            n_ff: 192,
            n_head: 4,
            n_head_kv: 4,
            n_ctx_train: 4096,
            f16: false,
            seed: 7,
        }
    }

    /// About 15M parameters (the "stories15M" size): large enough that a benchmark measures
    /// inference rather than HTTP.
    pub fn bench_15m() -> Self {
        TestModelSpec {
            n_layer: 6,
            n_embd: 288,
            n_ff: 768,
            n_head: 6,
            n_head_kv: 6,
            n_ctx_train: 4096,
            f16: true,
            seed: 15,
        }
    }
}

/// Token types, as llama.cpp reads them.
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_BYTE: i32 = 6;

/// Words that get their own `▁word` token, so that English text tokenizes into few tokens.
const WORDS: &[&str] = &[
    "the", "a", "an", "is", "are", "was", "of", "to", "and", "in", "on", "at", "for", "with", "it",
    "that", "this", "you", "i", "he", "she", "we", "they", "man", "woman", "eating", "food",
    "bread", "horse", "riding", "hello", "world", "tell", "me", "story", "about", "once", "upon",
    "time", "there", "little", "dog", "cat", "said", "what", "how", "why", "who", "count", "one",
    "two", "three", "four", "five", "yes", "no", "please", "thank", "golek", "model", "node",
];

/// The vocabulary: (piece, score, type). Unique pieces.
pub fn vocabulary() -> Vec<(String, f32, i32)> {
    let mut vocab: Vec<(String, f32, i32)> = vec![
        ("<unk>".into(), 0.0, TYPE_UNKNOWN),
        ("<s>".into(), 0.0, TYPE_CONTROL),
        ("</s>".into(), 0.0, TYPE_CONTROL),
    ];
    for b in 0..=255u32 {
        vocab.push((format!("<0x{b:02X}>"), 0.0, TYPE_BYTE));
    }
    vocab.push(("<|im_start|>".into(), 0.0, TYPE_CONTROL));
    vocab.push(("<|im_end|>".into(), 0.0, TYPE_CONTROL));
    let mut seen: std::collections::HashSet<String> = vocab.iter().map(|v| v.0.clone()).collect();
    let mut push = |piece: String, score: f32, vocab: &mut Vec<(String, f32, i32)>| {
        if seen.insert(piece.clone()) {
            vocab.push((piece, score, TYPE_NORMAL));
        }
    };
    push("▁".into(), -1.0, &mut vocab);
    // Single printable characters, and each with a leading word boundary.
    for c in (b'!'..=b'~').map(char::from) {
        push(c.to_string(), -2.0, &mut vocab);
        push(format!("▁{c}"), -1.5, &mut vocab);
    }
    push("\n".into(), -2.0, &mut vocab);
    // Letter pairs, then whole words: longer pieces score higher, so merges prefer them.
    for a in b'a'..=b'z' {
        for b in [b'e', b't', b'a', b'o', b'i', b'n', b's', b'r', b'h', b'l'] {
            push(format!("{}{}", a as char, b as char), -1.0, &mut vocab);
        }
    }
    for word in WORDS {
        push(
            format!("▁{word}"),
            -0.5 + word.len() as f32 * 0.01,
            &mut vocab,
        );
    }
    vocab
}

/// A small deterministic generator (xorshift) for weights.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Uniform in [-1, 1).
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

enum Value {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    F32Array(Vec<f32>),
    I32Array(Vec<i32>),
}

struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.out.write_all(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.out.write_all(&v.to_le_bytes())
    }
    fn string(&mut self, s: &str) -> io::Result<()> {
        self.u64(s.len() as u64)?;
        self.out.write_all(s.as_bytes())
    }
    fn kv(&mut self, key: &str, value: &Value) -> io::Result<()> {
        const U32: u32 = 4;
        const I32: u32 = 5;
        const F32: u32 = 6;
        const BOOL: u32 = 7;
        const STR: u32 = 8;
        const ARR: u32 = 9;
        self.string(key)?;
        match value {
            Value::U32(v) => {
                self.u32(U32)?;
                self.u32(*v)
            }
            Value::F32(v) => {
                self.u32(F32)?;
                self.out.write_all(&v.to_le_bytes())
            }
            Value::Bool(v) => {
                self.u32(BOOL)?;
                self.out.write_all(&[*v as u8])
            }
            Value::Str(s) => {
                self.u32(STR)?;
                self.string(s)
            }
            Value::StrArray(items) => {
                self.u32(ARR)?;
                self.u32(STR)?;
                self.u64(items.len() as u64)?;
                items.iter().try_for_each(|s| self.string(s))
            }
            Value::F32Array(items) => {
                self.u32(ARR)?;
                self.u32(F32)?;
                self.u64(items.len() as u64)?;
                items
                    .iter()
                    .try_for_each(|v| self.out.write_all(&v.to_le_bytes()))
            }
            Value::I32Array(items) => {
                self.u32(ARR)?;
                self.u32(I32)?;
                self.u64(items.len() as u64)?;
                items
                    .iter()
                    .try_for_each(|v| self.out.write_all(&v.to_le_bytes()))
            }
        }
    }
}

/// A tensor to write: name, ggml dims (innermost first), and whether it is a norm (ones, F32).
struct TensorDef {
    name: String,
    dims: Vec<u64>,
    norm: bool,
}

const ALIGN: u64 = 32;

fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    if exp <= 0 {
        sign // too small for these weights' range: flush to zero
    } else if exp >= 31 {
        sign | 0x7c00
    } else {
        sign | ((exp as u16) << 10) | ((mant >> 13) as u16)
    }
}

/// Writes the model to `path` (atomically: a temporary file renamed into place).
pub fn write_test_gguf(path: &Path, spec: &TestModelSpec) -> io::Result<()> {
    let vocab = vocabulary();
    let n_vocab = vocab.len() as u64;
    let (e, f) = (spec.n_embd as u64, spec.n_ff as u64);
    let head_dim = e / spec.n_head as u64;
    let e_kv = head_dim * spec.n_head_kv as u64;

    let mut tensors = vec![
        TensorDef {
            name: "token_embd.weight".into(),
            dims: vec![e, n_vocab],
            norm: false,
        },
        TensorDef {
            name: "output_norm.weight".into(),
            dims: vec![e],
            norm: true,
        },
        TensorDef {
            name: "output.weight".into(),
            dims: vec![e, n_vocab],
            norm: false,
        },
    ];
    for i in 0..spec.n_layer {
        let t = |n: &str, dims: Vec<u64>, norm: bool| TensorDef {
            name: format!("blk.{i}.{n}.weight"),
            dims,
            norm,
        };
        tensors.extend([
            t("attn_norm", vec![e], true),
            t("attn_q", vec![e, e], false),
            t("attn_k", vec![e, e_kv], false),
            t("attn_v", vec![e, e_kv], false),
            t("attn_output", vec![e, e], false),
            t("ffn_norm", vec![e], true),
            t("ffn_gate", vec![e, f], false),
            t("ffn_up", vec![e, f], false),
            t("ffn_down", vec![f, e], false),
        ]);
    }

    let kvs: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::Str("llama".into())),
        ("general.name", Value::Str("golek-test".into())),
        ("general.file_type", Value::U32(if spec.f16 { 1 } else { 0 })),
        ("general.alignment", Value::U32(ALIGN as u32)),
        ("llama.context_length", Value::U32(spec.n_ctx_train)),
        ("llama.embedding_length", Value::U32(spec.n_embd)),
        ("llama.block_count", Value::U32(spec.n_layer)),
        ("llama.feed_forward_length", Value::U32(spec.n_ff)),
        ("llama.attention.head_count", Value::U32(spec.n_head)),
        ("llama.attention.head_count_kv", Value::U32(spec.n_head_kv)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.vocab_size", Value::U32(n_vocab as u32)),
        ("tokenizer.ggml.model", Value::Str("llama".into())),
        ("tokenizer.ggml.pre", Value::Str("default".into())),
        ("tokenizer.ggml.tokens", Value::StrArray(vocab.iter().map(|v| v.0.clone()).collect())),
        ("tokenizer.ggml.scores", Value::F32Array(vocab.iter().map(|v| v.1).collect())),
        ("tokenizer.ggml.token_type", Value::I32Array(vocab.iter().map(|v| v.2).collect())),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        (
            "tokenizer.chat_template",
            Value::Str(
                "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
                    .into(),
            ),
        ),
    ];

    let tmp = path.with_extension("gguf.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(&tmp)?;
    let mut w = Writer {
        out: io::BufWriter::new(file),
    };
    w.out.write_all(b"GGUF")?;
    w.u32(3)?;
    w.u64(tensors.len() as u64)?;
    w.u64(kvs.len() as u64)?;
    for (k, v) in &kvs {
        w.kv(k, v)?;
    }
    let elem_size = |t: &TensorDef| if t.norm || !spec.f16 { 4 } else { 2 };
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for t in &tensors {
        w.string(&t.name)?;
        w.u32(t.dims.len() as u32)?;
        for d in &t.dims {
            w.u64(*d)?;
        }
        let ggml_type = if t.norm || !spec.f16 { 0 } else { 1 };
        w.u32(ggml_type)?;
        w.u64(offset)?;
        offsets.push(offset);
        let bytes = t.dims.iter().product::<u64>() * elem_size(t);
        offset += bytes.div_ceil(ALIGN) * ALIGN;
    }
    w.out.flush()?;
    // Pad the header to the alignment; count what was written so far.
    let written = w.out.get_ref().metadata()?.len() + w.out.buffer().len() as u64;
    let pad = (ALIGN - written % ALIGN) % ALIGN;
    w.out.write_all(&vec![0u8; pad as usize])?;

    let mut rng = Rng(spec.seed.max(1));
    for (t, &start) in tensors.iter().zip(&offsets) {
        let n = t.dims.iter().product::<u64>();
        // Scaled like a real init: std about 1/sqrt(fan_in).
        let scale = 1.0 / (t.dims[0] as f32).sqrt() * 1.7;
        let mut bytes = Vec::with_capacity((n * elem_size(t)) as usize);
        for _ in 0..n {
            let v = if t.norm { 1.0 } else { rng.next_f32() * scale };
            if t.norm || !spec.f16 {
                bytes.extend_from_slice(&v.to_le_bytes());
            } else {
                bytes.extend_from_slice(&f32_to_f16_bits(v).to_le_bytes());
            }
        }
        let padded = (bytes.len() as u64).div_ceil(ALIGN) * ALIGN;
        bytes.resize(padded as usize, 0);
        debug_assert_eq!(start % ALIGN, 0);
        w.out.write_all(&bytes)?;
    }
    w.out.flush()?;
    drop(w);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_has_unique_pieces_and_the_expected_specials() {
        let vocab = vocabulary();
        let unique: std::collections::HashSet<_> = vocab.iter().map(|v| &v.0).collect();
        assert_eq!(unique.len(), vocab.len());
        assert_eq!(vocab[0].0, "<unk>");
        assert_eq!(vocab[1].0, "<s>");
        assert_eq!(vocab[2].0, "</s>");
        assert_eq!(vocab[3].0, "<0x00>");
        assert_eq!(vocab[258].0, "<0xFF>");
    }

    #[test]
    fn the_same_spec_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        write_test_gguf(&a, &TestModelSpec::tiny()).unwrap();
        write_test_gguf(&b, &TestModelSpec::tiny()).unwrap();
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert_eq!(a, b);
        assert_eq!(&a[..4], b"GGUF");
    }
}
