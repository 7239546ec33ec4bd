//! The server follows the engine's fail-stop. A failed log write, sync, apply or checkpoint
//! stops a shard for good (the log is never retried), so every later command would be
//! answered `engine_failed` forever. Instead the first command answered `engine_failed`
//! (over HTTP or TCP) records why, and `server::run` then drains — what was admitted is
//! answered, `/readyz` says 503 — and exits non-zero with that reason, for an operator or a
//! supervisor to act on. Lookups that fail do not stop the server: they change nothing.
//! A failure no command meets (a checkpoint after a pulse, with no traffic) is found by
//! polling `Engine::failure` ([`watch_engine`]).

use std::sync::Arc;

use tokio::sync::watch;

/// Where a failed command reports the engine's failure; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct EngineFailure {
    reason: Arc<watch::Sender<Option<String>>>,
}

impl EngineFailure {
    /// A report with nothing reported, and the receiver `run` waits on.
    pub(crate) fn new() -> (EngineFailure, watch::Receiver<Option<String>>) {
        let (sender, receiver) = watch::channel(None);
        let failure = EngineFailure {
            reason: Arc::new(sender),
        };
        (failure, receiver)
    }

    /// Records `reason` if it is the first; later reports keep the first reason. Never
    /// blocks (TCP calls it from engine threads).
    pub(crate) fn report(&self, reason: &str) {
        self.reason.send_if_modified(|current| match current {
            Some(_) => false,
            None => {
                *current = Some(reason.to_string());
                true
            }
        });
    }
}

/// How often [`watch_engine`] asks the engine whether it failed.
const ENGINE_FAILURE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Reports the engine's own failure (`Engine::failure`) when no command meets it first,
/// polling until the server shuts down.
pub(crate) async fn watch_engine(
    engine: Arc<surge_engine::Engine>,
    failure: EngineFailure,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Some(reason) = engine.failure() {
            failure.report(&reason);
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(ENGINE_FAILURE_POLL_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Waits until a failure is reported; its reason.
pub(crate) async fn reported(mut receiver: watch::Receiver<Option<String>>) -> String {
    match receiver.wait_for(Option::is_some).await {
        Ok(reason) => reason.clone().unwrap_or_default(),
        // The server was dropped: nothing will be reported any more.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_is_kept() {
        let (failure, receiver) = EngineFailure::new();
        failure.report("log failed: disk gone");
        failure.clone().report("the node stopped");
        assert_eq!(reported(receiver).await, "log failed: disk gone");
    }
}
