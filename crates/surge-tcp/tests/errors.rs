//! Every documented error over a real socket: bad handshakes, garbage, wrong version, bad
//! checksum, truncated and oversized frames, wrong scope, refused operations. Each gets
//! its code (or a close), no other connection notices, and none changes any state.

mod common;

use std::time::Duration;

use common::{account, transfer, Got, RawClient, TestServer, DISPATCH_TOKEN, PAYMENTS_TOKEN};
use common::{all_ok, dispatch_ack, READ_TOKEN};
use surge_core::{AccountId, Batch, Operation};
use surge_protocol::constants::{HEADER_SIZE_BYTES, REQUEST_COMMANDS_MAX};
use surge_protocol::{encode_batch, encode_request, ErrorCode, Frame, Hello};
use surge_tcp::TcpLimits;
use tokio::io::AsyncWriteExt;

/// A request creating account `id`: what every bad frame below carries, so a test can
/// check that it never took effect.
fn create_account(request_id: u64, id: u128) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_batch(
        &mut bytes,
        request_id,
        Batch::CreateAccounts(&[account(id, false)]),
    );
    bytes
}

/// Rewrites the checksum after a test changed header fields.
fn reseal(bytes: &mut [u8]) {
    bytes[20..24].fill(0);
    let crc = crc32c::crc32c(bytes);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
}

