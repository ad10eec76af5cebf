//! The continuous-batching loop that runs on a GGUF provider's worker thread.
//!
//! Each turn: admit queued requests into free slots (blocking only when nothing runs), drop
//! sequences whose client has gone, then one decode call that carries one token for every
//! decoding sequence plus prompt chunks for the sequences still prefilling, within
//! `batch_size`. Sampled tokens stream out at once.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use golek_protocol::inference::{
    Embedding, EmbeddingInput, EmbeddingsRequest, FinishReason, GenerateRequest, InferenceEvent,
    InferenceRequest, Prompt, SamplingParams,
};
use golek_protocol::ErrorInfo;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::text::{Released, StopMatcher, Utf8Stream};
use super::{slot_context, GgufProvider};
use crate::metrics as m;
use crate::queue::{Job, JobQueue};
use crate::{ProviderError, Result};

struct Sequence {
    job: Job,
    prompt: Vec<LlamaToken>,
    prefilled: usize,
    n_past: i32,
    sampler: LlamaSampler,
    /// The last sampled token, decoded in the next step.
    next_token: Option<LlamaToken>,
    generated: u32,
    max_tokens: u32,
    utf8: Utf8Stream,
    stop: StopMatcher,
    admitted_at: Instant,
    last_token_at: Option<Instant>,
    /// Tokens sampled since text was last sent (text can lag behind tokens).
    unsent_tokens: u32,
    ignore_eos: bool,
}

pub struct Scheduler<'a> {
    provider: &'a GgufProvider,
    ctx: LlamaContext<'a>,
    slots: Vec<Option<Sequence>>,
    batch: LlamaBatch<'static>,
    slot_ctx: u32,
    batch_size: usize,
}

fn sampler(params: &SamplingParams, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            -1,
            1.0,
            params.frequency_penalty,
            params.presence_penalty,
        ));
    }
    if params.temperature == 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k as i32));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        let seed = params.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        chain.push(LlamaSampler::dist(seed as u32));
    }
    LlamaSampler::chain_simple(chain)
}

impl<'a> Scheduler<'a> {
    pub fn new(provider: &'a GgufProvider, ctx: LlamaContext<'a>) -> Self {
        let slots = provider.params.slots as usize;
        let batch_size = provider.params.batch_size as usize;
        metrics::gauge!(m::GEN_KV_CACHE_CAPACITY_CELLS, "model" => provider.name.clone())
            .set(provider.params.n_ctx as f64);
        Scheduler {
            provider,
            ctx,
            slots: (0..slots).map(|_| None).collect(),
            batch: LlamaBatch::new(batch_size.max(slots), 1),
            slot_ctx: slot_context(&provider.params),
            batch_size: batch_size.max(slots),
        }
    }

    fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn run(&mut self, queue: &JobQueue) -> Result<()> {
        loop {
            if !self.admit(queue)? {
                return Ok(());
            }
            self.reap_abandoned();
            self.publish_gauges();
            if self.active() > 0 {
                self.step()?;
            }
        }
    }

    /// Fills free slots from the queue; false once the queue is closed and nothing runs.
    fn admit(&mut self, queue: &JobQueue) -> Result<bool> {
        while let Some(free) = self.slots.iter().position(Option::is_none) {
            let job = if self.active() == 0 {
                match queue.next() {
                    Some(job) => job,
                    None => return Ok(false),
                }
            } else {
                match queue.try_next() {
                    Some(job) => job,
                    None => break,
                }
            };
            if job.is_abandoned() {
                continue;
            }
            match &job.request {
                InferenceRequest::Generate(request) => {
                    let request = request.clone();
                    match self.prepare(&request) {
                        Ok((prompt, max_tokens)) => {
                            self.slots[free] = Some(self.start(job, &request, prompt, max_tokens))
                        }
                        Err(err) => job.emit(Err(ErrorInfo::from(&err))),
                    }
                }
                InferenceRequest::Embeddings(request) => {
                    let request = request.clone();
                    let outcome = self.embed(&request);
                    job.emit(
                        outcome
                            .map(InferenceEvent::Embeddings)
                            .map_err(|e| ErrorInfo::from(&e)),
                    );
                }
                InferenceRequest::Tensors(_) => {
                    job.emit(Err(ErrorInfo::from(&ProviderError::Unsupported("tensors"))));
                }
            }
        }
        Ok(true)
    }

