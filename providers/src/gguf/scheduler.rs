//! The continuous-batching loop that runs on a GGUF provider's worker thread.
//!
//! Each turn: admit queued requests into free slots (blocking only when nothing runs), drop
//! sequences whose client has gone, then one decode call that carries one token for every
//! decoding sequence plus prompt chunks for the sequences still prefilling, within
//! `batch_size`. Sampled tokens stream out at once.
//!
//! Prompt cache: a slot keeps the KV of its last sequence (`Slot::cached` mirrors what the KV
//! holds, position by position); a new prompt goes to the free slot that shares the longest
//! prefix with it (see [`super::cache`]), or copies a longer prefix from another slot (see
//! [`super::share`]), and only the rest is prefilled.
//!
//! `n > 1`: the request takes `n` slots; the first prefills the prompt, the others wait for
//! it, then get a full copy of its KV stream (the only copy llama.cpp allows between the
//! streams of a non-unified cache) and sample from the same logits.

use std::rc::Rc;
use std::time::Instant;

use golek_protocol::generation::TokenLogprobs;
use golek_protocol::inference::{GenerateRequest, InferenceEvent, InferenceRequest, Prompt};
use golek_protocol::ErrorInfo;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::cache::{self, FreeSlot};
use super::grammar::Grammars;
use super::text::{StopMatcher, Utf8Stream};
use super::tools::ToolScanner;
use super::{sampling, slot_context, GgufProvider};
use crate::metrics as m;
use crate::queue::{Job, JobQueue};
use crate::{ProviderError, Result};

pub(super) struct Sequence {
    pub(super) job: Rc<Job>,
    pub(super) choice: u32,
    pub(super) prompt: Rc<Vec<LlamaToken>>,
    pub(super) prefilled: usize,
    pub(super) n_past: i32,
    pub(super) sampler: LlamaSampler,
    /// The last sampled token, decoded in the next step.
    pub(super) next_token: Option<LlamaToken>,
    pub(super) generated: u32,
    pub(super) max_tokens: u32,
    pub(super) utf8: Utf8Stream,
    pub(super) stop: StopMatcher,
    pub(super) tools: Option<ToolScanner>,
    pub(super) admitted_at: Instant,
    pub(super) last_token_at: Option<Instant>,
    /// Token ids (and log probabilities) sampled since text was last sent.
    pub(super) unsent_ids: Vec<u32>,
    pub(super) unsent_logprobs: Vec<TokenLogprobs>,
    pub(super) logprobs: Option<u32>,
    pub(super) ignore_eos: bool,
    pub(super) cached_tokens: u32,
    /// For the extra choices of an `n > 1` request: the slot prefilling the shared prompt.
    pub(super) waits_for: Option<usize>,
    /// The work under way for it: `prefill` until its first token, then `decode` (a span in
    /// the request's trace; it ends with the sequence).
    pub(super) work: tracing::Span,
}

pub(super) struct Slot {
    /// The tokens whose KV this slot's sequence holds, from position 0.
    pub(super) cached: Vec<LlamaToken>,
    /// The length of the prompt that last ran here.
    prompt_len: usize,
    last_used: u64,
    pub(super) seq: Option<Sequence>,
}

