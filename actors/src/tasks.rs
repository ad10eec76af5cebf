//! Owned tasks: every task a manager starts is spawned through a [`Tasks`], which tracks it and
//! cancels it with its owner. Shutdown is one call ([`Tasks::shutdown`]): cancel, then wait
//! for every tracked task to end, so nothing outlives the node.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A set of tracked tasks under one cancellation token. Clones share the set.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// A child set: cancelled with this one (or on its own), and tracked with this one, so
    /// the owner's [`Tasks::shutdown`] waits for the child's tasks too.
    pub fn child(&self) -> Tasks {
        Tasks {
            tracker: self.tracker.clone(),
            token: self.token.child_token(),
        }
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Runs `future` until it ends or the set is cancelled.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = future => {}
            }
        })
    }

    /// Runs `future` to its end even when the set is cancelled (it must watch
    /// [`Tasks::token`] itself), still tracked.
    pub fn spawn_owned<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(future)
    }

    /// Sends `message` to `actor` after `delay`, on a tracked task (ractor's own `send_after`
    /// would leave an untracked task sleeping past shutdown).
    pub fn send_after<M: ractor::Message>(
        &self,
        actor: &ractor::ActorRef<M>,
        delay: Duration,
        message: M,
    ) {
        let actor = actor.clone();
        self.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = actor.cast(message);
        });
    }

    /// Tasks still running (a child's included).
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancels every task and waits (up to `grace`) for all of them to end. Returns whether
    /// they all did.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_ends_every_task_including_children() {
        let tasks = Tasks::new();
        let child = tasks.child();
        for _ in 0..3 {
            tasks.spawn(std::future::pending());
            child.spawn(std::future::pending());
        }
        let inner = child.clone();
        tasks.spawn_owned(async move {
            inner.token().cancelled().await;
        });
        assert_eq!(tasks.len(), 7);
        // A child cancelled on its own ends its tasks only.
        let only = tasks.child();
        only.spawn(std::future::pending());
        only.token().cancel();
        assert!(!tasks.is_cancelled());
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert!(tasks.is_empty());
        assert!(child.is_cancelled());
    }
}