fn account_exists(server: &TestServer, id: u128) -> bool {
    server.engine.account(AccountId(id)).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_gets_a_handshake_error_and_nothing_else() {
    let mut server = TestServer::start_default().await;
    for token in [&b"wrong"[..], b""] {
        let mut client = RawClient::connect(server.address).await;
        // The client pipelines a request behind its Hello: it must not be executed.
        client
            .send_frame(Frame::Hello(Hello {
                client_id: 1,
                token,
            }))
            .await;
        client.send(&create_account(1, 900)).await;
        assert_eq!(
            client.next().await,
            Got::HandshakeError(ErrorCode::Unauthorized)
        );
        client.expect_closed().await;
    }
    assert_eq!(server.metric("surge_tcp_handshake_failures_total"), 2);
    assert!(!account_exists(&server, 900));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_hello_is_refused() {
    let mut server = TestServer::start_default().await;
    let mut client = RawClient::connect(server.address).await;
    client.send(&create_account(1, 901)).await;
    assert_eq!(
        client.next().await,
        Got::HandshakeError(ErrorCode::UnexpectedFrame)
    );
    client.expect_closed().await;
    let mut client = RawClient::connect(server.address).await;
    client.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        client.next().await,
        Got::HandshakeError(ErrorCode::BadMagic)
    );
    client.expect_closed().await;
    assert!(!account_exists(&server, 901));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_times_out_in_the_handshake() {
    let limits = TcpLimits {
        handshake_timeout: Duration::from_millis(200),
        ..TcpLimits::default()
    };
    let mut server = TestServer::start(limits).await;
    let mut client = RawClient::connect(server.address).await;
    assert_eq!(
        client.next().await,
        Got::HandshakeError(ErrorCode::HandshakeTimeout)
    );
    client.expect_closed().await;
    server.stop().await;
}

/// Sends `bytes` after a good handshake; expects `Error` with `code`, then a close, while
/// a second connection keeps working; and the account the bytes name never appears.
async fn fatal(server: &TestServer, bytes: &[u8], code: ErrorCode, id: u128) {
    let mut bystander = server.client(PAYMENTS_TOKEN).await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    client.send(bytes).await;
    assert_eq!(client.next().await, Got::Error(code), "{code}");
    client.expect_closed().await;
    let accounts = [account(id + 1_000, false)];
    assert!(all_ok(
        &bystander.call(7, Batch::CreateAccounts(&accounts)).await
    ));
    assert!(
        !account_exists(server, id),
        "{code}: account {id} was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let mut server = TestServer::start_default().await;
    let mut garbage = b"\x00garbage that is not a frame at all".to_vec();
    garbage.extend(create_account(1, 910));
    fatal(&server, &garbage, ErrorCode::BadMagic, 910).await;

    let mut version = create_account(1, 911);
    version[4] = 9;
    fatal(&server, &version, ErrorCode::UnsupportedVersion, 911).await;

    let mut checksum = create_account(1, 912);
    checksum[HEADER_SIZE_BYTES + 3] ^= 0x10;
    fatal(&server, &checksum, ErrorCode::BadChecksum, 912).await;

    // Only the header of a frame declaring 16 MiB: refused before any body is read.
    let mut oversized = create_account(1, 913);
    oversized[16..20].copy_from_slice(&(16u32 << 20).to_le_bytes());
    reseal(&mut oversized);
    fatal(
        &server,
        &oversized[..HEADER_SIZE_BYTES],
        ErrorCode::FrameTooLarge,
        913,
    )
    .await;

    let mut kind = create_account(1, 914);
    kind[6] = 99;
    reseal(&mut kind);
    fatal(&server, &kind, ErrorCode::UnknownKind, 914).await;

    let mut hello = Vec::new();
    Frame::Hello(Hello {
        client_id: 1,
        token: PAYMENTS_TOKEN,
    })
    .encode(&mut hello);
    fatal(&server, &hello, ErrorCode::UnexpectedFrame, 915).await;
    assert_eq!(server.metric("surge_tcp_frame_errors_total"), 6);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_then_close_does_nothing() {
    let mut server = TestServer::start_default().await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    let bytes = create_account(1, 920);
    client.send(&bytes[..bytes.len() - 10]).await;
    client.stream.shutdown().await.expect("half close");
    client.expect_closed().await;
    let mut other = server.client(PAYMENTS_TOKEN).await;
    assert!(all_ok(
        &other
            .call(2, Batch::CreateAccounts(&[account(921, false)]))
            .await
    ));
    assert!(!account_exists(&server, 920));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_get_their_code_and_the_connection_goes_on() {
    let mut server = TestServer::start_default().await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    let record = account(930, false);
    let body = Batch::CreateAccounts(std::slice::from_ref(&record))
        .body()
        .to_vec();
    let cases: Vec<(u8, u32, Vec<u8>, ErrorCode)> = vec![
        (22, 1, body.clone(), ErrorCode::UnknownOperation),
        (255, 1, body.clone(), ErrorCode::UnknownOperation),
        (0, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (12, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (13, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (14, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (15, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (18, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (20, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (21, 1, body.clone(), ErrorCode::OperationNotAllowed),
        (1, 0, Vec::new(), ErrorCode::NoCommands),
        (
            1,
            REQUEST_COMMANDS_MAX as u32 + 1,
            body.clone(),
            ErrorCode::TooManyCommands,
        ),
        (1, 2, body.clone(), ErrorCode::RequestBodySizeMismatch),
        (11, 1, vec![0; 32], ErrorCode::ScopeDenied),
    ];
    for (index, (operation, count, body, code)) in cases.into_iter().enumerate() {
        let mut bytes = Vec::new();
        encode_request(
            &mut bytes,
            index as u64,
            Operation::CreateAccounts,
            count,
            &[&body],
        );
        bytes[24] = operation;
        reseal(&mut bytes);
        client.send(&bytes).await;
        let request_id = index as u64;
        assert_eq!(
            client.next().await,
            Got::Rejected { request_id, code },
            "case {index}"
        );
    }
    // A non-zero status in a request.
    let mut bytes = create_account(50, 930);
    bytes[25] = 1;
    reseal(&mut bytes);
    client.send(&bytes).await;
    let code = ErrorCode::RequestReservedNotZero;
    assert_eq!(
        client.next().await,
        Got::Rejected {
            request_id: 50,
            code
        }
    );
    assert!(!account_exists(&server, 930));
    // The same connection still works.
    assert!(all_ok(
        &client.call(99, Batch::CreateAccounts(&[record])).await
    ));
    assert!(account_exists(&server, 930));
    assert_eq!(server.metric("surge_tcp_replies_rejected_total"), 15);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_limit_operations() {
    let mut server = TestServer::start_default().await;
    let mut logistics = server.client(DISPATCH_TOKEN).await;
    let transfers = [transfer(1, 2, 3, 4)];
    logistics
        .send_batch(1, Batch::CreateTransfers(&transfers))
        .await;
    let code = ErrorCode::ScopeDenied;
    assert_eq!(
        logistics.next().await,
        Got::Rejected {
            request_id: 1,
            code
        }
    );
    let mut reader = server.client(READ_TOKEN).await;
    reader
        .send_batch(2, Batch::AckDispatch(&[dispatch_ack(5)]))
        .await;
    assert_eq!(
        reader.next().await,
        Got::Rejected {
            request_id: 2,
            code
        }
    );
    reader
        .send_batch(3, Batch::CreateAccounts(&[account(940, false)]))
        .await;
    assert_eq!(
        reader.next().await,
        Got::Rejected {
            request_id: 3,
            code
        }
    );
    assert!(!account_exists(&server, 940));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered() {
    let mut server = TestServer::start_default().await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    client.send_frame(Frame::Ping { request_id: 77 }).await;
    assert_eq!(client.next().await, Got::Pong(77));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_already_in_flight_is_refused() {
    let mut server = TestServer::start_default().await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    // A full request (8,190 new accounts, milliseconds of work) and, right behind it in the
    // same write, another request with the same id: the second is refused.
    for round in 0..10u128 {
        let accounts: Vec<_> = (0..8_190u128)
            .map(|n| account(1_000_000 * (round + 1) + n, false))
            .collect();
        let mut bytes = Vec::new();
        encode_batch(&mut bytes, 5, Batch::CreateAccounts(&accounts));
        let second = [account(950 + round, false)];
        encode_batch(&mut bytes, 5, Batch::CreateAccounts(&second));
        client.send(&bytes).await;
        let (first, then) = (client.next().await, client.next().await);
        let code = ErrorCode::RequestIdInFlight;
        let refused = Got::Rejected {
            request_id: 5,
            code,
        };
        if first == refused || then == refused {
            assert!(!account_exists(&server, 950 + round));
            server.stop().await;
            return;
        }
    }
    panic!("the second request never overlapped the first");
}
