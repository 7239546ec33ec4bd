//! The driver task: owns the connection, the queues of calls and the requests in flight.
//! Calls from every task arrive on one channel; while earlier requests are in flight they
//! queue up, and each time a slot frees the queued calls of one operation are packed into
//! one request (a lookup goes in a frame of its own; lookups and requests take turns for
//! the slots). Replies are matched by request id and split back into the callers'
//! results. A `busy` reply, a lost connection or a silent server sends the same calls
//! again (same ids) until each call's deadline.

use std::collections::HashMap;
use std::time::Duration;

use surge_core::ResultCode;
use surge_protocol::constants::{HEADER_SIZE_BYTES, REQUEST_COMMANDS_MAX};
use surge_protocol::{encode_lookup, encode_request, ErrorCode, Frame};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::batcher::{Call, Queues, Submission};
use crate::config::ClientConfig;
use crate::connection::{self, ConnectError, Connection, Incoming, Outcome};
use crate::constants::TRANSIENT_RETRY_INTERVAL;
use crate::constants::{BUSY_BACKOFF_MAX, BUSY_BACKOFF_MIN, DEADLINE_CHECK_INTERVAL};
use crate::constants::{RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN};
use crate::error::ClientError;
use crate::lookup::{Found, LookupCall};

/// What ended a wait.
enum Wake {
    Call(Option<Submission>),
    Event(Option<Incoming>),
    Check,
}

/// A request or lookup sent and not yet answered.
enum InFlight {
    /// A request: the calls packed into it, in order.
    Commands(Vec<Call>),
    /// A lookup: its one call.
    Lookup(LookupCall),
}

impl InFlight {
    /// Answers every call of it with `error`.
    fn fail(&mut self, error: &ClientError) {
        match self {
            InFlight::Commands(calls) => {
                for call in calls {
                    call.caller.finish(Err(error.clone()));
                }
            }
            InFlight::Lookup(call) => call.caller.finish(Err(error.clone())),
        }
    }
}

/// Limits of the current connection, from its `Welcome`.
#[derive(Clone, Copy)]
struct Window {
    requests_in_flight_max: usize,
    commands_max: usize,
    body_size_bytes_max: usize,
}

pub(crate) struct Driver {
    address: String,
    config: ClientConfig,
    calls: mpsc::Receiver<Submission>,
    calls_closed: bool,
    queues: Queues,
    connection: Option<(Connection, Window)>,
    in_flight: HashMap<u64, InFlight>,
    request_id_next: u64,
    /// No new request before this (after `busy`).
    hold_until: Instant,
    busy_backoff: Duration,
    reconnect_at: Instant,
    reconnect_backoff: Duration,
    last_received: Instant,
    ping_sent: bool,
    /// Whether a lookup gets the next free slot before a request (they take turns).
    lookup_turn: bool,
    out: Vec<u8>,
}

fn doubled(backoff: Duration, max: Duration) -> Duration {
    (backoff * 2).min(max)
}

impl Driver {
    pub fn new(
        address: String,
        config: ClientConfig,
        calls: mpsc::Receiver<Submission>,
        connection: Connection,
    ) -> Driver {
        let now = Instant::now();
        let mut driver = Driver {
            address,
            config,
            calls,
            calls_closed: false,
            queues: Queues::default(),
            connection: None,
            in_flight: HashMap::new(),
            request_id_next: 1,
            hold_until: now,
            busy_backoff: BUSY_BACKOFF_MIN,
            reconnect_at: now,
            reconnect_backoff: RECONNECT_BACKOFF_MIN,
            last_received: now,
            ping_sent: false,
            lookup_turn: false,
            out: Vec::new(),
        };
        driver.adopt(connection);
        driver
    }

    fn adopt(&mut self, connection: Connection) {
        let welcome = connection.welcome;
        let window = Window {
            requests_in_flight_max: self
                .config
                .requests_in_flight_max
                .clamp(1, (welcome.requests_in_flight_max as usize).max(1)),
            commands_max: REQUEST_COMMANDS_MAX.min(welcome.request_commands_max as usize),
            body_size_bytes_max: welcome.frame_body_size_bytes_max as usize,
        };
        self.connection = Some((connection, window));
        self.last_received = Instant::now();
        self.ping_sent = false;
    }

