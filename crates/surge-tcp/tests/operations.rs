//! Every client operation (1..=11, 19) over a real socket against a real engine: the happy
//! path of a flash sale, from accounts to the dispatch acknowledgement, pipelined.

mod common;

use common::{account, action, all_ok, dispatch_ack, order, reservation, reservation_key};
use common::{sku, transfer, Got, TestServer, ALL_TOKEN, DISPATCH_TOKEN, PAYMENTS_TOKEN};
use surge_core::{AccountId, Batch, CompactOrder, OrderId, OrderLookup, OrderStatus, ResultCode};

const BANK: u128 = 1;
const BUYER: u128 = 2;
const MERCHANT: u128 = 3;
const SKU: u64 = 77;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_succeeds_over_tcp() {
    let mut server = TestServer::start_default().await;
    let mut client = server.client(PAYMENTS_TOKEN).await;
    let accounts = [
        account(BANK, false),
        account(BUYER, true),
        account(MERCHANT, false),
    ];
    assert!(all_ok(
        &client.call(1, Batch::CreateAccounts(&accounts)).await
    ));
    let funding = [transfer(100, BANK, BUYER, 1_000)];
    assert!(all_ok(
        &client.call(2, Batch::CreateTransfers(&funding)).await
    ));
    assert!(all_ok(
        &client.call(3, Batch::CreateSkus(&[sku(SKU, 10)])).await
    ));

    let reservations = [
        reservation(500, BUYER, SKU, 1),
        reservation(501, BUYER, SKU, 1),
    ];
    assert!(all_ok(&client.call(4, Batch::Reserve(&reservations)).await));
    let confirm = [reservation_key(500, SKU)];
    assert!(all_ok(
        &client.call(5, Batch::ConfirmReservations(&confirm)).await
    ));
    let release = [reservation_key(501, SKU)];
    assert!(all_ok(
        &client.call(6, Batch::ReleaseReservations(&release)).await
    ));

    let orders = [
        order(600, BUYER, MERCHANT, 700, 100, SKU),
        order(601, BUYER, MERCHANT, 701, 100, SKU),
        order(602, BUYER, MERCHANT, 702, 100, SKU),
    ];
    assert!(all_ok(&client.call(7, Batch::PlaceOrders(&orders)).await));
    // One-line orders in their compact form: the same command, so a retry in either form
    // of an order placed in the other answers `exists`.
    let compact = [CompactOrder::of(&order(603, BUYER, MERCHANT, 703, 100, SKU)).unwrap()];
    let compact_call = client.call(12, Batch::PlaceOrdersCompact(&compact)).await;
    assert!(all_ok(&compact_call));
    let again = [CompactOrder::of(&orders[0]).unwrap()];
    let retries = [
        client.call(13, Batch::PlaceOrdersCompact(&again)).await,
        client
            .call(14, Batch::PlaceOrders(&[compact[0].order()]))
            .await,
    ];
    for codes in retries {
        assert_eq!(codes, [ResultCode::Exists]);
    }
    let pay = [action(600, 710), action(601, 711)];
    assert!(all_ok(&client.call(8, Batch::PayOrders(&pay)).await));
    let cancel = [action(602, 712)];
    assert!(all_ok(&client.call(9, Batch::CancelOrders(&cancel)).await));
    let refund = [action(601, 713)];
    assert!(all_ok(&client.call(10, Batch::RefundOrders(&refund)).await));

    let mut logistics = server.client(DISPATCH_TOKEN).await;
    let acks = [dispatch_ack(600)];
    assert!(all_ok(&logistics.call(11, Batch::AckDispatch(&acks)).await));

    let engine = &server.engine;
    let Some(OrderLookup::Placed(paid)) = engine.order(OrderId(600)) else {
        panic!("order 600 was placed");
    };
    assert_eq!(paid.order.status, OrderStatus::Dispatched as u16);
    let merchant = engine.account(AccountId(MERCHANT)).expect("merchant");
    // Paid twice, refunded once (the refund is a transfer back).
    assert_eq!(merchant.credits_posted, 200);
    assert_eq!(merchant.debits_posted, 100);
    assert_eq!(server.metric("surge_tcp_replies_ok_total"), 14);
    server.stop().await;
    // Admissions are released once their replies are written, at the latest at the end.
    assert_eq!(server.metric("surge_tcp_requests_in_flight"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_and_matched_by_id() {
    let mut server = TestServer::start_default().await;
    let mut client = server.client(ALL_TOKEN).await;
    let accounts = [account(BANK, false), account(BUYER, false)];
    assert!(all_ok(
        &client.call(1, Batch::CreateAccounts(&accounts)).await
    ));
    // Forty requests written back to back before reading any reply.
    let transfers: Vec<_> = (0..40u128)
        .map(|n| transfer(1_000 + n, BANK, BUYER, 1))
        .collect();
    for (index, one) in transfers.iter().enumerate() {
        client
            .send_batch(
                100 + index as u64,
                Batch::CreateTransfers(std::slice::from_ref(one)),
            )
            .await;
    }
    let mut replied = Vec::new();
    for _ in 0..transfers.len() {
        match client.next().await {
            Got::Ok { request_id, codes } => {
                assert_eq!(codes, [ResultCode::Ok]);
                replied.push(request_id);
            }
            other => panic!("{other:?}"),
        }
    }
    replied.sort_unstable();
    assert_eq!(replied, (100..140).collect::<Vec<u64>>());
    // The same transfers again: ids are idempotency keys.
    let codes = client.call(200, Batch::CreateTransfers(&transfers)).await;
    assert!(
        codes.iter().all(|&code| code == ResultCode::Exists),
        "{codes:?}"
    );
    let credited = server.engine.account(AccountId(BUYER)).expect("buyer");
    assert_eq!(credited.credits_posted, 40);
    server.stop().await;
}
