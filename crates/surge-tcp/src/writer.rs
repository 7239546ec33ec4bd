//! A connection's write side: one task that encodes replies as they come (from the reader,
//! and from engine threads through completions), gathers what is ready into one buffer,
//! and writes it with one syscall. It ends once the reader and every in-flight request
//! are done, after writing the closing `Error` frame if there is one.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use surge_core::ResultCode;
use surge_protocol::{encode_lookup_reply, encode_reply_codes, ErrorCode, Frame, LookupOperation};
use surge_protocol::{LookupReply, LookupStatus, Message, Reply, ReplyStatus};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::constants::{READ_CHUNK_SIZE_BYTES, WRITE_BATCH_SIZE_BYTES_MAX};
use crate::metrics::TcpMetrics;
use crate::session::Admission;

/// Which frame answers: a `Reply` (to a `Request`) or a `LookupReply` (to a `Lookup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Reply,
    LookupReply,
}

/// A frame for the writer to send. A reply to an admitted request (or lookup) carries its
/// [`Admission`], released once the reply is encoded into the write buffer (so before the
/// client can read it, and a client that waits for each reply never sees `busy`): the
/// in-flight limits thus also bound the replies queued for a slow reader, and a client
/// that stops reading stops being admitted new requests.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// An `ok` reply.
    Codes {
        request_id: u64,
        operation: u8,
        codes: Vec<ResultCode>,
        admission: Admission,
    },
    /// A found lookup reply: `entries` are the encoded entries of the ids found.
    Found {
        request_id: u64,
        operation: LookupOperation,
        ids_count: u32,
        entries: Vec<u8>,
        admission: Admission,
    },
    /// A `busy` reply or lookup reply.
    Busy {
        request_id: u64,
        operation: u8,
        answer: Answer,
        admission: Option<Admission>,
    },
    /// A `rejected` reply or lookup reply.
    Rejected {
        request_id: u64,
        operation: u8,
        code: ErrorCode,
        answer: Answer,
        admission: Option<Admission>,
    },
    /// The answer to a ping.
    Pong { request_id: u64 },
    /// Send this `Error` last (after every in-flight reply), then close.
    Close { code: ErrorCode, message: String },
}

/// The channels a writer drains: frames from the reader (bounded: the reader waits) and
/// replies from completions (one per admitted request, so bounded by the in-flight limit).
pub(crate) struct WriterInputs {
    pub immediate: mpsc::Receiver<Outgoing>,
    pub completions: mpsc::UnboundedReceiver<Outgoing>,
}

/// What the writer holds between two socket writes.
struct Pending {
    out: Vec<u8>,
    close: Option<Outgoing>,
}

fn encode(message: Outgoing, pending: &mut Pending, metrics: &TcpMetrics) {
    let out = &mut pending.out;
    let count = |counter: &AtomicU64| TcpMetrics::add(counter, 1);
    // A busy or rejected answer, as the frame kind the request or lookup expects.
    let refusal = |request_id, operation, answer, refused: Option<ErrorCode>| match answer {
        Answer::Reply => Frame::Reply(Reply {
            request_id,
            operation,
            status: refused.map_or(ReplyStatus::Busy, ReplyStatus::Rejected),
        }),
        Answer::LookupReply => Frame::LookupReply(LookupReply {
            request_id,
            operation,
            status: refused.map_or(LookupStatus::Busy, LookupStatus::Rejected),
        }),
    };
    match message {
        Outgoing::Codes {
            request_id,
            operation,
            codes,
            admission,
        } => {
            count(&metrics.replies_ok);
            encode_reply_codes(out, request_id, operation, &codes);
            drop(admission);
        }
        Outgoing::Found {
            request_id,
            operation,
            ids_count,
            entries,
            admission,
        } => {
            count(&metrics.replies_found);
            encode_lookup_reply(out, request_id, operation, ids_count, &entries);
            drop(admission);
        }
        Outgoing::Busy {
            request_id,
            operation,
            answer,
            admission,
        } => {
            count(&metrics.replies_busy);
            refusal(request_id, operation, answer, None).encode(out);
            drop(admission);
        }
        Outgoing::Rejected {
            request_id,
            operation,
            code,
            answer,
            admission,
        } => {
            count(&metrics.replies_rejected);
            if code == ErrorCode::EngineFailed {
                count(&metrics.engine_failures);
            }
            refusal(request_id, operation, answer, Some(code)).encode(out);
            drop(admission);
        }
        Outgoing::Pong { request_id } => Frame::Pong { request_id }.encode(out),
        Outgoing::Close { .. } => pending.close = Some(message),
    }
}

/// Runs until both inputs are closed (or a write fails or times out).
pub(crate) async fn run(
    mut write: OwnedWriteHalf,
    mut inputs: WriterInputs,
    metrics: Arc<TcpMetrics>,
    write_timeout: Duration,
) {
    let mut pending = Pending {
        out: Vec::with_capacity(READ_CHUNK_SIZE_BYTES),
        close: None,
    };
    let (mut immediate_open, mut completions_open) = (true, true);
    while immediate_open || completions_open {
        tokio::select! {
            message = inputs.completions.recv(), if completions_open => match message {
                Some(message) => encode(message, &mut pending, &metrics),
                None => completions_open = false,
            },
            message = inputs.immediate.recv(), if immediate_open => match message {
                Some(message) => encode(message, &mut pending, &metrics),
                None => immediate_open = false,
            },
        }
        // Gather whatever else is ready into the same write.
        while pending.out.len() < WRITE_BATCH_SIZE_BYTES_MAX {
            if let Ok(message) = inputs.completions.try_recv() {
                encode(message, &mut pending, &metrics);
            } else if let Ok(message) = inputs.immediate.try_recv() {
                encode(message, &mut pending, &metrics);
            } else {
                break;
            }
        }
        if !pending.out.is_empty() {
            let write_all = write.write_all(&pending.out);
            let written = tokio::time::timeout(write_timeout, write_all).await;
            if !matches!(written, Ok(Ok(()))) {
                return;
            }
            pending.out.clear();
        }
    }
    if let Some(Outgoing::Close { code, message }) = pending.close {
        Frame::Error(Message {
            request_id: 0,
            code,
            message: &message,
        })
        .encode(&mut pending.out);
        let _ = tokio::time::timeout(write_timeout, write.write_all(&pending.out)).await;
    }
    let _ = write.shutdown().await;
}
