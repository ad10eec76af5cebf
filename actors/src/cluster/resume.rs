//! Stream continuation: what the entry node remembers of a generation stream it forwards, so
//! that when the serving node fails mid-stream another replica can go on from the token ids
//! already delivered (never re-tokenised text), and the client sees one stream: one `Started`,
//! the text once, and usage that counts every token.

use golek_protocol::inference::{FinishReason, InferenceEvent, InferenceRequest};

/// What to do after the serving node failed mid-stream.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Send this request (the continuation) to another replica.
    Resubmit(InferenceRequest),
    /// Nothing is left to generate: end the stream with this event.
    Finish(InferenceEvent),
}

#[derive(Debug)]
pub struct Resume {
    /// Continuations left; `None` when this request cannot be continued at all.
    left: Option<u32>,
    /// The first attempt's `Started` figures, once seen.
    started: Option<(u32, u32)>,
    /// Token ids delivered to the client, across attempts.
    produced: Vec<u32>,
    /// Tokens delivered before the current attempt began (what its usage does not count).
    base: u32,
}

impl Resume {
    /// Only single-choice, unconstrained generation without tools can be continued: its state
    /// is exactly the prompt plus the token ids delivered.
    pub fn new(request: &InferenceRequest, max_continuations: u32) -> Self {
        let continuable = match request {
            InferenceRequest::Generate(g) => {
                g.n == 1 && !g.constrained() && g.tools.is_empty() && max_continuations > 0
            }
            _ => false,
        };
        Resume {
            left: continuable.then_some(max_continuations),
            started: None,
            produced: Vec::new(),
            base: 0,
        }
    }

    /// Whether an attempt now is a continuation (its `Started` is not the client's).
    pub fn resumed(&self) -> bool {
        self.started.is_some()
    }

    /// The event as the client should see it; `None` drops it.
    pub fn pass(&mut self, event: InferenceEvent) -> Option<InferenceEvent> {
        match event {
            InferenceEvent::Started {
                prompt_tokens,
                cached_tokens,
            } => {
                if self.started.is_some() {
                    return None;
                }
                self.started = Some((prompt_tokens, cached_tokens));
                Some(InferenceEvent::Started {
                    prompt_tokens,
                    cached_tokens,
                })
            }
            InferenceEvent::Text {
                choice,
                text,
                token_ids,
                logprobs,
            } => {
                if token_ids.is_empty() && !text.is_empty() {
                    // A replica that does not say which tokens it sent: nothing to go on from.
                    self.left = None;
                }
                self.produced.extend_from_slice(&token_ids);
                Some(InferenceEvent::Text {
                    choice,
                    text,
                    token_ids,
                    logprobs,
                })
            }
            InferenceEvent::ToolCall { choice, call } => {
                self.left = None;
                Some(InferenceEvent::ToolCall { choice, call })
            }
            InferenceEvent::Finished {
                choice,
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            } => {
                let (prompt_tokens, cached_tokens) =
                    self.started.unwrap_or((prompt_tokens, cached_tokens));
                Some(InferenceEvent::Finished {
                    choice,
                    reason,
                    prompt_tokens,
                    completion_tokens: completion_tokens.saturating_add(self.base),
                    cached_tokens,
                })
            }
            other => Some(other),
        }
    }