pub struct Scheduler<'a> {
    pub(super) provider: &'a GgufProvider,
    pub(super) ctx: LlamaContext<'a>,
    pub(super) slots: Vec<Slot>,
    pub(super) batch: LlamaBatch<'static>,
    pub(super) slot_ctx: u32,
    pub(super) batch_size: usize,
    /// A job that needs more free slots than there are now (`n > 1`); it goes first.
    waiting: Option<Job>,
    grammars: Grammars,
    tick: u64,
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
            slots: (0..slots)
                .map(|_| Slot {
                    cached: Vec::new(),
                    prompt_len: 0,
                    last_used: 0,
                    seq: None,
                })
                .collect(),
            batch: LlamaBatch::new(batch_size.max(slots), 1),
            slot_ctx: slot_context(&provider.params),
            batch_size: batch_size.max(slots),
            waiting: None,
            grammars: Grammars::new(),
            tick: 0,
        }
    }

    fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.seq.is_some()).count()
    }

    fn free_slots(&self) -> usize {
        self.slots.len() - self.active()
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
        while self.free_slots() > 0 {
            let job = match self.waiting.take() {
                Some(job) => job,
                None if self.active() == 0 => match queue.next() {
                    Some(job) => job,
                    None => return Ok(false),
                },
                None => match queue.try_next() {
                    Some(job) => job,
                    None => break,
                },
            };
            if job.is_abandoned() {
                job.expire();
                continue;
            }
            match &job.request {
                InferenceRequest::Generate(request) => {
                    let request = request.clone();
                    if request.n as usize > self.free_slots()
                        && request.n as usize <= self.slots.len()
                    {
                        // Not enough free slots yet: it waits, and nothing overtakes it.
                        self.waiting = Some(job);
                        break;
                    }
                    if let Err(err) = self.start(job, &request) {
                        tracing::debug!(model = %self.provider.name, error = %err, "request refused");
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
        if request.n as usize > self.slots.len() {
            return Err(ProviderError::BadInput {
                param: "n".into(),
                message: format!(
                    "n: this model decodes at most {} sequences at once (its slots), got {}",
                    self.slots.len(),
                    request.n
                ),
            });
        }
        let (text, param) = match &request.prompt {
            Prompt::Text(t) => (t.clone(), "prompt"),
            Prompt::Chat(messages) => (self.provider.render_chat(messages, request)?, "messages"),
        };
        let bad = |message: String| ProviderError::BadInput {
            param: param.into(),
            message,
        };
        let mut prompt = self
            .provider
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, true);
        if prompt.is_empty() {
            return Err(bad(format!("{param}: the prompt has no tokens")));
        }
        // A stream resumed from another replica: the ids it generated follow the prompt, as
        // they were sampled (never re-tokenised from their text).
        let vocab = self.provider.model.n_vocab().max(0) as u32;
        if let Some(bad_id) = request.continuation.iter().find(|&&id| id >= vocab) {
            return Err(ProviderError::BadInput {
                param: "continuation".into(),
                message: format!(
                    "continuation: token id {bad_id} is not in this model's vocabulary of {vocab}"
                ),
            });
        }
        prompt.extend(request.continuation.iter().map(|&id| LlamaToken(id as i32)));
        let n = prompt.len() as u32;
        if n >= self.slot_ctx {
            return Err(bad(format!(
                "{param}: the prompt is {n} tokens; a sequence holds at most {} (n_ctx / slots), leaving room for at least one generated token",
                self.slot_ctx
            )));
        }
        let max_tokens = match request.max_tokens {
            Some(k) if n.checked_add(k).is_none_or(|total| total > self.slot_ctx) => {
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

    /// Takes `n` free slots for a request (the one with the best cached prefix first) and
    /// starts its sequences; a refused request is answered here.
    fn start(&mut self, job: Job, request: &GenerateRequest) -> Result<()> {
        let prepared = self.prepare(request).and_then(|(prompt, max_tokens)| {
            let grammars: Vec<Option<LlamaSampler>> = (0..request.n)
                .map(|_| self.grammars.sampler(&self.provider.model, request))
                .collect::<Result<_>>()?;
            Ok((prompt, max_tokens, grammars))
        });
        let (prompt, max_tokens, grammars) = match prepared {
            Ok(p) => p,
            Err(err) => {
                job.emit(Err(ErrorInfo::from(&err)));
                return Err(err);
            }
        };
        let use_cache = self.provider.params.prompt_cache;
        let min_prefix = self.provider.params.prompt_cache_min_tokens as usize;
        let mut taken: Vec<(usize, usize)> = Vec::with_capacity(request.n as usize);
        for choice in 0..request.n {
            let free: Vec<FreeSlot<'_, LlamaToken>> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| s.seq.is_none() && !taken.iter().any(|(t, _)| t == i))
                .map(|(index, s)| FreeSlot {
                    index,
                    cached: if use_cache && choice == 0 {
                        &s.cached
                    } else {
                        &[]
                    },
                    prompt_len: s.prompt_len,
                    last_used: s.last_used,
                })
                .collect();
            let Some(pick) = cache::pick(&free, &prompt, min_prefix) else {
                break;
            };
            taken.push(pick);
        }
        let Some(&(first, reuse)) = taken.first() else {
            // Not reached: a request is started only when its choices fit the free slots.
            let err = ProviderError::Inference("no free slot for the request".into());
            job.emit(Err(ErrorInfo::from(&err)));
            return Err(err);
        };
        // Drop what the chosen slots hold beyond the reused prefix.
        for &(slot, keep) in &taken {
            let keep = if slot == first { reuse } else { keep };
            let _ = self.ctx.clear_kv_cache_seq(
                Some(slot as u32),
                (keep > 0).then_some(keep as u32),
                None,
            );
            self.slots[slot].cached.truncate(keep);
        }
        let reuse = if use_cache {
            self.borrow_prefix(first, &prompt, reuse)
        } else {
            reuse
        };
        let n = prompt.len() as u32;
        let name = self.provider.name.clone();
        metrics::counter!(m::GEN_PROMPT_TOKENS_TOTAL, "model" => name.clone()).increment(n as u64);
        metrics::counter!(m::GEN_PROMPT_CACHED_TOKENS_TOTAL, "model" => name.clone())
            .increment(reuse as u64);
        metrics::counter!(m::GEN_PROMPT_PREFILLED_TOKENS_TOTAL, "model" => name)
            .increment((prompt.len() - reuse) as u64);
        job.emit(Ok(InferenceEvent::Started {
            prompt_tokens: n,
            cached_tokens: reuse as u32,
        }));
        let job = Rc::new(job);
        let prompt = Rc::new(prompt);
        let tools_on = !request.tools.is_empty()
            && request.tool_choice != golek_protocol::generation::ToolChoice::None;
        let now = Instant::now();
        self.tick += 1;
        for ((choice, &(slot, _)), grammar) in taken.iter().enumerate().zip(grammars) {
            let primary = slot == first;
            self.slots[slot].last_used = self.tick;
            self.slots[slot].prompt_len = prompt.len();
            self.slots[slot].seq = Some(Sequence {
                job: job.clone(),
                choice: choice as u32,
                prompt: prompt.clone(),
                prefilled: if primary { reuse } else { 0 },
                n_past: if primary { reuse as i32 } else { 0 },
                sampler: sampling::chain(
                    &request.sampling,
                    self.provider.model.n_vocab(),
                    grammar,
                    choice as u32,
                ),
                next_token: None,
                generated: 0,
                max_tokens,
                utf8: Utf8Stream::default(),
                stop: StopMatcher::new(request.stop.clone()),
                tools: tools_on.then(|| ToolScanner::new(request.tools.clone())),
                admitted_at: now,
                last_token_at: None,
                unsent_ids: Vec::new(),
                unsent_logprobs: Vec::new(),
                logprobs: request.logprobs,
                ignore_eos: request.sampling.ignore_eos,
                cached_tokens: reuse as u32,
                waits_for: (!primary).then_some(first),
                work: job.work_span("prefill"),
            });
        }
        Ok(())
    }

    /// Ends the sequence in `slot`; its KV stays as the slot's prompt cache when that is on.
    pub(super) fn free(&mut self, slot: usize) -> Option<Sequence> {
        let seq = self.slots[slot].seq.take();
        if !self.provider.params.prompt_cache || seq.as_ref().is_some_and(|s| s.waits_for.is_some())
        {
            let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
            self.slots[slot].cached.clear();
        }
        seq
    }

    /// Forgets every slot's cache (after a failed decode, the KV state is unknown).
    fn drop_all(&mut self) -> Vec<Sequence> {
        let mut out = Vec::new();
        for slot in 0..self.slots.len() {
            if let Some(seq) = self.slots[slot].seq.take() {
                out.push(seq);
            }
            let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
            self.slots[slot].cached.clear();
        }
        out
    }

    fn reap_abandoned(&mut self) {
        if self.waiting.as_ref().is_some_and(Job::is_abandoned) {
            if let Some(job) = self.waiting.take() {
                job.expire();
            }
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot]
                .seq
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
        let used: usize = self.slots.iter().map(|s| s.cached.len()).sum();
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
        for (slot, s) in self.slots.iter_mut().enumerate() {
            let Some(seq) = s.seq.as_mut() else { continue };
            if let Some(token) = seq.next_token.take() {
                self.batch
                    .add(token, seq.n_past, &[slot as i32], true)
                    .map_err(add_err)?;
                s.cached.push(token);
                sample_at.push((slot, self.batch.n_tokens() - 1));
                seq.n_past += 1;
                budget -= 1;
            }
        }
        for (slot, s) in self.slots.iter_mut().enumerate() {
            let Some(seq) = s.seq.as_mut() else { continue };
            if seq.waits_for.is_some() || seq.prefilled == seq.prompt.len() || budget == 0 {
                continue;
            }
            let take = budget.min(seq.prompt.len() - seq.prefilled);
            for k in 0..take {
                let pos = seq.prefilled + k;
                let last = pos + 1 == seq.prompt.len();
                self.batch
                    .add(seq.prompt[pos], pos as i32, &[slot as i32], last)
                    .map_err(add_err)?;
                s.cached.push(seq.prompt[pos]);
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
            // unknown, so they are dropped, caches included.
            tracing::warn!(model = %self.provider.name, error = %err, "decode failed");
            for seq in self.drop_all() {
                seq.job
                    .emit(Err(ErrorInfo::from(&ProviderError::Inference(format!(
                        "decode failed: {err}"
                    )))));
            }
            return Ok(());
        }
        let mut sample_at_all = Vec::with_capacity(sample_at.len());
        for (slot, index) in sample_at {
            sample_at_all.push((slot, index));
            // A prompt just prefilled: the choices waiting for it take a copy of its KV.
            let done_prefill = self.slots[slot]
                .seq
                .as_ref()
                .is_some_and(|s| s.generated == 0 && s.prefilled == s.prompt.len());
            if !done_prefill {
                continue;
            }
            for other in 0..self.slots.len() {
                let waits = self.slots[other]
                    .seq
                    .as_ref()
                    .is_some_and(|s| s.waits_for == Some(slot));
                if !waits {
                    continue;
                }
                if let Err(e) = self
                    .ctx
                    .copy_kv_cache_seq(slot as i32, other as i32, None, None)
                {
                    tracing::warn!(error = %e, "cannot share a prompt's KV");
                    continue;
                }
                let cached = self.slots[slot].cached.clone();
                if let Some(seq) = self.slots[other].seq.as_mut() {
                    seq.waits_for = None;
                    seq.prefilled = seq.prompt.len();
                    seq.n_past = seq.prompt.len() as i32;
                }
                self.slots[other].cached = cached;
                sample_at_all.push((other, index));
            }
        }
        for (slot, index) in sample_at_all {
            let Some(seq) = self.slots[slot].seq.as_mut() else {
                continue;
            };
            let token = seq.sampler.sample(&self.ctx, index);
            let lp = seq.logprobs.map(|k| {
                sampling::logprobs(
                    &self.provider.model,
                    self.ctx.get_logits_ith(index),
                    token,
                    k as usize,
                )
            });
            self.on_token(slot, token, lp);
        }
        Ok(())
    }
}
