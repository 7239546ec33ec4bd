//! Calls waiting to be sent, one queue per operation (and one for lookups), and the
//! packing of many calls into one request: as many whole calls of one operation as fit the
//! request limits, in the order they were made. A lookup call goes alone in its frame.

use std::collections::VecDeque;

use surge_core::{Operation, ResultCode};
use tokio::time::Instant;

use crate::caller::Caller;
use crate::error::ClientError;
use crate::lookup::LookupCall;

/// Queues: one per operation byte (every operation has one; clients send 1..=11 and 19).
const OPERATIONS: usize = Operation::ALL.len();

/// One caller's batch of commands and where its answer goes.
#[derive(Debug)]
pub(crate) struct Call {
    pub operation: Operation,
    pub count: u32,
    pub body: Vec<u8>,
    /// Its last command has the `linked` flag: nothing may follow it in a request, or
    /// the chain would run into another caller's commands.
    pub chain_open: bool,
    pub caller: Caller<Vec<ResultCode>>,
    /// The codes of an earlier attempt some of whose commands got a transient code (the
    /// call is being sent again): what a retry's `exists` or `id_already_failed` stands for.
    pub earlier: Option<Vec<ResultCode>>,
}

/// What a caller hands the driver.
#[derive(Debug)]
pub(crate) enum Submission {
    /// Commands, packed with other callers' commands of the operation.
    Commands(Call),
    /// A lookup, sent in a frame of its own.
    Lookup(LookupCall),
}

/// The calls not yet sent (or to be sent again).
#[derive(Debug, Default)]
pub(crate) struct Queues {
    queues: [VecDeque<Call>; OPERATIONS],
    lookups: VecDeque<LookupCall>,
    /// The operation to look at first next time, so no operation starves.
    next: usize,
}

impl Queues {
    pub fn push_back(&mut self, submission: Submission) {
        match submission {
            Submission::Commands(call) => self.queues[call.operation as usize].push_back(call),
            Submission::Lookup(call) => self.lookups.push_back(call),
        }
    }

    /// Puts a call back at the front (a retry goes before newer calls).
    pub fn push_front(&mut self, call: Call) {
        self.queues[call.operation as usize].push_front(call);
    }

    /// Puts a lookup back at the front.
    pub fn push_lookup_front(&mut self, call: LookupCall) {
        self.lookups.push_front(call);
    }

    /// The oldest lookup waiting, if any.
    pub fn take_lookup(&mut self) -> Option<LookupCall> {
        self.lookups.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty) && self.lookups.is_empty()
    }

    /// Drops calls past their deadline (answering `Timeout`) or abandoned by their caller.
    pub fn expire(&mut self, now: Instant) {
        for queue in &mut self.queues {
            queue.retain_mut(|call| !call.caller.expire(now) && !call.caller.abandoned());
        }
        self.lookups
            .retain_mut(|call| !call.caller.expire(now) && !call.caller.abandoned());
    }

    /// The earliest deadline of a queued call.
    pub fn deadline_min(&self) -> Option<Instant> {
        let commands = self
            .queues
            .iter()
            .flatten()
            .map(|call| call.caller.deadline);
        commands
            .chain(self.lookups.iter().map(|call| call.caller.deadline))
            .min()
    }

    /// Answers every queued call with `error`.
    pub fn fail_all(&mut self, error: &ClientError) {
        for queue in &mut self.queues {
            for mut call in queue.drain(..) {
                call.caller.finish(Err(error.clone()));
            }
        }
        for mut call in self.lookups.drain(..) {
            call.caller.finish(Err(error.clone()));
        }
    }

    /// The calls of the next request: whole calls of one operation, in order, at most
    /// `commands_max` commands and `body_size_bytes_max` bytes, ending at the first call
    /// whose linked chain is open. `None` when nothing is queued.
    pub fn take_request(
        &mut self,
        commands_max: usize,
        body_size_bytes_max: usize,
    ) -> Option<(Operation, Vec<Call>, u32)> {
        let start = self.next;
        let index = (0..OPERATIONS)
            .map(|offset| (start + offset) % OPERATIONS)
            .find(|&index| !self.queues[index].is_empty())?;
        self.next = (index + 1) % OPERATIONS;
        let queue = &mut self.queues[index];
        let (mut calls, mut commands, mut bytes) = (Vec::new(), 0usize, 0usize);
        while let Some(call) = queue.front() {
            let fits = commands + call.count as usize <= commands_max
                && bytes + call.body.len() <= body_size_bytes_max;
            if !calls.is_empty() && !fits {
                break;
            }
            let Some(call) = queue.pop_front() else {
                break;
            };
            commands += call.count as usize;
            bytes += call.body.len();
            let chain_open = call.chain_open;
            calls.push(call);
            if chain_open {
                break;
            }
        }
        let operation = calls.first()?.operation;
        let count = u32::try_from(commands).ok()?;
        Some((operation, calls, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(operation: Operation, count: u32, chain_open: bool) -> Call {
        Call {
            operation,
            count,
            body: vec![0; count as usize * operation.record_size_bytes()],
            chain_open,
            caller: Caller::new(Instant::now() + std::time::Duration::from_secs(60), None),
            earlier: None,
        }
    }

    #[test]
    fn packs_whole_calls_of_one_operation_up_to_the_limits() {
        let mut queues = Queues::default();
        for _ in 0..5 {
            queues.push_back(Submission::Commands(call(
                Operation::CreateTransfers,
                3,
                false,
            )));
        }
        queues.push_back(Submission::Commands(call(
            Operation::CreateAccounts,
            1,
            false,
        )));
        let (operation, calls, count) = queues.take_request(10, usize::MAX).unwrap();
        assert_eq!(operation, Operation::CreateAccounts);
        assert_eq!((calls.len(), count), (1, 1));
        let (operation, calls, count) = queues.take_request(10, usize::MAX).unwrap();
        assert_eq!(operation, Operation::CreateTransfers);
        assert_eq!((calls.len(), count), (3, 9));
        let (_, calls, count) = queues.take_request(10, 128 * 3).unwrap();
        assert_eq!((calls.len(), count), (1, 3));
        assert!(queues.take_request(10, usize::MAX).is_some());
        assert!(queues.take_request(10, usize::MAX).is_none());
    }

    #[test]
    fn an_open_chain_ends_the_request() {
        let mut queues = Queues::default();
        queues.push_back(Submission::Commands(call(
            Operation::CreateTransfers,
            2,
            false,
        )));
        queues.push_back(Submission::Commands(call(
            Operation::CreateTransfers,
            2,
            true,
        )));
        queues.push_back(Submission::Commands(call(
            Operation::CreateTransfers,
            2,
            false,
        )));
        let (_, calls, count) = queues.take_request(100, usize::MAX).unwrap();
        assert_eq!((calls.len(), count), (2, 4));
        let (_, calls, _) = queues.take_request(100, usize::MAX).unwrap();
        assert_eq!(calls.len(), 1);
    }
}
