//! Lookups over the TCP protocol against the real `surge serve` binary: every kind of record
//! is found (and missing ids are absent), each refusal has its code and leaves the
//! connection open, lookups pipeline with command batches on one connection, and a token
//! with only the `read` scope can look up but not write.

mod served;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use served::{lookup_bytes, serve, Got, RawClient};
use surge_client::{Client, ClientConfig, ClientError};
use surge_core::records::ORDER_LINES_MAX;
use surge_core::{transfer_flags, Account, AccountId, Batch, Order, OrderId, OrderLine};
use surge_core::{OrderLookup, OrderStatus, PendingStatus, ResultCode, Sku, SkuId, Transfer};
use surge_core::{TransferId, TransferLookup};
use surge_protocol::constants::LOOKUP_IDS_MAX;
use surge_protocol::{ErrorCode, Frame, LookupEntry, LookupOperation};

fn account(id: u128) -> Account {
    Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

fn sku(id: u64, stocked: u64) -> Sku {
    Sku {
        id: SkuId(id),
        units_stocked: stocked,
        ..Sku::default()
    }
}

fn order(id: u128, payment: u128, sku: u64) -> Order {
    let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
    lines[0] = OrderLine {
        sku_id: SkuId(sku),
        quantity: 1,
        reserved: 0,
    };
    Order {
        id: OrderId(id),
        buyer_id: AccountId(1),
        merchant_id: AccountId(2),
        transfer_id: TransferId(payment),
        amount: 100,
        timeout_ns: 3_600_000_000_000,
        ledger: 1,
        line_count: 1,
        lines,
        ..Order::default()
    }
}

/// A token with both `payments` and `read`, made before the first start (so the server
/// makes no first-start tokens).
fn payments_and_read_token(data_dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(["token", "create", "--scope", "payments", "--scope", "read"])
        .args(["--name", "both", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("surge token runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn client(addr: std::net::SocketAddr, token: &str) -> Client {
    Client::connect(&addr.to_string(), ClientConfig::new(token.to_string()))
        .await
        .expect("the client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_record_is_found_and_missing_ids_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &[]);
    let payments = client(served.tcp, &served::initial_token(dir.path(), "payments")).await;
    let read_token = served::initial_token(dir.path(), "read");
    let reader = client(served.tcp, &read_token).await;

    let ok = |codes: Vec<ResultCode>| codes.iter().all(|&code| code == ResultCode::Ok);
    assert!(ok(payments
        .create_accounts(&[account(1), account(2)])
        .await
        .unwrap()));
    let pending = Transfer {
        flags: transfer_flags::PENDING,
        ..transfer(11, 1, 2, 3)
    };
    let to_nobody = transfer(12, 1, 999, 4);
    let codes = payments
        .create_transfers(&[transfer(10, 1, 2, 5), pending, to_nobody])
        .await
        .unwrap();
    assert_eq!(codes[..2], [ResultCode::Ok; 2]);
    let transfer_failure = codes[2];
    assert_ne!(transfer_failure, ResultCode::Ok);
    assert!(ok(payments.create_skus(&[sku(7, 10)]).await.unwrap()));
    let codes = payments
        .place_orders(&[order(20, 30, 7), order(21, 31, 8)])
        .await
        .unwrap();
    assert_eq!(codes[0], ResultCode::Ok);
    let order_failure = codes[1];
    assert_ne!(order_failure, ResultCode::Ok);

    let accounts = reader
        .lookup_accounts(&[AccountId(1), AccountId(3), AccountId(2)])
        .await
        .unwrap();
    assert_eq!(accounts.len(), 3);
    let buyer = accounts[0].expect("account 1");
    assert_eq!((buyer.id, buyer.debits_posted), (AccountId(1), 5));
    assert_eq!(
        buyer.debits_pending,
        3 + 100,
        "the pending transfer and the order"
    );
    assert!(accounts[1].is_none());
    assert_eq!(accounts[2].expect("account 2").credits_posted, 5);

    let ids = [10, 11, 12, 13].map(TransferId);
    let transfers = reader.lookup_transfers(&ids).await.unwrap();
    match transfers[0] {
        Some(TransferLookup::Committed {
            transfer,
            pending_status: None,
        }) => assert_eq!((transfer.id, transfer.amount), (TransferId(10), 5)),
        other => panic!("transfer 10: {other:?}"),
    }
    assert!(matches!(
        transfers[1],
        Some(TransferLookup::Committed {
            pending_status: Some(PendingStatus::Pending),
            ..
        })
    ));
    assert_eq!(transfers[2], Some(TransferLookup::Failed(transfer_failure)));
    assert_eq!(transfers[3], None);

    let skus = reader.lookup_skus(&[SkuId(8), SkuId(7)]).await.unwrap();
    assert_eq!(skus[0], None);
    let stock = skus[1].expect("SKU 7");
    assert_eq!((stock.units_stocked, stock.units_reserved), (10, 1));

    let ids = [20, 21, 22].map(OrderId);
    let orders = reader.lookup_orders(&ids).await.unwrap();
    match orders[0] {
        Some(OrderLookup::Placed(view)) => {
            assert_eq!(view.order.id, OrderId(20));
            assert_eq!(
                OrderStatus::from_u16(view.order.status),
                Some(OrderStatus::Reserved)
            );
            assert!(view.expires_at > 0);
        }
        other => panic!("order 20: {other:?}"),
    }
    assert_eq!(orders[1], Some(OrderLookup::Failed(order_failure)));
    assert_eq!(orders[2], None);

    // On the wire: the reply names how many ids were asked, and holds one entry per id
    // found, in the order of the ids.
    let (mut raw, _) = RawClient::connect(served.tcp, &read_token);
    match raw.lookup(5, LookupOperation::Accounts, &[3, 2, 4, 1]) {
        Got::Found {
            request_id: 5,
            operation: 1,
            ids_count: 4,
            entries,
        } => {
            let found: Vec<u128> = entries.iter().map(LookupEntry::id).collect();
            assert_eq!(found, [2, 1]);
        }
        other => panic!("{other:?}"),
    }
    // Every id of a full lookup, most of them missing.
    let many: Vec<u128> = (1..=LOOKUP_IDS_MAX as u128).collect();
    match raw.lookup(6, LookupOperation::Transfers, &many) {
        Got::Found {
            ids_count, entries, ..
        } => {
            assert_eq!(ids_count as usize, LOOKUP_IDS_MAX);
            let found: Vec<u128> = entries.iter().map(LookupEntry::id).collect();
            // 30 is the authorization order 20 made.
            assert_eq!(found, [10, 11, 12, 30]);
        }
        other => panic!("{other:?}"),
    }
    // The TCP server's counters are in the HTTP `/metrics` exposition.
    let metrics = served::http(served.http, "GET", "/metrics", &read_token, "")
        .expect("metrics")
        .body;
    let value = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"));
        line[name.len() + 1..].trim().parse().expect("a number")
    };
    assert!(value("surge_tcp_requests_total") >= 3, "{metrics}");
    assert!(value("surge_tcp_lookups_total") >= 6, "{metrics}");
    assert!(value("surge_tcp_connections_open") >= 2, "{metrics}");
    assert!(metrics.contains("# TYPE surge_tcp_requests_in_flight gauge"));
    drop((raw, payments, reader));
    assert!(served.terminate().success());
}

/// A lookup frame for the tests to spoil: the operation byte, the header's `status`.
fn spoiled(request_id: u64, change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = lookup_bytes(request_id, LookupOperation::Accounts, &[1]);
    change(&mut bytes);
    bytes[20..24].fill(0);
    let crc = crc32c::crc32c(&bytes);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn refused_lookups_get_their_code_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &[]);
    let (mut raw, welcome) =
        RawClient::connect(served.tcp, &served::initial_token(dir.path(), "read"));
    assert!(welcome.scopes.allows_lookups());
    let refused = |raw: &mut RawClient, bytes: &[u8], request_id: u64| {
        raw.send(bytes);
        match raw.next() {
            Got::LookupRejected {
                request_id: answered,
                code,
            } if answered == request_id => code,
            other => panic!("lookup {request_id}: {other:?}"),
        }
    };
    let unknown = spoiled(1, |bytes| bytes[24] = 5);
    assert_eq!(refused(&mut raw, &unknown, 1), ErrorCode::UnknownOperation);
    let too_many: Vec<u128> = (1..=LOOKUP_IDS_MAX as u128 + 1).collect();
    let bytes = lookup_bytes(2, LookupOperation::Accounts, &too_many);
    assert_eq!(refused(&mut raw, &bytes, 2), ErrorCode::TooManyIds);
    // Two ids announced, one sent.
    let short = spoiled(3, |bytes| bytes[28] = 2);
    assert_eq!(refused(&mut raw, &short, 3), ErrorCode::LookupBodyInvalid);
    let none = lookup_bytes(4, LookupOperation::Orders, &[]);
    assert_eq!(refused(&mut raw, &none, 4), ErrorCode::LookupBodyInvalid);
    let reserved = spoiled(5, |bytes| bytes[25] = 1);
    assert_eq!(
        refused(&mut raw, &reserved, 5),
        ErrorCode::RequestReservedNotZero
    );
    // The connection went on through all of it.
    raw.send_frame(Frame::Ping { request_id: 6 });
    assert_eq!(raw.next(), Got::Pong(6));
    assert!(matches!(
        raw.lookup(7, LookupOperation::Skus, &[1]),
        Got::Found { request_id: 7, .. }
    ));

    // A token without `read` may not look up.
    let payments = served::initial_token(dir.path(), "payments");
    let (mut writer, welcome) = RawClient::connect(served.tcp, &payments);
    assert!(!welcome.scopes.allows_lookups());
    let bytes = lookup_bytes(8, LookupOperation::Accounts, &[1]);
    assert_eq!(refused(&mut writer, &bytes, 8), ErrorCode::ScopeDenied);
    let dispatch = served::initial_token(dir.path(), "dispatch");
    let (mut logistics, _) = RawClient::connect(served.tcp, &dispatch);
    assert_eq!(refused(&mut logistics, &bytes, 8), ErrorCode::ScopeDenied);
    assert!(matches!(
        writer.call(9, Batch::CreateAccounts(&[account(1)])),
        Got::Codes { request_id: 9, .. }
    ));
    drop((raw, writer, logistics));
    assert!(served.terminate().success());
}

fn push(bytes: &mut Vec<u8>, request_id: u64, batch: Batch<'_>) {
    surge_protocol::encode_batch(bytes, request_id, batch);
}

#[test]
fn lookups_pipeline_with_command_batches_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = payments_and_read_token(&data);
    let served = serve(&data, &[]);
    let (mut raw, _) = RawClient::connect(served.tcp, &token);

    // One write: commands and lookups of what they create, interleaved, and a ping.
    let mut bytes = Vec::new();
    push(
        &mut bytes,
        1,
        Batch::CreateAccounts(&[account(1), account(2)]),
    );
    bytes.extend(lookup_bytes(2, LookupOperation::Accounts, &[1, 2]));
    push(
        &mut bytes,
        3,
        Batch::CreateTransfers(&[transfer(10, 1, 2, 5)]),
    );
    bytes.extend(lookup_bytes(4, LookupOperation::Transfers, &[10]));
    push(&mut bytes, 5, Batch::CreateSkus(&[sku(7, 3)]));
    bytes.extend(lookup_bytes(6, LookupOperation::Skus, &[7]));
    Frame::Ping { request_id: 7 }.encode(&mut bytes);
    raw.send(&bytes);
    let mut answers = HashMap::new();
    for _ in 0..7 {
        let got = raw.next();
        let request_id = got.request_id().unwrap_or_else(|| panic!("{got:?}"));
        assert!(answers.insert(request_id, got).is_none(), "answered twice");
    }
    for request_id in [1, 3, 5] {
        match &answers[&request_id] {
            Got::Codes { codes, .. } => assert!(codes.iter().all(|&c| c == ResultCode::Ok)),
            other => panic!("request {request_id}: {other:?}"),
        }
    }
    // A lookup pipelined behind the command that creates its record may run before that
    // command is applied: found or not, it is a well-formed answer for its ids.
    for (request_id, operation, ids_count) in [(2, 1, 2), (4, 2, 1), (6, 3, 1)] {
        match &answers[&request_id] {
            Got::Found {
                operation: answered,
                ids_count: asked,
                entries,
                ..
            } => {
                assert_eq!((*answered, *asked), (operation, ids_count));
                assert!(entries.len() <= ids_count as usize);
            }
            other => panic!("lookup {request_id}: {other:?}"),
        }
    }
    assert_eq!(answers[&7], Got::Pong(7));

    // Rounds of a payment and a lookup of the previous round's payment, pipelined: the
    // lookup sees every command whose reply arrived before it was sent.
    for round in 0..50u64 {
        let payment = 100 + u128::from(round);
        let mut bytes = Vec::new();
        push(
            &mut bytes,
            1_000 + round * 2,
            Batch::CreateTransfers(&[transfer(payment, 1, 2, 1)]),
        );
        bytes.extend(lookup_bytes(
            1_001 + round * 2,
            LookupOperation::Transfers,
            &[payment - 1, 10],
        ));
        raw.send(&bytes);
        for _ in 0..2 {
            match raw.next() {
                Got::Codes { codes, .. } => assert_eq!(codes, [ResultCode::Ok]),
                Got::Found { entries, .. } => {
                    let found: Vec<u128> = entries.iter().map(LookupEntry::id).collect();
                    let expected = if round == 0 {
                        vec![10]
                    } else {
                        vec![payment - 1, 10]
                    };
                    assert_eq!(found, expected, "round {round}");
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
    match raw.lookup(9, LookupOperation::Accounts, &[2]) {
        Got::Found { entries, .. } => match entries[..] {
            [LookupEntry::Account(merchant)] => assert_eq!(merchant.credits_posted, 5 + 50),
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    drop(raw);
    assert!(served.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_scope_token_can_look_up_but_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &[]);
    let read_token = served::initial_token(dir.path(), "read");
    let reader = client(served.tcp, &read_token).await;
    let refused = reader.create_accounts(&[account(1)]).await;
    assert_eq!(refused, Err(ClientError::Rejected(ErrorCode::ScopeDenied)));
    let refused = reader.create_transfers(&[transfer(10, 1, 2, 1)]).await;
    assert_eq!(refused, Err(ClientError::Rejected(ErrorCode::ScopeDenied)));
    assert_eq!(
        reader.lookup_accounts(&[AccountId(1)]).await.unwrap(),
        [None],
        "nothing was written"
    );
    let payments = client(served.tcp, &served::initial_token(dir.path(), "payments")).await;
    assert_eq!(
        payments.create_accounts(&[account(1)]).await.unwrap(),
        [ResultCode::Ok]
    );
    let found = reader.lookup_accounts(&[AccountId(1)]).await.unwrap();
    assert_eq!(found[0].map(|account| account.id), Some(AccountId(1)));
    let refused = payments.lookup_accounts(&[AccountId(1)]).await;
    assert_eq!(refused, Err(ClientError::Rejected(ErrorCode::ScopeDenied)));
    // Over raw frames too: the write is refused and the connection goes on.
    let (mut raw, _) = RawClient::connect(served.tcp, &read_token);
    assert_eq!(
        raw.call(1, Batch::CreateAccounts(&[account(2)])),
        Got::Rejected {
            request_id: 1,
            code: ErrorCode::ScopeDenied
        }
    );
    assert!(matches!(
        raw.lookup(2, LookupOperation::Accounts, &[1, 2]),
        Got::Found { ref entries, .. } if entries.len() == 1
    ));
    drop((raw, payments, reader));
    assert!(served.terminate().success());
}