    /// The serving node failed after output reached the client: what comes next, or `None`
    /// when the stream cannot continue (it then ends with an error). Uses one continuation.
    pub fn on_broken(&mut self, original: &InferenceRequest) -> Option<Next> {
        let left = self.left?;
        if left == 0 {
            return None;
        }
        let InferenceRequest::Generate(g) = original else {
            return None;
        };
        self.left = Some(left - 1);
        let done = u32::try_from(self.produced.len()).unwrap_or(u32::MAX);
        self.base = done;
        let remaining = match g.max_tokens {
            Some(max) if done >= max => {
                let (prompt_tokens, cached_tokens) = self.started.unwrap_or((0, 0));
                return Some(Next::Finish(InferenceEvent::Finished {
                    choice: 0,
                    reason: FinishReason::Length,
                    prompt_tokens,
                    completion_tokens: done,
                    cached_tokens,
                }));
            }
            Some(max) => Some(max - done),
            None => None,
        };
        let mut next = g.clone();
        next.max_tokens = remaining;
        next.continuation = self.produced.clone();
        Some(Next::Resubmit(InferenceRequest::Generate(next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::inference::{GenerateRequest, Prompt, SamplingParams};

    fn generate(max_tokens: Option<u32>) -> InferenceRequest {
        InferenceRequest::Generate(GenerateRequest::new(
            Prompt::Text("hi".into()),
            max_tokens,
            SamplingParams::default(),
        ))
    }

    fn text(ids: &[u32]) -> InferenceEvent {
        InferenceEvent::Text {
            choice: 0,
            text: "x".repeat(ids.len()),
            token_ids: ids.to_vec(),
            logprobs: vec![],
        }
    }

    fn finished(completion_tokens: u32, prompt_tokens: u32) -> InferenceEvent {
        InferenceEvent::Finished {
            choice: 0,
            reason: FinishReason::Length,
            prompt_tokens,
            completion_tokens,
            cached_tokens: 0,
        }
    }

    #[test]
    fn a_continuation_carries_the_ids_and_the_client_sees_one_stream() {
        let original = generate(Some(10));
        let mut r = Resume::new(&original, 2);
        let started = InferenceEvent::Started {
            prompt_tokens: 4,
            cached_tokens: 1,
        };
        assert!(r.pass(started.clone()).is_some());
        r.pass(text(&[5, 6])).unwrap();
        r.pass(text(&[7])).unwrap();
        let Some(Next::Resubmit(InferenceRequest::Generate(next))) = r.on_broken(&original) else {
            panic!()
        };
        assert_eq!(next.continuation, vec![5, 6, 7]);
        assert_eq!(next.max_tokens, Some(7));
        // The next replica's Started (prompt plus continuation) is not the client's.
        let again = InferenceEvent::Started {
            prompt_tokens: 7,
            cached_tokens: 0,
        };
        assert_eq!(r.pass(again), None);
        r.pass(text(&[8])).unwrap();
        // Usage counts every token, and the prompt is the client's.
        assert_eq!(r.pass(finished(1, 7)), Some(finished_with(4, 4, 1)));
    }

    fn finished_with(
        completion_tokens: u32,
        prompt_tokens: u32,
        cached_tokens: u32,
    ) -> InferenceEvent {
        InferenceEvent::Finished {
            choice: 0,
            reason: FinishReason::Length,
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        }
    }

    #[test]
    fn the_limit_and_what_cannot_continue() {
        let original = generate(None);
        let mut r = Resume::new(&original, 1);
        r.pass(text(&[1])).unwrap();
        assert!(matches!(r.on_broken(&original), Some(Next::Resubmit(_))));
        assert_eq!(r.on_broken(&original), None, "one continuation only");

        let mut off = Resume::new(&original, 0);
        assert_eq!(off.on_broken(&original), None);

        let mut n2 = generate(None);
        if let InferenceRequest::Generate(g) = &mut n2 {
            g.n = 2;
        }
        assert_eq!(Resume::new(&n2, 2).on_broken(&n2), None);

        // Text without ids (a remote replica) cannot be continued.
        let mut r = Resume::new(&original, 2);
        r.pass(InferenceEvent::Text {
            choice: 0,
            text: "abc".into(),
            token_ids: vec![],
            logprobs: vec![],
        });
        assert_eq!(r.on_broken(&original), None);
    }

    #[test]
    fn nothing_left_to_generate_finishes_the_stream() {
        let original = generate(Some(2));
        let mut r = Resume::new(&original, 2);
        r.pass(InferenceEvent::Started {
            prompt_tokens: 3,
            cached_tokens: 0,
        });
        r.pass(text(&[1, 2])).unwrap();
        assert_eq!(
            r.on_broken(&original),
            Some(Next::Finish(finished_with(2, 3, 0)))
        );
    }
}