    /// Runs until every `Client` is dropped and nothing is pending.
    pub async fn run(mut self) {
        let mut check_at = Instant::now();
        loop {
            let now = Instant::now();
            // Deadlines and liveness every check interval, not per event: with thousands
            // of calls queued, a scan per reply would cost more than the replies.
            if now >= check_at {
                check_at = now + DEADLINE_CHECK_INTERVAL;
                self.expire(now);
                self.check_liveness(now).await;
            }
            if !self.queues.is_empty() {
                if self.connection.is_none() && now >= self.reconnect_at {
                    self.reconnect().await;
                }
                self.send_requests().await;
            }
            let pending = !self.queues.is_empty() || !self.in_flight.is_empty();
            if self.calls_closed && !pending {
                return;
            }
            self.wait(pending).await;
        }
    }

    /// Waits for a call, a frame or the next check.
    async fn wait(&mut self, pending: bool) {
        let check = Instant::now() + DEADLINE_CHECK_INTERVAL;
        let connection = &mut self.connection;
        let incoming = async {
            match connection.as_mut() {
                Some((connection, _)) => connection.incoming.recv().await,
                None => std::future::pending().await,
            }
        };
        let calls = &mut self.calls;
        let wake = tokio::select! {
            call = calls.recv(), if !self.calls_closed => Wake::Call(call),
            event = incoming => Wake::Event(event),
            () = tokio::time::sleep_until(check), if pending => Wake::Check,
        };
        match wake {
            Wake::Call(Some(call)) => {
                self.queues.push_back(call);
                // Take everything already waiting, so it packs into few requests.
                while let Ok(call) = self.calls.try_recv() {
                    self.queues.push_back(call);
                }
            }
            Wake::Call(None) => self.calls_closed = true,
            Wake::Event(event) => self.handle(event.unwrap_or(Incoming::Closed)),
            Wake::Check => {}
        }
    }

    /// Answers `Timeout` to every call past its deadline (queued or in flight; a late reply
    /// to one in flight is then ignored).
    fn expire(&mut self, now: Instant) {
        self.queues.expire(now);
        for request in self.in_flight.values_mut() {
            match request {
                InFlight::Commands(calls) => {
                    for call in calls {
                        call.caller.expire(now);
                    }
                }
                InFlight::Lookup(call) => {
                    call.caller.expire(now);
                }
            }
        }
    }

    /// With requests in flight: pings a silent server, and replaces a connection that
    /// stayed silent for the liveness timeout.
    async fn check_liveness(&mut self, now: Instant) {
        if self.in_flight.is_empty() || self.connection.is_none() {
            return;
        }
        let silent = now.saturating_duration_since(self.last_received);
        if silent >= self.config.liveness_timeout {
            self.lose_connection();
        } else if silent >= self.config.liveness_timeout / 2 && !self.ping_sent {
            self.ping_sent = true;
            let mut ping = Vec::new();
            Frame::Ping { request_id: 0 }.encode(&mut ping);
            if let Some((connection, _)) = self.connection.as_mut() {
                if connection.write.write_all(&ping).await.is_err() {
                    self.lose_connection();
                }
            }
        }
    }

    async fn reconnect(&mut self) {
        let now = Instant::now();
        // Never wait past the earliest deadline for a connection.
        let budget = self
            .queues
            .deadline_min()
            .map_or(self.config.connect_timeout, |deadline| {
                deadline.saturating_duration_since(now)
            })
            .min(self.config.connect_timeout);
        let attempt =
            tokio::time::timeout(budget, connection::connect(&self.address, &self.config));
        match attempt.await {
            Ok(Ok(connection)) => self.adopt(connection),
            Ok(Err(ConnectError::Refused(code))) => {
                self.queues.fail_all(&ClientError::Handshake(code));
                self.retry_connect_later();
            }
            Ok(Err(ConnectError::Failed(_))) | Err(_) => self.retry_connect_later(),
        }
    }

    fn retry_connect_later(&mut self) {
        self.reconnect_at = Instant::now() + self.reconnect_backoff;
        self.reconnect_backoff = doubled(self.reconnect_backoff, RECONNECT_BACKOFF_MAX);
    }

    /// Packs queued calls into requests and lookups while the window has room, and writes
    /// them.
    async fn send_requests(&mut self) {
        let Some((_, window)) = self.connection.as_ref() else {
            return;
        };
        let window = *window;
        if Instant::now() < self.hold_until {
            return;
        }
        self.out.clear();
        while self.in_flight.len() < window.requests_in_flight_max {
            let took = match self.lookup_turn {
                true => self.pack_lookup(window) || self.pack_request(window),
                false => self.pack_request(window) || self.pack_lookup(window),
            };
            if !took {
                break;
            }
            self.lookup_turn = !self.lookup_turn;
        }
        if self.out.is_empty() {
            return;
        }
        let Some((connection, _)) = self.connection.as_mut() else {
            return;
        };
        let timeout = self.config.liveness_timeout;
        let written = tokio::time::timeout(timeout, connection.write.write_all(&self.out)).await;
        if !matches!(written, Ok(Ok(()))) {
            self.lose_connection();
        }
    }

