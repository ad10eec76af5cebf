//! How a job ended, told once to whoever routed it (the router's outcome breakers and its
//! tenant's token budget): its first final event, an answer (`Finished`, embeddings, tensors)
//! or an error. A job dropped unanswered, expired in its queue or cancelled tells nothing (the
//! restart breaker and the deadline speak for those).

use std::sync::Mutex;

use golek_protocol::inference::InferenceEvent;
use golek_protocol::ErrorInfo;

type Hook = Box<dyn FnOnce(&Result<InferenceEvent, ErrorInfo>) + Send>;

#[derive(Default)]
pub struct OutcomeHook(Mutex<Option<Hook>>);

impl OutcomeHook {
    /// `f` is called once, with the job's first final event: its answer (`Finished` with the
    /// usage, embeddings, tensors) or its error.
    pub fn new(f: impl FnOnce(&Result<InferenceEvent, ErrorInfo>) + Send + 'static) -> Self {
        OutcomeHook(Mutex::new(Some(Box::new(f))))
    }

    fn take(&self) -> Option<Hook> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Tells the outcome if `event` is the job's first final one.
    pub(crate) fn see(&self, event: &Result<InferenceEvent, ErrorInfo>) {
        let last = matches!(
            event,
            Err(_)
                | Ok(InferenceEvent::Finished { .. }
                    | InferenceEvent::Embeddings(_)
                    | InferenceEvent::Tensors(_))
        );
        if last {
            if let Some(f) = self.take() {
                f(event);
            }
        }
    }

    /// The job will end without telling (it expired in its queue).
    pub(crate) fn disarm(&self) {
        let _ = self.take();
    }
}

impl std::fmt::Debug for OutcomeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutcomeHook")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golek_protocol::ErrorCode;
    use std::sync::Arc;

    #[test]
    fn the_first_final_event_is_told_once() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let hook = OutcomeHook::new({
            let told = told.clone();
            move |event: &Result<InferenceEvent, ErrorInfo>| {
                told.lock()
                    .unwrap()
                    .push(event.as_ref().err().map(|e| e.code))
            }
        });
        hook.see(&Ok(InferenceEvent::Started {
            prompt_tokens: 1,
            cached_tokens: 0,
        }));
        assert!(told.lock().unwrap().is_empty(), "not final");
        hook.see(&Err(ErrorInfo::new(ErrorCode::ProviderError, "x")));
        hook.see(&Ok(InferenceEvent::Embeddings(vec![])));
        assert_eq!(*told.lock().unwrap(), vec![Some(ErrorCode::ProviderError)]);

        let quiet = OutcomeHook::new(|_: &Result<InferenceEvent, ErrorInfo>| {
            panic!("a disarmed hook tells nothing")
        });
        quiet.disarm();
        quiet.see(&Ok(InferenceEvent::Embeddings(vec![])));
    }
}
