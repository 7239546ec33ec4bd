//! Shared helpers of the TCP server's tests: a real engine on a temporary directory behind
//! the real `serve` on 127.0.0.1 port 0, a raw protocol client over a real socket, and
//! record builders for every operation.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use surge_core::records::ORDER_LINES_MAX;
use surge_core::{account_flags, Account, AccountId, Batch, DispatchAck, DispatchId};
use surge_core::{Order, OrderAction, OrderId, OrderLine, Reservation, ReservationKey};
use surge_core::{ResultCode, Sku, SkuId, Transfer, TransferId};
use surge_engine::{Engine, EngineConfig};
use surge_protocol::{encode_batch, encode_lookup, ErrorCode, Frame, FrameDecoder, Hello};
use surge_protocol::{LookupOperation, LookupStatus, ReplyStatus, Scopes, Welcome};
use surge_tcp::{serve_with_metrics, TcpLimits, TcpMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Token granting `payments`.
pub const PAYMENTS_TOKEN: &[u8] = b"payments-token";
/// Token granting `dispatch`.
pub const DISPATCH_TOKEN: &[u8] = b"dispatch-token";
/// Token granting `read` only.
pub const READ_TOKEN: &[u8] = b"read-token";
/// Token granting every scope.
pub const ALL_TOKEN: &[u8] = b"all-token";

/// The ledger of every test record.
pub const LEDGER: u32 = 1;

/// How long a test waits for any one frame before failing.
const FRAME_WAIT: Duration = Duration::from_secs(20);

/// A running server over a running engine.
pub struct TestServer {
    pub address: SocketAddr,
    pub engine: Arc<Engine>,
    pub metrics: Arc<TcpMetrics>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _directory: tempfile::TempDir,
}

fn authenticate(_client_id: u128, token: &[u8]) -> Option<Scopes> {
    match token {
        PAYMENTS_TOKEN => Some(Scopes::PAYMENTS),
        DISPATCH_TOKEN => Some(Scopes::DISPATCH),
        READ_TOKEN => Some(Scopes::READ),
        ALL_TOKEN => Some(Scopes::ALL),
        _ => None,
    }
}

/// An engine on a fresh temporary directory: one shard, small segments, no history.
pub fn test_engine() -> (Arc<Engine>, tempfile::TempDir) {
    let directory = tempfile::tempdir().expect("tempdir");
    let mut config = EngineConfig::new(directory.path());
    config.shards = 1;
    config.history = false;
    config.node.log.segment_size_bytes = 16 * 1024 * 1024;
    let (engine, _) = Engine::open(config).expect("engine opens");
    (Arc::new(engine), directory)
}

impl TestServer {
    /// Starts an engine and the server with `limits`.
    pub async fn start(limits: TcpLimits) -> TestServer {
        let (engine, directory) = test_engine();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let metrics = Arc::new(TcpMetrics::default());
        let (shutdown, receiver) = watch::channel(false);
        let task = tokio::spawn(serve_with_metrics(
            listener,
            engine.clone(),
            Arc::new(authenticate),
            limits,
            metrics.clone(),
            receiver,
        ));
        TestServer {
            address,
            engine,
            metrics,
            shutdown,
            task: Some(task),
            _directory: directory,
        }
    }

    /// Starts with the default limits.
    pub async fn start_default() -> TestServer {
        TestServer::start(TcpLimits::default()).await
    }

    /// Flips the shutdown signal (the server then drains).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Shuts down and waits for `serve` to return.
    pub async fn stop(&mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(FRAME_WAIT, task).await;
            result
                .expect("serve returns")
                .expect("serve task")
                .expect("serve ok");
        }
    }

    /// A counter by its Prometheus name.
    pub fn metric(&self, name: &str) -> u64 {
        self.metrics.value(name).expect("metric exists")
    }

    /// A connected, handshaken client with `token`.
    pub async fn client(&self, token: &[u8]) -> RawClient {
        let mut client = RawClient::connect(self.address).await;
        let welcome = client.handshake(token).await;
        assert!(matches!(welcome, Got::Welcome(_)), "{welcome:?}");
        client
    }
}

/// A frame received, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    Welcome(Welcome),
    HandshakeError(ErrorCode),
    Ok {
        request_id: u64,
        codes: Vec<ResultCode>,
    },
    Busy {
        request_id: u64,
    },
    Rejected {
        request_id: u64,
        code: ErrorCode,
    },
    /// A found lookup reply: how many entries.
    Found {
        request_id: u64,
        entries: usize,
    },
    LookupBusy {
        request_id: u64,
    },
    LookupRejected {
        request_id: u64,
        code: ErrorCode,
    },
    Error(ErrorCode),
    Pong(u64),
    /// End of stream or a reset.
    Closed,
}

