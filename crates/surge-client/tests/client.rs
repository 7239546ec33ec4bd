//! The client against the real TCP server and a real engine on loopback: every operation,
//! batching of concurrent calls, `busy` retries (lookups too), deadlines when the server is
//! gone, and a retry after a dropped connection that answers `exists` instead of paying
//! twice.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use surge_client::{Client, ClientConfig, ClientError};
use surge_core::records::ORDER_LINES_MAX;
use surge_core::TransferId;
use surge_core::{Account, AccountId, DispatchAck, DispatchId, Order, OrderAction, OrderId};
use surge_core::{OrderLine, Reservation, ReservationKey, ResultCode, Sku, SkuId, Transfer};
use surge_engine::{Engine, EngineConfig};
use surge_protocol::{ErrorCode, Frame, FrameDecoder, Scopes};
use surge_tcp::{serve_with_metrics, TcpLimits, TcpMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TOKEN: &[u8] = b"all-scopes";
const LEDGER: u32 = 1;
const BANK: u128 = 1;
const SHOP: u128 = 2;

struct TestServer {
    address: SocketAddr,
    engine: Arc<Engine>,
    metrics: Arc<TcpMetrics>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _directory: tempfile::TempDir,
}

impl TestServer {
    /// One shard for the order flows (orders do not cross shards yet); two for payments.
    async fn start(limits: TcpLimits) -> TestServer {
        TestServer::start_sharded(limits, 1).await
    }

    async fn start_sharded(limits: TcpLimits, shards: usize) -> TestServer {
        let directory = tempfile::tempdir().expect("tempdir");
        let mut config = EngineConfig::new(directory.path());
        config.shards = shards;
        config.history = false;
        config.node.log.segment_size_bytes = 16 * 1024 * 1024;
        let (engine, _) = Engine::open(config).expect("engine opens");
        let engine = Arc::new(engine);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let metrics = Arc::new(TcpMetrics::default());
        let (shutdown, receiver) = watch::channel(false);
        let auth = |_: u128, token: &[u8]| (token == TOKEN).then_some(Scopes::ALL);
        let task = tokio::spawn(serve_with_metrics(
            listener,
            engine.clone(),
            Arc::new(auth),
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

    async fn stop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            task.await.expect("serve task").expect("serve ok");
        }
    }

    fn requests(&self) -> u64 {
        self.metrics
            .value("surge_tcp_requests_total")
            .expect("metric")
    }

    fn credits(&self, account: u128) -> u64 {
        self.engine
            .account(AccountId(account))
            .expect("account")
            .credits_posted
    }
}

async fn client(address: SocketAddr) -> Client {
    Client::connect(&address.to_string(), ClientConfig::new(TOKEN))
        .await
        .expect("client connects")
}

fn account(id: u128, constrained: bool) -> Account {
    Account {
        id: AccountId(id),
        ledger: LEDGER,
        code: 10,
        flags: if constrained {
            surge_core::account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
        } else {
            0
        },
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u64) -> Transfer {
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

fn order(id: u128, buyer: u128, merchant: u128, transfer: u128, sku: u64) -> Order {
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
        amount: 100,
        timeout_ns: 60_000_000_000,
        ledger: LEDGER,
        line_count: 1,
        lines,
        ..Order::default()
    }
}

fn action(order: u128, transfer: u128) -> OrderAction {
    OrderAction {
        order_id: OrderId(order),
        transfer_id: TransferId(transfer),
        ..OrderAction::default()
    }
}

fn key(order: u128, sku: u64) -> ReservationKey {
    ReservationKey {
        order_id: OrderId(order),
        sku_id: SkuId(sku),
        ..ReservationKey::default()
    }
}

fn ok(codes: Result<Vec<ResultCode>, ClientError>) -> bool {
    codes
        .expect("a reply")
        .iter()
        .all(|&code| code == ResultCode::Ok)
}

/// Two shards with the bank and the shop on different ones: every payment crosses shards.
async fn with_accounts(limits: TcpLimits) -> TestServer {
    assert_ne!(surge_core::shard_of(BANK, 2), surge_core::shard_of(SHOP, 2));
    let server = TestServer::start_sharded(limits, 2).await;
    let client = client(server.address).await;
    assert!(ok(client
        .create_accounts(&[account(BANK, false), account(SHOP, false)])
        .await));
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_through_the_client() {
    let mut server = TestServer::start(TcpLimits::default()).await;
    let client = client(server.address).await;
    let (buyer, merchant, sku) = (3, 4, 77);
    let accounts = [
        account(BANK, false),
        account(buyer, true),
        account(merchant, false),
    ];
    assert!(ok(client.create_accounts(&accounts).await));
    assert!(ok(client
        .create_transfers(&[transfer(10, BANK, buyer, 1_000)])
        .await));
    let stock = Sku {
        id: SkuId(sku),
        units_stocked: 10,
        ..Sku::default()
    };
    assert!(ok(client.create_skus(&[stock]).await));
    let reservations: Vec<Reservation> = [20u128, 21]
        .iter()
        .map(|&order| Reservation {
            order_id: OrderId(order),
            buyer_id: AccountId(buyer),
            sku_id: SkuId(sku),
            quantity: 1,
            timeout_ns: 60_000_000_000,
            ..Reservation::default()
        })
        .collect();
    assert!(ok(client.reserve(&reservations).await));
    assert!(ok(client.confirm_reservations(&[key(20, sku)]).await));
    assert!(ok(client.release_reservations(&[key(21, sku)]).await));
    let orders = [
        order(30, buyer, merchant, 40, sku),
        order(31, buyer, merchant, 41, sku),
        order(32, buyer, merchant, 42, sku),
    ];
    assert!(ok(client.place_orders(&orders).await));
    assert!(ok(client
        .pay_orders(&[action(30, 50), action(31, 51)])
        .await));
    assert!(ok(client.cancel_orders(&[action(32, 52)]).await));
    assert!(ok(client.refund_orders(&[action(31, 53)]).await));
    let ack = DispatchAck {
        dispatch_id: DispatchId(30),
        ..DispatchAck::default()
    };
    assert!(ok(client.ack_dispatch(&[ack]).await));
    assert_eq!(server.credits(merchant), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_batched_into_fewer_requests() {
    let mut server = with_accounts(TcpLimits::default()).await;
    let client = client(server.address).await;
    let before = server.requests();
    let calls = 500u128;
    let tasks: Vec<_> = (0..calls)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .create_transfers(&[transfer(1_000 + n, BANK, SHOP, 1)])
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("reply"), [ResultCode::Ok]);
    }
    let requests = server.requests() - before;
    assert!(
        requests < calls as u64 / 2,
        "{calls} calls took {requests} requests"
    );
    assert_eq!(server.credits(SHOP), calls as u64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_replies_are_retried_until_they_succeed() {
    // One request in flight in the whole server, but four allowed per connection: three
    // operations at once make three requests, and two of them are `busy` at first.
    let limits = TcpLimits {
        requests_in_flight_max: 1,
        requests_in_flight_per_connection_max: 4,
        ..TcpLimits::default()
    };
    let mut server = with_accounts(limits).await;
    let client = client(server.address).await;
    for round in 0..5u128 {
        let base = 10_000 * (round + 1);
        let skus = [Sku {
            id: SkuId(base as u64),
            units_stocked: 1,
            ..Sku::default()
        }];
        let accounts = [account(base, false)];
        let transfers = [transfer(base, BANK, SHOP, 1)];
        let (a, b, c) = tokio::join!(
            client.create_skus(&skus),
            client.create_accounts(&accounts),
            client.create_transfers(&transfers),
        );
        assert!(ok(a) && ok(b) && ok(c));
    }
    let busy = server
        .metrics
        .value("surge_tcp_replies_busy_total")
        .expect("metric");
    assert!(busy > 0, "no busy reply was provoked");
    assert_eq!(server.credits(SHOP), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_is_respected_when_the_server_is_gone() {
    let mut server = with_accounts(TcpLimits::default()).await;
    let client = client(server.address).await;
    server.stop().await;
    let start = Instant::now();
    let deadline = start + Duration::from_millis(500);
    let batch = surge_core::Batch::CreateTransfers(&[transfer(5, BANK, SHOP, 1)]);
    let result = client.submit_until(batch, deadline).await;
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{result:?}"
    );
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1_500), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_the_connect() {
    let mut server = TestServer::start(TcpLimits::default()).await;
    let address = server.address.to_string();
    let result = Client::connect(&address, ClientConfig::new("wrong")).await;
    assert_eq!(
        result.err(),
        Some(ClientError::Handshake(ErrorCode::Unauthorized))
    );
    server.stop().await;
}

/// A TCP proxy in front of the server that, when armed, cuts the connection at the next
/// reply instead of forwarding it: the request took effect, the client never heard.
struct Proxy {
    address: SocketAddr,
    cut_next_reply: Arc<AtomicBool>,
}

async fn proxy(upstream: SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let cut_next_reply = Arc::new(AtomicBool::new(false));
    let cut = cut_next_reply.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward(client, upstream, cut.clone()));
        }
    });
    Proxy {
        address,
        cut_next_reply,
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, cut: Arc<AtomicBool>) {
    let server = TcpStream::connect(upstream).await.expect("upstream");
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let decoder = FrameDecoder::default();
    let mut buffer = Vec::new();
    loop {
        while let Ok(Some((frame, size))) = decoder.decode(&buffer) {
            if matches!(frame, Frame::Reply(_)) && cut.swap(false, Ordering::SeqCst) {
                requests.abort();
                return;
            }
            if client_write.write_all(&buffer[..size]).await.is_err() {
                requests.abort();
                return;
            }
            buffer.drain(..size);
        }
        buffer.reserve(65_536);
        if matches!(server_read.read_buf(&mut buffer).await, Ok(0) | Err(_)) {
            requests.abort();
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_dropped_connection_answers_exists_not_a_second_effect() {
    let mut server = with_accounts(TcpLimits::default()).await;
    let proxy = proxy(server.address).await;
    let client = client(proxy.address).await;
    proxy.cut_next_reply.store(true, Ordering::SeqCst);
    let codes = client
        .create_transfers(&[transfer(77, BANK, SHOP, 5)])
        .await;
    // The first attempt took effect and its reply was lost; the client reconnected and
    // resent the same transfer, which the engine recognised.
    assert_eq!(codes, Ok(vec![ResultCode::Exists]));
    assert_eq!(server.credits(SHOP), 5);
    assert!(
        server.requests() >= 3,
        "accounts, the lost attempt and the retry"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_take_turns_with_commands_and_are_retried_after_busy() {
    // One request in flight in the whole server: concurrent lookups and commands are
    // `busy` at first and retried until answered.
    let limits = TcpLimits {
        requests_in_flight_max: 1,
        requests_in_flight_per_connection_max: 4,
        ..TcpLimits::default()
    };
    let mut server = with_accounts(limits).await;
    let client = client(server.address).await;
    for round in 0..5u64 {
        let transfers = [transfer(u128::from(100 + round), BANK, SHOP, 1)];
        let (paid, accounts, missing) = tokio::join!(
            client.create_transfers(&transfers),
            client.lookup_accounts(&[AccountId(SHOP), AccountId(77), AccountId(BANK)]),
            client.lookup_skus(&[SkuId(5)]),
        );
        assert!(ok(paid));
        let accounts = accounts.expect("accounts looked up");
        assert_eq!(accounts.len(), 3);
        assert!(accounts[0].is_some() && accounts[1].is_none() && accounts[2].is_some());
        assert_eq!(missing.expect("SKUs looked up"), [None]);
    }
    let busy = server.metrics.value("surge_tcp_replies_busy_total");
    assert!(busy.expect("metric") > 0, "no busy reply was provoked");
    let found = client.lookup_transfers(&[TransferId(104)]).await.unwrap();
    assert!(found[0].is_some(), "the last payment is there");
    let too_many = vec![AccountId(1); 4_097];
    assert_eq!(
        client.lookup_accounts(&too_many).await,
        Err(ClientError::TooManyIds {
            count: 4_097,
            max: 4_096
        })
    );
    assert_eq!(client.lookup_orders(&[]).await, Ok(Vec::new()));
    server.stop().await;
    let start = Instant::now();
    let deadline = start + Duration::from_millis(300);
    let result = client
        .lookup_until(surge_protocol::LookupOperation::Accounts, &[1], deadline)
        .await;
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(1_300));
}
