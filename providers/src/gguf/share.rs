//! Prefix sharing across slots: a prompt whose start another slot already holds (a system
//! prompt shared by many chats, say) takes a copy of that slot's KV instead of prefilling it.
//! Without a unified KV cache llama.cpp copies only whole streams between sequences, so the
//! chosen slot gets the donor's whole stream and then drops what lies past the shared prefix.

use llama_cpp_2::token::LlamaToken;

use super::cache::common_prefix;
use super::scheduler::Scheduler;

impl Scheduler<'_> {
    /// Gives slot `dst`, which already reuses `reuse` tokens of `prompt`, the longer prefix
    /// another slot holds, when that saves at least `prompt_cache_min_tokens` of prefill;
    /// returns the tokens `dst` now reuses.
    pub(super) fn borrow_prefix(
        &mut self,
        dst: usize,
        prompt: &[LlamaToken],
        reuse: usize,
    ) -> usize {
        let min_gain = self.provider.params.prompt_cache_min_tokens as usize;
        let best = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != dst && s.seq.as_ref().is_none_or(|q| q.waits_for.is_none()))
            .map(|(i, s)| (i, common_prefix(&s.cached, prompt)))
            .max_by_key(|(_, n)| *n);
        let Some((src, shared)) = best else {
            return reuse;
        };
        // At least one prompt token is left to prefill: its logits start the generation.
        let shared = shared.min(prompt.len().saturating_sub(1));
        if shared < reuse.saturating_add(min_gain) {
            return reuse;
        }
        if let Err(e) = self
            .ctx
            .copy_kv_cache_seq(src as i32, dst as i32, None, None)
        {
            tracing::warn!(error = %e, "cannot copy a shared prefix");
            return reuse;
        }
        let _ = self
            .ctx
            .clear_kv_cache_seq(Some(dst as u32), Some(shared as u32), None);
        let prefix = self.slots[src].cached[..shared].to_vec();
        self.slots[dst].cached = prefix;
        shared
    }
}
