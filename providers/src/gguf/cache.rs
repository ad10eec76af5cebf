//! The prompt cache's choice of slot: a slot keeps the KV cache of its last sequence, and a new
//! request goes to the free slot whose cached tokens share the longest prefix with its prompt
//! (at least `min_prefix` tokens), else to the least recently used free slot. While an empty
//! slot is free, a slot that shares less than half of its last prompt is left alone: a new
//! conversation that shares only a system prompt with another's history does not evict it,
//! while a retried prompt or the next turn of the same chat reuses it.

/// A free slot as the choice sees it.
#[derive(Debug, Clone, Copy)]
pub struct FreeSlot<'a, T> {
    pub index: usize,
    pub cached: &'a [T],
    /// The length of the prompt that last ran in the slot.
    pub prompt_len: usize,
    /// A counter value: smaller means used longer ago.
    pub last_used: u64,
}

/// Tokens two sequences share from the start.
pub fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The slot to use and how many of the prompt's tokens its cache already holds. At least one
/// prompt token is always left to prefill (its logits start the generation).
pub fn pick<T: PartialEq>(
    free: &[FreeSlot<'_, T>],
    prompt: &[T],
    min_prefix: usize,
) -> Option<(usize, usize)> {
    let empty_free = free.iter().any(|s| s.cached.is_empty());
    let best = free
        .iter()
        .map(|s| (s, common_prefix(s.cached, prompt)))
        .filter(|(_, n)| *n >= min_prefix.max(1))
        .filter(|(s, n)| !empty_free || n.saturating_mul(2) >= s.prompt_len.min(s.cached.len()))
        // Longest prefix; among equals the least recently used keeps its other cache longer
        // untouched, so prefer the most recently used.
        .max_by_key(|(s, n)| (*n, s.last_used));
    if let Some((slot, n)) = best {
        return Some((slot.index, n.min(prompt.len().saturating_sub(1))));
    }
    free.iter()
        .min_by_key(|s| (!s.cached.is_empty(), s.last_used))
        .map(|s| (s.index, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(index: usize, cached: &[u32], last_used: u64) -> FreeSlot<'_, u32> {
        FreeSlot {
            index,
            cached,
            prompt_len: cached.len(),
            last_used,
        }
    }

    #[test]
    fn the_longest_shared_prefix_wins_above_the_minimum() {
        let a = [1, 2, 3, 4, 5];
        let b = [1, 2, 9];
        let free = [slot(0, &a, 5), slot(1, &b, 9), slot(2, &[], 1)];
        assert_eq!(pick(&free, &[1, 2, 3, 4, 7, 8], 2), Some((0, 4)));
        // Sharing 2 of 6 cached tokens would evict the rest while an empty slot is free.
        let long = [1, 2, 3, 4, 5, 6];
        let spare = [slot(0, &long, 5), slot(2, &[], 1)];
        assert_eq!(pick(&spare, &[1, 2, 9], 2), Some((2, 0)));
        assert_eq!(pick(&spare[..1], &[1, 2, 9], 2), Some((0, 2)));
        // The same prompt again reuses it, however long the answer that followed it was.
        let answered = [
            FreeSlot {
                prompt_len: 3,
                ..slot(0, &long, 5)
            },
            slot(2, &[], 1),
        ];
        assert_eq!(pick(&answered, &[1, 2, 3], 2), Some((0, 2)));
        // Below the minimum: the empty slot first, then the least recently used.
        assert_eq!(pick(&free, &[1, 2, 3, 4, 7, 8], 5), Some((2, 0)));
        let used = [slot(0, &a, 5), slot(1, &b, 3)];
        assert_eq!(pick(&used, &[7], 1), Some((1, 0)));
        assert_eq!(pick::<u32>(&[], &[1], 1), None);
    }

    #[test]
    fn a_fully_cached_prompt_still_prefills_its_last_token() {
        let a = [1, 2, 3];
        assert_eq!(pick(&[slot(0, &a, 1)], &[1, 2, 3], 1), Some((0, 2)));
        assert_eq!(pick(&[slot(0, &a, 1)], &[1, 2], 1), Some((0, 1)));
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
