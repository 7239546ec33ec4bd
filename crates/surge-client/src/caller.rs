//! What every call waiting in the driver has, whatever it carries: its deadline, how many
//! frames it was sent in, and where its one answer goes.

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::ClientError;

/// One caller's deadline, attempts and answer channel (commands answer codes, lookups
/// entries).
#[derive(Debug)]
pub(crate) struct Caller<T> {
    pub deadline: Instant,
    /// Frames this call was sent in so far.
    pub attempts: u32,
    pub reply: Option<oneshot::Sender<Result<T, ClientError>>>,
}

impl<T> Caller<T> {
    /// A fresh call answering on `reply` until `deadline`.
    pub fn new(deadline: Instant, reply: Option<oneshot::Sender<Result<T, ClientError>>>) -> Self {
        Caller {
            deadline,
            attempts: 0,
            reply,
        }
    }

    /// Answers the caller (once; later answers are dropped).
    pub fn finish(&mut self, result: Result<T, ClientError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }

    /// Whether nobody waits for this call any more (answered, or the caller gave up).
    pub fn abandoned(&self) -> bool {
        self.reply.as_ref().is_none_or(|reply| reply.is_closed())
    }

    /// Fails the call with `Timeout` if its deadline passed; true if it did.
    pub fn expire(&mut self, now: Instant) -> bool {
        if now >= self.deadline {
            let attempts = self.attempts;
            self.finish(Err(ClientError::Timeout { attempts }));
            return true;
        }
        false
    }
}
