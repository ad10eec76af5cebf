//! A long-lived loop (an accept loop, a publish tick, a resource reader) as a supervised actor.
//!
//! The actor runs its loop as a tracked task under a child cancellation token and watches it:
//! a loop that panics, or ends while nobody asked it to, fails the actor, so its supervisor
//! sees `ActorFailed` and restarts it by its rules. Stopping the actor cancels the loop; the
//! loop's state that must outlive a restart lives in what its factory captures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::CancellationToken;

use crate::tasks::Tasks;

/// Makes one run of the loop; called again on every restart.
pub type LoopFn =
    Arc<dyn Fn(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Wraps an async closure as a [`LoopFn`].
pub fn loop_fn<F, Fut>(f: F) -> LoopFn
where
    F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |token| Box::pin(f(token)))
}

pub struct LoopActor;

pub struct LoopArgs {
    pub name: String,
    /// The owner's task set; the loop runs in a child of it.
    pub tasks: Tasks,
    pub run: LoopFn,
}

pub enum LoopMsg {
    /// The loop's task ended: `Err` with the panic message, `Ok` when it returned.
    Ended(Result<(), String>),
}

pub struct LoopState {
    name: String,
    tasks: Tasks,
}

/// The text of a panic payload.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

impl Actor for LoopActor {
    type Msg = LoopMsg;
    type State = LoopState;
    type Arguments = LoopArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: LoopArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let tasks = args.tasks.child();
        let handle = tasks.spawn((args.run)(tasks.token().clone()));
        tasks.spawn_owned(async move {
            let ended = match handle.await {
                Ok(()) => Ok(()),
                Err(e) if e.is_panic() => {
                    Err(format!("panicked: {}", panic_text(&*e.into_panic())))
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = myself.cast(LoopMsg::Ended(ended));
        });
        Ok(LoopState {
            name: args.name,
            tasks,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let LoopMsg::Ended(ended) = message;
        if state.tasks.is_cancelled() {
            myself.stop(None);
            return Ok(());
        }
        // A failed actor gets no `post_stop`: end what the loop left behind here.
        state.tasks.token().cancel();
        match ended {
            Ok(()) => Err(format!("loop {} ended on its own", state.name).into()),
            Err(e) => Err(format!("loop {} {e}", state.name).into()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Whatever ended the actor, its loop ends with it (the owner waits on the tasks).
        state.tasks.token().cancel();
        Ok(())
    }
}
