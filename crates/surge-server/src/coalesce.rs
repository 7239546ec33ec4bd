//! Coalescing: single-command requests of one operation, arriving from many connections
//! at once, go to the engine as one batch instead of one batch each (one log record, one
//! apply step and one completion for all of them). Each operation has a lane: a task that
//! keeps at most [`COALESCED_BATCHES_IN_FLIGHT_MAX`] batches in the engine and, whenever
//! one is answered, submits everything that queued meanwhile (up to 8,190 commands). Under
//! light load a batch holds one command and waits for nothing; under heavy load batches
//! grow with the queue.
//!
//! Only commands that mean the same alone and among others are coalesced: a command with
//! the `linked` flag (it would chain into the next request's command) always goes alone.
//! Every command keeps its own result code; a batch refused as busy, or failed, answers
//! each of its requests so.

use std::sync::Arc;

use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{account_flags, decode, transfer_flags, BatchBuf, Operation, ResultCode};
use surge_engine::Engine;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::constants::COALESCED_BATCHES_IN_FLIGHT_MAX;

/// Why a coalesced command has no code.
#[derive(Debug)]
pub enum Refusal {
    /// The engine's queue for a shard was full: nothing was logged.
    Busy(String),
    /// The engine failed, or stopped.
    Failed(String),
}

struct Item {
    record: Vec<u8>,
    reply: oneshot::Sender<Result<ResultCode, Refusal>>,
}

/// The lanes, one per client operation.
pub struct Coalescer {
    /// Indexed by the operation byte; `None` for operations clients never send.
    lanes: Vec<Option<mpsc::UnboundedSender<Item>>>,
}

impl Coalescer {
    /// Starts one lane task per client operation (on the current tokio runtime). The
    /// lanes end when the coalescer is dropped and what they submitted is answered.
    pub fn start(engine: &Arc<Engine>) -> Coalescer {
        let lanes = Operation::ALL
            .iter()
            .map(|&operation| {
                if operation.is_internal() {
                    return None;
                }
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run_lane(Arc::clone(engine), operation, receiver));
                Some(sender)
            })
            .collect();
        Coalescer { lanes }
    }

    /// Whether `batch` is one command that may share a batch with others' commands.
    pub fn accepts(batch: &BatchBuf) -> bool {
        match batch {
            BatchBuf::CreateAccounts(accounts) => {
                accounts.len() == 1 && accounts[0].flags & account_flags::LINKED == 0
            }
            BatchBuf::CreateTransfers(transfers) => {
                transfers.len() == 1 && transfers[0].flags & transfer_flags::LINKED == 0
            }
            other => other.as_batch().len() == 1 && !other.as_batch().operation().is_internal(),
        }
    }

    /// Submits the one command of `batch` (see [`Coalescer::accepts`]) in the next batch
    /// of its lane; its code once that batch is durable and applied.
    pub async fn submit(&self, batch: &BatchBuf) -> Result<ResultCode, Refusal> {
        debug_assert!(Coalescer::accepts(batch));
        let batch = batch.as_batch();
        let lane = self
            .lanes
            .get(batch.operation() as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| Refusal::Failed("no lane for this operation".to_string()))?;
        let (reply, answer) = oneshot::channel();
        let item = Item {
            record: batch.body().to_vec(),
            reply,
        };
        lane.send(item)
            .map_err(|_| Refusal::Failed("the server is stopping".to_string()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Refusal::Failed("the batch was dropped".to_string())))
    }
}

/// One operation's lane: waits for a free slot, then for a first command, then takes
/// whatever else queued, and submits them as one batch.
async fn run_lane(
    engine: Arc<Engine>,
    operation: Operation,
    mut receiver: mpsc::UnboundedReceiver<Item>,
) {
    let slots = Arc::new(Semaphore::new(COALESCED_BATCHES_IN_FLIGHT_MAX));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut items = vec![first];
        while items.len() < BATCH_EVENTS_MAX {
            match receiver.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let body: Vec<u8> = items
            .iter()
            .flat_map(|item| item.record.iter().copied())
            .collect();
        let replies: Vec<_> = items.into_iter().map(|item| item.reply).collect();
        let batch = match decode(operation as u8, &body) {
            Ok(batch) => batch,
            Err(error) => {
                answer_all(replies, || {
                    Refusal::Failed(format!("coalesced batch: {error}"))
                });
                continue;
            }
        };
        submit_batch(&engine, batch, replies, slot);
    }
}

fn submit_batch(
    engine: &Engine,
    batch: BatchBuf,
    replies: Vec<oneshot::Sender<Result<ResultCode, Refusal>>>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    // Shared with the completion, which answers them; if the engine refuses the batch at
    // once, the completion never runs and the refusal answers them here.
    let shared = Arc::new(std::sync::Mutex::new(Some(replies)));
    let answered = Arc::clone(&shared);
    let done = Box::new(
        move |result: Result<Vec<ResultCode>, surge_engine::EngineError>| {
            drop(slot);
            let Some(replies) = answered.lock().ok().and_then(|mut replies| replies.take()) else {
                return;
            };
            match result {
                Ok(codes) if codes.len() == replies.len() => {
                    for (reply, code) in replies.into_iter().zip(codes) {
                        let _ = reply.send(Ok(code));
                    }
                }
                Ok(codes) => answer_all(replies, || {
                    Refusal::Failed(format!("{} codes for a batch of commands", codes.len()))
                }),
                Err(error) => answer_all(replies, || Refusal::Failed(error.to_string())),
            }
        },
    );
    if let Err(error) = engine.submit(batch.as_batch(), done) {
        let replies = shared.lock().ok().and_then(|mut replies| replies.take());
        if let Some(replies) = replies {
            let busy = error.is_busy();
            answer_all(replies, || {
                if busy {
                    Refusal::Busy(error.to_string())
                } else {
                    Refusal::Failed(error.to_string())
                }
            });
        }
    }
}

fn answer_all(
    replies: Vec<oneshot::Sender<Result<ResultCode, Refusal>>>,
    refusal: impl Fn() -> Refusal,
) {
    for reply in replies {
        let _ = reply.send(Err(refusal()));
    }
}
