//! How a job ended, told once to whoever routed it (the router's outcome breakers): its first
//! final event decides: an answer (`Finished`, embeddings, tensors) is a success, an error is
//! its code. A job dropped unanswered, expired in its queue or cancelled tells nothing (the
//! restart breaker and the deadline speak for those).

use std::sync::Mutex;

use golek_protocol::inference::InferenceEvent;
use golek_protocol::{ErrorCode, ErrorInfo};

type Hook = Box<dyn FnOnce(Option<ErrorCode>) + Send>;

#[derive(Default)]
pub struct OutcomeHook(Mutex<Option<Hook>>);

impl OutcomeHook {
    /// `f` is called once: with `None` when the job answered, or the code of its error.
    pub fn new(f: impl FnOnce(Option<ErrorCode>) + Send + 'static) -> Self {
        OutcomeHook(Mutex::new(Some(Box::new(f))))
    }

    fn take(&self) -> Option<Hook> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Tells the outcome if `event` is the job's first final one.
    pub(crate) fn see(&self, event: &Result<InferenceEvent, ErrorInfo>) {
        let code = match event {
            Err(e) => Some(e.code),
            Ok(
                InferenceEvent::Finished { .. }
                | InferenceEvent::Embeddings(_)
                | InferenceEvent::Tensors(_),
            ) => None,
            Ok(_) => return,
        };
        if let Some(f) = self.take() {
            f(code);
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
    use std::sync::Arc;

    #[test]
    fn the_first_final_event_is_told_once() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let hook = OutcomeHook::new({
            let told = told.clone();
            move |code| told.lock().unwrap().push(code)
        });
        hook.see(&Ok(InferenceEvent::Started {
            prompt_tokens: 1,
            cached_tokens: 0,
        }));
        assert!(told.lock().unwrap().is_empty(), "not final");
        hook.see(&Err(ErrorInfo::new(ErrorCode::ProviderError, "x")));
        hook.see(&Ok(InferenceEvent::Embeddings(vec![])));
        assert_eq!(*told.lock().unwrap(), vec![Some(ErrorCode::ProviderError)]);

        let quiet = OutcomeHook::new(|_| panic!("a disarmed hook tells nothing"));
        quiet.disarm();
        quiet.see(&Ok(InferenceEvent::Embeddings(vec![])));
    }
}