    fn next_request_id(&mut self) -> u64 {
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        request_id
    }

    /// Packs the next request into `out`; false if no command call is queued.
    fn pack_request(&mut self, window: Window) -> bool {
        let body_max = window.body_size_bytes_max;
        let Some((operation, mut calls, count)) =
            self.queues.take_request(window.commands_max, body_max)
        else {
            return false;
        };
        let body_size: usize = calls.iter().map(|call| call.body.len()).sum();
        if count as usize > window.commands_max || body_size > body_max {
            // One call alone over the server's limits: it can never be sent.
            let max = window
                .commands_max
                .min(body_max / operation.record_size_bytes());
            for call in &mut calls {
                let count = call.count as usize;
                call.caller
                    .finish(Err(ClientError::TooManyCommands { count, max }));
            }
            return true;
        }
        let request_id = self.next_request_id();
        let parts: Vec<&[u8]> = calls.iter().map(|call| call.body.as_slice()).collect();
        self.out.reserve(HEADER_SIZE_BYTES + body_size);
        encode_request(&mut self.out, request_id, operation, count, &parts);
        for call in &mut calls {
            call.caller.attempts += 1;
        }
        self.in_flight.insert(request_id, InFlight::Commands(calls));
        true
    }

    /// Packs the next lookup into `out`; false if none is queued.
    fn pack_lookup(&mut self, window: Window) -> bool {
        let Some(mut call) = self.queues.take_lookup() else {
            return false;
        };
        if call.ids.len() > window.body_size_bytes_max {
            // Over the server's announced frame limit: it can never be sent.
            let count = call.count as usize;
            let max = window.body_size_bytes_max / call.operation.id_size_bytes();
            call.caller
                .finish(Err(ClientError::TooManyIds { count, max }));
            return true;
        }
        let request_id = self.next_request_id();
        self.out.reserve(HEADER_SIZE_BYTES + call.ids.len());
        encode_lookup(
            &mut self.out,
            request_id,
            call.operation,
            call.count,
            &call.ids,
        );
        call.caller.attempts += 1;
        self.in_flight.insert(request_id, InFlight::Lookup(call));
        true
    }

    fn handle(&mut self, event: Incoming) {
        match event {
            Incoming::Reply {
                request_id,
                outcome,
            } => {
                self.last_received = Instant::now();
                self.ping_sent = false;
                if let Some(request) = self.in_flight.remove(&request_id) {
                    self.settle(request, outcome);
                }
            }
            Incoming::Alive => {
                self.last_received = Instant::now();
                self.ping_sent = false;
            }
            Incoming::Closed => self.lose_connection(),
        }
    }

    /// Hands a reply's codes (or a lookup's entries) to its calls, or queues the calls
    /// again.
    fn settle(&mut self, request: InFlight, outcome: Outcome) {
        match (request, outcome) {
            // Nothing happened (busy), or the outcome is unknown (the engine failed; the
            // same ids make the retry safe): send the same calls again after a pause.
            (
                request,
                Outcome::Busy
                | Outcome::Rejected(ErrorCode::EngineFailed | ErrorCode::RequestIdInFlight),
            ) => {
                self.hold_until = Instant::now() + self.busy_backoff;
                self.busy_backoff = doubled(self.busy_backoff, BUSY_BACKOFF_MAX);
                self.requeue(request);
            }
            (mut request, Outcome::Rejected(code)) => {
                request.fail(&ClientError::Rejected(code));
            }
            (InFlight::Commands(calls), Outcome::Codes(Ok(codes))) => {
                self.answered();
                let again = split(calls, &codes, Instant::now());
                if !again.is_empty() {
                    // Commands that may succeed a moment later: the same calls again.
                    self.hold_until = Instant::now() + TRANSIENT_RETRY_INTERVAL;
                    self.requeue(InFlight::Commands(again));
                }
            }
            (
                InFlight::Lookup(mut call),
                Outcome::Found {
                    operation,
                    ids_count,
                    entries,
                },
            ) if operation == call.operation as u8 => {
                self.answered();
                call.caller.finish(Ok(Found { ids_count, entries }));
            }
            (mut request, Outcome::Codes(Err(number))) => {
                request.fail(&ClientError::Protocol(format!(
                    "unknown result code {number}"
                )));
            }
            (mut request, _) => {
                let reason = "a reply that does not fit its request (codes for a lookup, \
                              entries for a request or another lookup operation)";
                request.fail(&ClientError::Protocol(reason.to_string()));
            }
        }
    }

