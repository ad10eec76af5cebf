//! What a sequence sends as its tokens are sampled: text (UTF-8 reassembled, stop strings held
//! back), tool calls parsed out of it, token ids and log probabilities, and the end.

use std::time::Instant;

use golek_protocol::generation::TokenLogprobs;
use golek_protocol::inference::{FinishReason, InferenceEvent};
use llama_cpp_2::token::LlamaToken;

use super::scheduler::{Scheduler, Sequence};
use super::text::Released;
use crate::metrics as m;

/// Sends text (through the tool scanner when tools are on) with the ids and log probabilities
/// of the tokens it came from; `end` flushes what the scanner holds.
fn send(seq: &mut Sequence, text: &str, end: bool) {
    let (text, calls) = match seq.tools.as_mut() {
        Some(scanner) => {
            let mut out = scanner.push(text);
            if end {
                let rest = scanner.finish();
                out.text.push_str(&rest.text);
                out.calls.extend(rest.calls);
            }
            (out.text, out.calls)
        }
        None => (text.to_string(), Vec::new()),
    };
    if !text.is_empty() || (end && !seq.unsent_ids.is_empty()) {
        seq.job.emit(Ok(InferenceEvent::Text {
            choice: seq.choice,
            text,
            token_ids: std::mem::take(&mut seq.unsent_ids),
            logprobs: std::mem::take(&mut seq.unsent_logprobs),
        }));
    }
    for call in calls {
        seq.job.emit(Ok(InferenceEvent::ToolCall {
            choice: seq.choice,
            call,
        }));
    }
}

impl Scheduler<'_> {
    pub(super) fn on_token(
        &mut self,
        slot: usize,
        token: LlamaToken,
        logprobs: Option<TokenLogprobs>,
    ) {
        let name = self.provider.name.clone();
        let vocab = self.provider.model.vocab();
        let Some(seq) = self.slots[slot].seq.as_mut() else {
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
        if seq.generated == 1 {
            // Prefill is over with the first token: decoding starts.
            seq.work = seq.job.work_span("decode");
        }
        seq.unsent_ids.push(token.0 as u32);
        seq.unsent_logprobs.extend(logprobs);
        metrics::counter!(m::GEN_TOKENS_TOTAL, "model" => name).increment(1);
        let piece = vocab.token_to_piece(token, false, None);
        let text = seq.utf8.push(&piece);
        match seq.stop.push(&text) {
            Released::Text(t) => send(seq, &t, false),
            Released::Stopped(t) => {
                send(seq, &t, true);
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
    pub(super) fn finish(&mut self, slot: usize, reason: FinishReason) {
        let Some(seq) = self.slots[slot].seq.as_mut() else {
            return;
        };
        let rest = seq.utf8.finish();
        let mut reason = reason;
        let tail = match seq.stop.push(&rest) {
            Released::Text(t) => t + &seq.stop.finish(),
            Released::Stopped(t) => {
                reason = FinishReason::Stop;
                t
            }
        };
        send(seq, &tail, true);
        self.finish_sent(slot, reason);
    }

    pub(super) fn finish_sent(&mut self, slot: usize, reason: FinishReason) {
        if let Some(seq) = self.free(slot) {
            let reason = match reason {
                FinishReason::Stop if seq.tools.as_ref().map_or(0, |t| t.calls_made) > 0 => {
                    FinishReason::ToolCalls
                }
                other => other,
            };
            seq.job.emit(Ok(InferenceEvent::Finished {
                choice: seq.choice,
                reason,
                prompt_tokens: seq.prompt.len() as u32,
                completion_tokens: seq.generated,
                cached_tokens: seq.cached_tokens,
            }));
        }
    }
}
