//! Fair turns between tenants in a model's queue: jobs taken off the channel wait in one line
//! per tenant (requests without a tenant share one line), and the worker takes the next job
//! from each line in turn (round robin), so one tenant's flood queues behind its own requests,
//! not in front of everyone else's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::queue::Job;

type Line = Option<Arc<str>>;

#[derive(Default)]
pub(crate) struct FairLines {
    lines: BTreeMap<Line, VecDeque<Job>>,
    /// The line served last; the next turn goes to the one after it.
    last: Option<Line>,
}

impl FairLines {
    pub(crate) fn push(&mut self, job: Job) {
        self.lines
            .entry(job.tenant.clone())
            .or_default()
            .push_back(job);
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The first job of the next line after the one served last.
    pub(crate) fn pop(&mut self) -> Option<Job> {
        let next = match &self.last {
            Some(last) => self
                .lines
                .range::<Line, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .next()
                .or_else(|| self.lines.iter().next())
                .map(|(k, _)| k.clone()),
            None => self.lines.keys().next().cloned(),
        }?;
        let line = self.lines.get_mut(&next)?;
        let job = line.pop_front();
        if line.is_empty() {
            self.lines.remove(&next);
        }
        self.last = Some(next);
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::OutcomeHook;
    use golek_protocol::inference::{EmbeddingInput, EmbeddingsRequest, InferenceRequest};
    use std::time::{Duration, Instant};

    fn job(tenant: Option<&str>, n: usize) -> Job {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let now = Instant::now();
        Job {
            request: InferenceRequest::Embeddings(EmbeddingsRequest {
                inputs: vec![EmbeddingInput::Text(n.to_string())],
            }),
            events,
            enqueued_at: now,
            deadline: now + Duration::from_secs(60),
            outcome: OutcomeHook::default(),
            tenant: tenant.map(Into::into),
            span: tracing::Span::none(),
            queued: None,
        }
    }

    fn label(j: &Job) -> String {
        let InferenceRequest::Embeddings(e) = &j.request else {
            unreachable!()
        };
        let EmbeddingInput::Text(n) = &e.inputs[0] else {
            unreachable!()
        };
        format!("{}{n}", j.tenant.as_deref().unwrap_or("-"))
    }

    #[test]
    fn tenants_take_turns_whoever_queued_first() {
        let mut lines = FairLines::default();
        for n in 0..4 {
            lines.push(job(Some("flood"), n));
        }
        lines.push(job(Some("calm"), 0));
        lines.push(job(None, 0));
        lines.push(job(Some("flood"), 4));
        let order: Vec<String> = std::iter::from_fn(|| lines.pop())
            .map(|j| label(&j))
            .collect();
        assert_eq!(
            order,
            ["-0", "calm0", "flood0", "flood1", "flood2", "flood3", "flood4"]
        );
        assert!(lines.is_empty());

        // A tenant arriving while another's line is long gets the next turn.
        for n in 0..3 {
            lines.push(job(Some("flood"), n));
        }
        assert_eq!(label(&lines.pop().unwrap()), "flood0");
        lines.push(job(Some("calm"), 1));
        assert_eq!(label(&lines.pop().unwrap()), "calm1");
        assert_eq!(label(&lines.pop().unwrap()), "flood1");
    }
}