    /// A request was answered: the server is healthy, backoffs start over.
    fn answered(&mut self) {
        self.busy_backoff = BUSY_BACKOFF_MIN;
        self.reconnect_backoff = RECONNECT_BACKOFF_MIN;
    }

    fn requeue(&mut self, request: InFlight) {
        match request {
            InFlight::Commands(calls) => {
                for call in calls.into_iter().rev() {
                    if !call.caller.abandoned() {
                        self.queues.push_front(call);
                    }
                }
            }
            InFlight::Lookup(call) => {
                if !call.caller.abandoned() {
                    self.queues.push_lookup_front(call);
                }
            }
        }
    }

    /// Drops the connection and queues every request in flight again, oldest first.
    fn lose_connection(&mut self) {
        self.connection = None;
        let mut requests: Vec<(u64, InFlight)> = self.in_flight.drain().collect();
        requests.sort_unstable_by_key(|(request_id, _)| std::cmp::Reverse(*request_id));
        for (_, request) in requests {
            self.requeue(request);
        }
        self.retry_connect_later();
    }
}

/// Gives each call its slice of the codes, in order; returns the calls to send again: those
/// with a command answered with a transient code (`busy`, or a step still travelling
/// between shards: nothing was stored), before their deadline. A call sent again answers
/// with its last attempt's codes, where `exists` and `id_already_failed` stand for an earlier
/// attempt's own `ok` or failure.
fn split(calls: Vec<Call>, codes: &[ResultCode], now: Instant) -> Vec<Call> {
    let expected: usize = calls.iter().map(|call| call.count as usize).sum();
    if codes.len() != expected {
        let error = ClientError::Protocol(format!(
            "{} result codes for {expected} commands",
            codes.len()
        ));
        for mut call in calls {
            call.caller.finish(Err(error.clone()));
        }
        return Vec::new();
    }
    let mut again = Vec::new();
    let mut offset = 0;
    for mut call in calls {
        let count = call.count as usize;
        let mut answered = codes[offset..offset + count].to_vec();
        offset += count;
        if let Some(earlier) = call.earlier.take() {
            for (code, first) in answered.iter_mut().zip(earlier) {
                let stored_failure = !first.is_success()
                    && !first.is_transient()
                    && first != ResultCode::IdAlreadyFailed;
                match (*code, first) {
                    (ResultCode::Exists, ResultCode::Ok) => *code = ResultCode::Ok,
                    (ResultCode::IdAlreadyFailed, first) if stored_failure => *code = first,
                    _ => {}
                }
            }
        }
        let transient = answered.iter().any(|code| code.is_transient());
        if transient && now < call.caller.deadline && !call.caller.abandoned() {
            call.earlier = Some(answered);
            again.push(call);
        } else {
            call.caller.finish(Ok(answered));
        }
    }
    again
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_core::Operation;
    use tokio::sync::oneshot;

    fn call(count: u32, deadline: Instant) -> (Call, oneshot::Receiver<CallResult>) {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            operation: Operation::PayOrders,
            count,
            body: vec![0; count as usize * Operation::PayOrders.record_size_bytes()],
            chain_open: false,
            caller: crate::caller::Caller::new(deadline, Some(reply)),
            earlier: None,
        };
        (call, answer)
    }

    type CallResult = Result<Vec<ResultCode>, ClientError>;

    #[test]
    fn transient_codes_send_the_call_again_and_the_answers_merge() {
        use ResultCode::{ExceedsCredits, Exists, IdAlreadyFailed, Ok, OrderInFlight};
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let (settled, mut settled_answer) = call(1, later);
        let (waiting, mut waiting_answer) = call(3, later);
        // The first call is done; the second has a command whose order's step travels.
        let again = split(
            vec![settled, waiting],
            &[Ok, Ok, OrderInFlight, ExceedsCredits],
            now,
        );
        assert_eq!(settled_answer.try_recv().unwrap().unwrap(), [Ok]);
        assert!(waiting_answer.try_recv().is_err(), "not answered yet");
        assert_eq!(again.len(), 1);
        // Sent again: the first attempt's ok and failure come back as exists and
        // id_already_failed, and stand for themselves.
        let done = split(again, &[Exists, Ok, IdAlreadyFailed], now);
        assert!(done.is_empty());
        assert_eq!(
            waiting_answer.try_recv().unwrap().unwrap(),
            [Ok, Ok, ExceedsCredits]
        );
        // Past its deadline a call answers with what it has.
        let (late, mut late_answer) = call(1, now);
        assert!(split(vec![late], &[OrderInFlight], now).is_empty());
        assert_eq!(late_answer.try_recv().unwrap().unwrap(), [OrderInFlight]);
    }
}