fn owned(frame: Frame<'_>) -> Got {
    match frame {
        Frame::Welcome(welcome) => Got::Welcome(welcome),
        Frame::HandshakeError(message) => Got::HandshakeError(message.code),
        Frame::Error(message) => Got::Error(message.code),
        Frame::Pong { request_id } => Got::Pong(request_id),
        Frame::Reply(reply) => match reply.status {
            ReplyStatus::Ok(codes) => Got::Ok {
                request_id: reply.request_id,
                codes: codes.to_vec().expect("known codes"),
            },
            ReplyStatus::Busy => Got::Busy {
                request_id: reply.request_id,
            },
            ReplyStatus::Rejected(code) => Got::Rejected {
                request_id: reply.request_id,
                code,
            },
        },
        Frame::LookupReply(reply) => {
            let request_id = reply.request_id;
            match reply.status {
                LookupStatus::Found(entries) => Got::Found {
                    request_id,
                    entries: entries.len(),
                },
                LookupStatus::Busy => Got::LookupBusy { request_id },
                LookupStatus::Rejected(code) => Got::LookupRejected { request_id, code },
            }
        }
        other => panic!("a server never sends {other:?}"),
    }
}

/// A protocol client speaking raw frames.
pub struct RawClient {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    pub async fn connect(address: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Sends `Hello` with `token` and returns the answer.
    pub async fn handshake(&mut self, token: &[u8]) -> Got {
        self.send_frame(Frame::Hello(Hello {
            client_id: 42,
            token,
        }))
        .await;
        self.next().await
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed; the test looks at what comes back.
        let _ = self.stream.write_all(bytes).await;
    }

    pub async fn send_frame(&mut self, frame: Frame<'_>) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        self.send(&bytes).await;
    }

    pub async fn send_batch(&mut self, request_id: u64, batch: Batch<'_>) {
        let mut bytes = Vec::new();
        encode_batch(&mut bytes, request_id, batch);
        self.send(&bytes).await;
    }

    /// The next frame, or `Closed`.
    pub async fn next(&mut self) -> Got {
        let decoder = FrameDecoder::default();
        loop {
            if let Some((frame, size)) = decoder.decode(&self.buffer).expect("server frames") {
                let got = owned(frame);
                self.buffer.drain(..size);
                return got;
            }
            self.buffer.reserve(65_536);
            let read = tokio::time::timeout(FRAME_WAIT, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("a frame or a close in time");
            if matches!(read, Ok(0) | Err(_)) {
                return Got::Closed;
            }
        }
    }

    /// Sends one request and returns its reply's codes (asserting status ok).
    pub async fn call(&mut self, request_id: u64, batch: Batch<'_>) -> Vec<ResultCode> {
        self.send_batch(request_id, batch).await;
        match self.next().await {
            Got::Ok {
                request_id: replied,
                codes,
            } if replied == request_id => codes,
            other => panic!("request {request_id}: {other:?}"),
        }
    }

    /// Asserts the server says nothing more and closes.
    pub async fn expect_closed(&mut self) {
        assert_eq!(self.next().await, Got::Closed);
    }
}

/// A `Lookup` of accounts `ids`.
pub fn account_lookup(request_id: u64, ids: &[u128]) -> Vec<u8> {
    let body: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    let mut bytes = Vec::new();
    let count = ids.len() as u32;
    encode_lookup(
        &mut bytes,
        request_id,
        LookupOperation::Accounts,
        count,
        &body,
    );
    bytes
}

pub fn all_ok(codes: &[ResultCode]) -> bool {
    codes.iter().all(|&code| code == ResultCode::Ok)
}

pub fn account(id: u128, constrained: bool) -> Account {
    Account {
        id: AccountId(id),
        ledger: LEDGER,
        code: 10,
        flags: if constrained {
            account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
        } else {
            0
        },
        ..Account::default()
    }
}

pub fn transfer(id: u128, debit: u128, credit: u128, amount: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount,
        ledger: LEDGER,
        code: 20,
        ..Transfer::default()
    }
}

pub fn sku(id: u64, stocked: u64) -> Sku {
    Sku {
        id: SkuId(id),
        units_stocked: stocked,
        ..Sku::default()
    }
}

pub fn reservation(order: u128, buyer: u128, sku: u64, quantity: u32) -> Reservation {
    Reservation {
        order_id: OrderId(order),
        buyer_id: AccountId(buyer),
        sku_id: SkuId(sku),
        quantity,
        timeout_ns: 60_000_000_000,
        ..Reservation::default()
    }
}

pub fn reservation_key(order: u128, sku: u64) -> ReservationKey {
    ReservationKey {
        order_id: OrderId(order),
        sku_id: SkuId(sku),
        ..ReservationKey::default()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn order(
    id: u128,
    buyer: u128,
    merchant: u128,
    transfer: u128,
    amount: u64,
    sku: u64,
) -> Order {
    let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
    lines[0] = OrderLine {
        sku_id: SkuId(sku),
        quantity: 1,
        reserved: 0,
    };
    Order {
        id: OrderId(id),
        buyer_id: AccountId(buyer),
        merchant_id: AccountId(merchant),
        transfer_id: TransferId(transfer),
        amount,
        timeout_ns: 60_000_000_000,
        ledger: LEDGER,
        line_count: 1,
        lines,
        ..Order::default()
    }
}

pub fn action(order: u128, transfer: u128) -> OrderAction {
    OrderAction {
        order_id: OrderId(order),
        transfer_id: TransferId(transfer),
        ..OrderAction::default()
    }
}

pub fn dispatch_ack(id: u128) -> DispatchAck {
    DispatchAck {
        dispatch_id: DispatchId(id),
        ..DispatchAck::default()
    }
}