    /// Checks a request against the model and the slot's context: the prompt's tokens and the
    /// number of tokens it may generate.
    fn prepare(&self, request: &GenerateRequest) -> Result<(Vec<LlamaToken>, u32)> {
        if !self.provider.info.capabilities.completions {
            return Err(ProviderError::Unsupported("text generation"));
        }
        let (text, param) = match &request.prompt {
            Prompt::Text(t) => (t.clone(), "prompt"),
            Prompt::Chat(messages) => (self.provider.render_chat(messages)?, "messages"),
        };
        let bad = |message: String| ProviderError::BadInput {
            param: param.into(),
            message,
        };
        let prompt = self
            .provider
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, true);
        let n = prompt.len() as u32;
        if prompt.is_empty() {
            return Err(bad(format!("{param}: the prompt has no tokens")));
        }
        if n >= self.slot_ctx {
            return Err(bad(format!(
                "{param}: the prompt is {n} tokens; a sequence holds at most {} (n_ctx / slots), leaving room for at least one generated token",
                self.slot_ctx
            )));
        }
        let max_tokens = match request.max_tokens {
            Some(k) if n + k > self.slot_ctx => {
                return Err(ProviderError::BadInput {
                    param: "max_tokens".into(),
                    message: format!(
                        "max_tokens: the prompt ({n} tokens) plus max_tokens ({k}) exceeds the {} tokens a sequence holds",
                        self.slot_ctx
                    ),
                })
            }
            Some(k) => k,
            None => self.slot_ctx - n,
        };
        Ok((prompt, max_tokens))
    }

    fn start(
        &self,
        job: Job,
        request: &GenerateRequest,
        prompt: Vec<LlamaToken>,
        max_tokens: u32,
    ) -> Sequence {
        let n = prompt.len() as u32;
        metrics::counter!(m::GEN_PROMPT_TOKENS_TOTAL, "model" => self.provider.name.clone())
            .increment(n as u64);
        job.emit(Ok(InferenceEvent::Started { prompt_tokens: n }));
        Sequence {
            prompt,
            prefilled: 0,
            n_past: 0,
            sampler: sampler(&request.sampling, self.provider.model.n_vocab()),
            next_token: None,
            generated: 0,
            max_tokens,
            utf8: Utf8Stream::default(),
            stop: StopMatcher::new(request.stop.clone()),
            admitted_at: Instant::now(),
            last_token_at: None,
            unsent_tokens: 0,
            ignore_eos: request.sampling.ignore_eos,
            job,
        }
    }

    fn free(&mut self, slot: usize) -> Option<Sequence> {
        let seq = self.slots[slot].take();
        let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
        seq
    }

    fn reap_abandoned(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot]
                .as_ref()
                .is_some_and(|s| s.job.is_abandoned())
            {
                let Some(seq) = self.free(slot) else { continue };
                if seq.job.events.is_closed() {
                    metrics::counter!(m::GEN_CANCELLED_TOTAL, "model" => self.provider.name.clone())
                        .increment(1);
                } else {
                    seq.job.emit(Err(ErrorInfo::new(
                        golek_protocol::ErrorCode::Timeout,
                        format!(
                            "generation ran past the request deadline after {} tokens (http.request_timeout_ms)",
                            seq.generated
                        ),
                    )));
                }
            }
        }
    }

    fn publish_gauges(&self) {
        let name = self.provider.name.clone();
        let used: i32 = self.slots.iter().flatten().map(|s| s.n_past).sum();
        metrics::gauge!(m::GEN_ACTIVE_SEQUENCES, "model" => name.clone()).set(self.active() as f64);
        metrics::gauge!(m::GEN_KV_CACHE_USED_CELLS, "model" => name).set(used as f64);
    }

    /// One decode call: a token for each decoding sequence, prompt chunks for the others.
    fn step(&mut self) -> Result<()> {
        self.batch.clear();
        let mut budget = self.batch_size;
        let mut sample_at: Vec<(usize, i32)> = Vec::new();
        let add_err =
            |e: llama_cpp_2::llama_batch::BatchAddError| ProviderError::Inference(e.to_string());
        for (slot, seq) in self.slots.iter_mut().enumerate() {
            let Some(seq) = seq else { continue };
            if let Some(token) = seq.next_token.take() {
                self.batch
                    .add(token, seq.n_past, &[slot as i32], true)
                    .map_err(add_err)?;
                sample_at.push((slot, self.batch.n_tokens() - 1));
                seq.n_past += 1;
                budget -= 1;
            }
        }
        for (slot, seq) in self.slots.iter_mut().enumerate() {
            let Some(seq) = seq else { continue };
            if seq.prefilled == seq.prompt.len() || budget == 0 {
                continue;
            }
            let take = budget.min(seq.prompt.len() - seq.prefilled);
            for k in 0..take {
                let pos = seq.prefilled + k;
                let last = pos + 1 == seq.prompt.len();
                self.batch
                    .add(seq.prompt[pos], pos as i32, &[slot as i32], last)
                    .map_err(add_err)?;
                if last {
                    sample_at.push((slot, self.batch.n_tokens() - 1));
                }
            }
            seq.prefilled += take;
            seq.n_past += take as i32;
            budget -= take;
        }
        if self.batch.n_tokens() == 0 {
            return Ok(());
        }
        if let Err(err) = self.ctx.decode(&mut self.batch) {
            // Fail what was in this step and keep serving: the KV state of those sequences is
            // unknown, so they are dropped.
            tracing::warn!(model = %self.provider.name, error = %err, "decode failed");
            for slot in 0..self.slots.len() {
                if let Some(seq) = self.free(slot) {
                    seq.job
                        .emit(Err(ErrorInfo::from(&ProviderError::Inference(format!(
                            "decode failed: {err}"
                        )))));
                }
            }
            return Ok(());
        }
        for (slot, index) in sample_at {
            let token = match self.slots[slot].as_mut() {
                Some(seq) => seq.sampler.sample(&self.ctx, index),
                None => continue,
            };
            self.on_token(slot, token);
        }
        Ok(())
    }

    fn on_token(&mut self, slot: usize, token: LlamaToken) {
        let name = self.provider.name.clone();
        let vocab = self.provider.model.vocab();
        let Some(seq) = self.slots[slot].as_mut() else {
            return;
        };
        let now = Instant::now();
        match seq.last_token_at {
            None => {
                metrics::histogram!(m::GEN_TIME_TO_FIRST_TOKEN_SECONDS, "model" => name.clone())
                    .record(now.duration_since(seq.admitted_at).as_secs_f64())
            }
            Some(last) => metrics::histogram!(m::GEN_INTER_TOKEN_SECONDS, "model" => name.clone())
                .record(now.duration_since(last).as_secs_f64()),
        }
        seq.last_token_at = Some(now);
        if vocab.is_eog(token) && !seq.ignore_eos {
            self.finish(slot, FinishReason::Stop);
            return;
        }
        seq.generated += 1;
        seq.unsent_tokens += 1;
        metrics::counter!(m::GEN_TOKENS_TOTAL, "model" => name).increment(1);
        let piece = vocab.token_to_piece(token, false, None);
        let text = seq.utf8.push(&piece);
        match seq.stop.push(&text) {
            Released::Text(t) => {
                if !t.is_empty() {
                    let tokens = std::mem::take(&mut seq.unsent_tokens);
                    seq.job.emit(Ok(InferenceEvent::Text { text: t, tokens }));
                }
            }
            Released::Stopped(t) => {
                if !t.is_empty() {
                    let tokens = std::mem::take(&mut seq.unsent_tokens);
                    seq.job.emit(Ok(InferenceEvent::Text { text: t, tokens }));
                }
                self.finish_sent(slot, FinishReason::Stop);
                return;
            }
        }
        if seq.generated >= seq.max_tokens {
            self.finish(slot, FinishReason::Length);
        } else {
            seq.next_token = Some(token);
        }
    }

    /// Ends a sequence, sending the text still held back.
    fn finish(&mut self, slot: usize, reason: FinishReason) {
        let Some(seq) = self.slots[slot].as_mut() else {
            return;
        };
        let rest = seq.utf8.finish();
        let mut reason = reason;
        let mut tail = match seq.stop.push(&rest) {
            Released::Text(t) => t + &seq.stop.finish(),
            Released::Stopped(t) => {
                reason = FinishReason::Stop;
                t
            }
        };
        if !tail.is_empty() {
            let tokens = std::mem::take(&mut seq.unsent_tokens);
            seq.job.emit(Ok(InferenceEvent::Text {
                text: std::mem::take(&mut tail),
                tokens,
            }));
        }
        self.finish_sent(slot, reason);
    }

    fn finish_sent(&mut self, slot: usize, reason: FinishReason) {
        if let Some(seq) = self.free(slot) {
            seq.job.emit(Ok(InferenceEvent::Finished {
                reason,
                prompt_tokens: seq.prompt.len() as u32,
                completion_tokens: seq.generated,
            }));
        }
    }

    /// Embeddings from an embedding deployment: each input decoded on its own, mean-pooled by
    /// llama.cpp, then L2-normalised.
    fn embed(&mut self, request: &EmbeddingsRequest) -> Result<Vec<Embedding>> {
        if !self.provider.info.capabilities.embeddings {
            return Err(ProviderError::Unsupported("embeddings"));
        }
        let vocab = self.provider.model.vocab();
        let n_vocab = self.provider.model.n_vocab() as u32;
        let limit = (self.slot_ctx as usize).min(self.batch_size);
        let mut rows = Vec::with_capacity(request.inputs.len());
        for (i, input) in request.inputs.iter().enumerate() {
            let mut tokens = match input {
                EmbeddingInput::Text(t) => vocab.tokenize(t.as_bytes(), true, false),
                EmbeddingInput::Tokens(ids) => {
                    if let Some(bad) = ids.iter().find(|&&t| t >= n_vocab) {
                        return Err(ProviderError::BadInput {
                            param: format!("input[{i}]"),
                            message: format!(
                                "token id {bad} is outside the model's vocabulary (0..{n_vocab})"
                            ),
                        });
                    }
                    ids.iter().map(|&t| LlamaToken(t as i32)).collect()
                }
            };
            tokens.truncate(limit);
            if tokens.is_empty() {
                return Err(ProviderError::BadInput {
                    param: format!("input[{i}]"),
                    message: format!("input {i} has no tokens"),
                });
            }
            rows.push(tokens);
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut start = 0;
        while start < rows.len() {
            // A group: as many rows as fit the batch and the slots.
            let mut end = start;
            let mut tokens = 0;
            // One input per decode: with several sequences in one batch, llama.cpp's pooled
            // embeddings for this context setup came out different from the same input alone.
            while end < rows.len() && end - start < 1 && tokens + rows[end].len() <= self.batch_size
            {
                tokens += rows[end].len();
                end += 1;
            }
            self.batch.clear();
            for (seq_id, row) in rows[start..end].iter().enumerate() {
                for (pos, &t) in row.iter().enumerate() {
                    self.batch
                        .add(t, pos as i32, &[seq_id as i32], true)
                        .map_err(|e| ProviderError::Inference(e.to_string()))?;
                }
            }
            let decoded = self.ctx.decode(&mut self.batch);
            let mut group = Vec::with_capacity(end - start);
            let mut failure = decoded
                .err()
                .map(|e| ProviderError::Inference(format!("decode failed: {e}")));
            if failure.is_none() {
                for (seq_id, row) in rows[start..end].iter().enumerate() {
                    match self.ctx.embeddings_seq_ith(seq_id as i32) {
                        Ok(v) => {
                            let mut vector = v.to_vec();
                            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                            if norm > 0.0 {
                                vector.iter_mut().for_each(|x| *x /= norm);
                            }
                            group.push(Embedding {
                                vector,
                                tokens: row.len() as u32,
                            });
                        }
                        Err(e) => {
                            failure = Some(ProviderError::Inference(format!("no embedding: {e}")));
                            break;
                        }
                    }
                }
            }
            for seq_id in 0..(end - start) {
                let _ = self.ctx.clear_kv_cache_seq(Some(seq_id as u32), None, None);
            }
            if let Some(err) = failure {
                return Err(err);
            }
            out.extend(group);
            start = end;
        }
        Ok(out)
    }
}
