//! Limits and lifecycle over real sockets: requests (and lookups) past the in-flight limits
//! are `busy` at once and have no effect, idle connections are closed, the connection limit refuses
//! the next one, and shutdown answers every admitted request before `serve` returns.

mod common;

use std::time::Duration;

use common::{account, account_lookup, all_ok, transfer, Got, RawClient, TestServer};
use common::{PAYMENTS_TOKEN, READ_TOKEN};
use surge_core::{AccountId, Batch, ResultCode};
use surge_protocol::{encode_batch, ErrorCode, Frame};
use surge_tcp::TcpLimits;

const BANK: u128 = 1;
const SHOP: u128 = 2;

async fn with_accounts(limits: TcpLimits) -> TestServer {
    let server = TestServer::start(limits).await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    let accounts = [account(BANK, false), account(SHOP, false)];
    assert!(all_ok(
        &client.call(1, Batch::CreateAccounts(&accounts)).await
    ));
    server
}

/// `count` one-transfer requests (ids 1000 + n, request ids n) in one write.
fn pipelined(count: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for n in 0..count {
        let one = [transfer(1_000 + u128::from(n), BANK, SHOP, 1)];
        encode_batch(&mut bytes, n, Batch::CreateTransfers(&one));
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_requests_are_busy_and_do_nothing() {
    let limits = TcpLimits {
        requests_in_flight_per_connection_max: 1,
        ..TcpLimits::default()
    };
    let mut server = with_accounts(limits).await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    let count = 20;
    client.send(&pipelined(count)).await;
    let (mut ok, mut busy) = (0u64, Vec::new());
    for _ in 0..count {
        match client.next().await {
            Got::Ok { codes, .. } => {
                assert_eq!(codes, [ResultCode::Ok]);
                ok += 1;
            }
            Got::Busy { request_id } => busy.push(request_id),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        !busy.is_empty(),
        "twenty pipelined requests, one slot: some must be busy"
    );
    let shop = server.engine.account(AccountId(SHOP)).expect("shop");
    assert_eq!(
        shop.credits_posted, ok,
        "only the admitted transfers took effect"
    );
    assert_eq!(
        server.metric("surge_tcp_replies_busy_total"),
        busy.len() as u64
    );
    // Retrying the busy ones, one at a time, succeeds.
    for request_id in busy {
        let one = [transfer(1_000 + u128::from(request_id), BANK, SHOP, 1)];
        let codes = client
            .call(100 + request_id, Batch::CreateTransfers(&one))
            .await;
        assert_eq!(codes, [ResultCode::Ok]);
    }
    let shop = server.engine.account(AccountId(SHOP)).expect("shop");
    assert_eq!(shop.credits_posted, count);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_in_flight_limit_spans_connections() {
    let limits = TcpLimits {
        requests_in_flight_max: 1,
        ..TcpLimits::default()
    };
    let mut server = with_accounts(limits).await;
    let mut first = server.client(PAYMENTS_TOKEN).await;
    let mut second = server.client(PAYMENTS_TOKEN).await;
    // The first connection holds the one slot with a full request of 8,190 new accounts
    // (milliseconds of work); a request on the second connection meanwhile is `busy`.
    let mut busy = 0;
    for round in 0..20u128 {
        let accounts: Vec<_> = (0..8_190u128)
            .map(|n| account(1_000_000 * (round + 1) + n, false))
            .collect();
        first.send_batch(1, Batch::CreateAccounts(&accounts)).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let one = [transfer(5_000 + round, BANK, SHOP, 1)];
        second.send_batch(2, Batch::CreateTransfers(&one)).await;
        match second.next().await {
            Got::Busy { request_id: 2 } => busy += 1,
            Got::Ok { request_id: 2, .. } => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(first.next().await, Got::Ok { request_id: 1, .. }));
        if busy > 0 {
            break;
        }
    }
    assert!(busy > 0, "the second connection never saw the shared limit");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_pings_keep_them_open() {
    let limits = TcpLimits {
        idle_timeout: Duration::from_millis(300),
        ..TcpLimits::default()
    };
    let mut server = TestServer::start(limits).await;
    let mut pinging = server.client(PAYMENTS_TOKEN).await;
    let mut idle = server.client(PAYMENTS_TOKEN).await;
    for ping in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pinging.send_frame(Frame::Ping { request_id: ping }).await;
        assert_eq!(pinging.next().await, Got::Pong(ping));
    }
    assert_eq!(idle.next().await, Got::Error(ErrorCode::IdleTimeout));
    idle.expect_closed().await;
    assert_eq!(server.metric("surge_tcp_idle_timeouts_total"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_the_next_one() {
    let limits = TcpLimits {
        connections_max: 1,
        ..TcpLimits::default()
    };
    let mut server = TestServer::start(limits).await;
    let _first = server.client(PAYMENTS_TOKEN).await;
    let mut second = RawClient::connect(server.address).await;
    assert_eq!(
        second.next().await,
        Got::HandshakeError(ErrorCode::TooManyConnections)
    );
    second.expect_closed().await;
    assert_eq!(server.metric("surge_tcp_connections_refused_total"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_admitted_request_before_returning() {
    let mut server = with_accounts(TcpLimits::default()).await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    let count = 50;
    client.send(&pipelined(count)).await;
    // Flip shutdown while requests are in flight (and maybe not all read yet).
    tokio::time::sleep(Duration::from_millis(2)).await;
    server.begin_shutdown();
    let mut answered = Vec::new();
    loop {
        match client.next().await {
            Got::Ok { request_id, codes } => {
                assert_eq!(codes, [ResultCode::Ok]);
                answered.push(request_id);
            }
            Got::Error(ErrorCode::ShuttingDown) => break,
            other => panic!("{other:?}"),
        }
    }
    client.expect_closed().await;
    server.stop().await;
    // Exactly the answered transfers took effect: none was lost after its reply, and none
    // took effect without one.
    let shop = server.engine.account(AccountId(SHOP)).expect("shop");
    assert_eq!(shop.credits_posted, answered.len() as u64);
    assert_eq!(server.metric("surge_tcp_requests_in_flight"), 0);
    // New connections are refused once `serve` returned.
    assert!(tokio::net::TcpStream::connect(server.address)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_trickled_byte_by_byte_does_not_keep_a_connection_open() {
    let limits = TcpLimits {
        idle_timeout: Duration::from_millis(300),
        ..TcpLimits::default()
    };
    let mut server = TestServer::start(limits).await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    let mut bytes = Vec::new();
    Frame::Ping { request_id: 1 }.encode(&mut bytes);
    // Half a header, one byte every 100 ms: bytes arrive, but never a whole frame.
    let trickle = async {
        for byte in &bytes[..16] {
            client.send(std::slice::from_ref(byte)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    trickle.await;
    assert_eq!(client.next().await, Got::Error(ErrorCode::IdleTimeout));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_take_in_flight_slots_and_past_them_are_busy() {
    let limits = TcpLimits {
        requests_in_flight_per_connection_max: 1,
        ..TcpLimits::default()
    };
    let mut server = with_accounts(limits).await;
    let mut reader = server.client(READ_TOKEN).await;
    let count = 50;
    let mut bytes = Vec::new();
    for request_id in 0..count {
        bytes.extend(account_lookup(request_id, &[BANK, 99, SHOP]));
    }
    reader.send(&bytes).await;
    let (mut found, mut busy) = (0, 0);
    for _ in 0..count {
        match reader.next().await {
            Got::Found { entries: 2, .. } => found += 1,
            Got::LookupBusy { .. } => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(found >= 1, "the first lookup is admitted");
    assert!(
        busy >= 1,
        "fifty pipelined lookups, one slot: some must be busy"
    );
    assert_eq!(server.metric("surge_tcp_lookups_total"), count);
    assert_eq!(server.metric("surge_tcp_replies_found_total"), found);
    // One at a time, each is answered.
    reader.send(&account_lookup(500, &[SHOP])).await;
    assert_eq!(
        reader.next().await,
        Got::Found {
            request_id: 500,
            entries: 1
        }
    );
    server.stop().await;
}
