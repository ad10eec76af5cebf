//! A sequence's sampler chain, and the log probabilities of the token it picked.

use std::time::{SystemTime, UNIX_EPOCH};

use golek_protocol::generation::{TokenLogprobs, TokenProb};
use golek_protocol::inference::SamplingParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// The chain: the grammar first (it masks what may not come next), penalties, then greedy or
/// top-k / top-p / min-p / temperature and a seeded draw. `choice` shifts the seed so that the
/// choices of one request differ.
pub fn chain(
    params: &SamplingParams,
    n_vocab: i32,
    grammar: Option<LlamaSampler>,
    choice: u32,
) -> LlamaSampler {
    let mut chain = Vec::new();
    if let Some(g) = grammar {
        chain.push(g);
    }
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
            chain.push(LlamaSampler::top_k(params.top_k.min(i32::MAX as u32) as i32));
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
        chain.push(LlamaSampler::dist((seed as u32).wrapping_add(choice)));
    }
    LlamaSampler::chain_simple(chain)
}

/// Log-softmax of the model's logits at one position: the chosen token's log probability and
/// the `top` most likely tokens (the model's own distribution, before sampling settings).
pub fn logprobs(
    model: &LlamaModel,
    logits: &[f32],
    chosen: LlamaToken,
    top: usize,
) -> TokenLogprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln() + max;
    let prob = |id: usize| TokenProb {
        id: id as u32,
        bytes: model
            .vocab()
            .token_to_piece(LlamaToken(id as i32), false, None),
        logprob: logits.get(id).map_or(f32::NEG_INFINITY, |&l| l - log_sum),
    };
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let top = top.min(order.len());
    if top > 0 {
        order.select_nth_unstable_by(top - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(top);
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    } else {
        order.clear();
    }
    TokenLogprobs {
        token: prob(chosen.0.max(0) as usize),
        top: order.into_iter().map(prob).collect(),
    }
}
