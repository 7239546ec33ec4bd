//! The TCP protocol served by `surge serve`: a client with a first-start token pays over
//! TCP, and HTTP sees the payment; a wrong token is refused at the handshake; with two
//! shards, a pay that meets its order's authorization still travelling is retried by the
//! client until it goes through.

mod common;

use common::TestServer;
use surge_client::{Client, ClientConfig};
use surge_core::{Account, AccountId, ResultCode, Transfer, TransferId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_payments_show_up_over_http() {
    let server = TestServer::start().await;
    let addr = server.server.tcp_addr().to_string();
    let client = Client::connect(&addr, ClientConfig::new(server.payments.clone()))
        .await
        .unwrap();
    let accounts = [1u128, 2].map(|id| Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        ..Account::default()
    });
    assert_eq!(
        client.create_accounts(&accounts).await.unwrap(),
        [ResultCode::Ok; 2]
    );
    let payment = Transfer {
        id: TransferId(77),
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        amount: 5,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    };
    assert_eq!(
        client.create_transfers(&[payment]).await.unwrap(),
        [ResultCode::Ok]
    );
    let lookup = server.get("/v1/transfers/77").await.json();
    assert_eq!(lookup["outcome"], "committed");
    let refused = Client::connect(&addr, ClientConfig::new("surge_wrong")).await;
    assert!(refused.is_err());
    server.server.stop().await.unwrap();
}

/// The `nth` id that `shard` of 2 owns.
fn on_shard(shard: u32, nth: usize) -> u128 {
    (1..)
        .filter(|id| surge_core::shard_of(*id, 2) == shard)
        .nth(nth)
        .expect("ids exist on every shard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_sent_while_its_order_is_authorized_on_another_shard_is_retried_by_the_client() {
    use surge_core::{account_flags, Order, OrderAction, OrderId, OrderLine, Sku, SkuId};
    const ORDERS: u128 = 12;
    let server = TestServer::start_with(|config| config.shards = Some(2)).await;
    let addr = server.server.tcp_addr().to_string();
    let client = Client::connect(&addr, ClientConfig::new(server.payments.clone()))
        .await
        .unwrap();
    // The SKU and the merchant on shard 0; the bank and the buyers on shard 1.
    let sku = (1..)
        .find(|id: &u64| surge_core::shard_of(u128::from(*id), 2) == 0)
        .unwrap();
    let merchant = on_shard(0, 0);
    let bank = on_shard(1, 0);
    let buyers: Vec<u128> = (1..=ORDERS as usize).map(|nth| on_shard(1, nth)).collect();
    let account = |id: u128, flags: u16| Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        flags,
        ..Account::default()
    };
    let mut accounts = vec![account(merchant, 0), account(bank, 0)];
    let wallet = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    accounts.extend(buyers.iter().map(|&id| account(id, wallet)));
    let created = client.create_accounts(&accounts).await.unwrap();
    assert!(created.iter().all(|code| *code == ResultCode::Ok));
    let funding: Vec<Transfer> = buyers
        .iter()
        .map(|&buyer| Transfer {
            id: TransferId(10_000 + buyer),
            debit_account_id: AccountId(bank),
            credit_account_id: AccountId(buyer),
            amount: 1_000,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        })
        .collect();
    let funded = client.create_transfers(&funding).await.unwrap();
    assert!(funded.iter().all(|code| *code == ResultCode::Ok));
    let stocked = Sku {
        id: SkuId(sku),
        units_stocked: 100,
        ..Sku::default()
    };
    assert_eq!(
        client.create_skus(&[stocked]).await.unwrap(),
        [ResultCode::Ok]
    );
    for (index, &buyer) in buyers.iter().enumerate() {
        let id = 500 + index as u128;
        let mut lines = [OrderLine::default(); surge_core::records::ORDER_LINES_MAX];
        lines[0] = OrderLine {
            sku_id: SkuId(sku),
            quantity: 1,
            reserved: 0,
        };
        let order = Order {
            id: OrderId(id),
            buyer_id: AccountId(buyer),
            merchant_id: AccountId(merchant),
            transfer_id: TransferId(id + 1_000),
            amount: 10,
            timeout_ns: 60_000_000_000,
            ledger: 1,
            line_count: 1,
            lines,
            ..Order::default()
        };
        let placing = {
            let client = client.clone();
            tokio::spawn(async move { client.place_orders(&[order]).await })
        };
        // Pay as soon as the order's shard holds it, most likely while its authorization
        // is still on its way (answered `order_in_flight`, which the client retries).
        while server.get(&format!("/v1/orders/{id}")).await.status != 200 {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
        let pay = OrderAction {
            order_id: OrderId(id),
            transfer_id: TransferId(id + 2_000),
            ..OrderAction::default()
        };
        assert_eq!(client.pay_orders(&[pay]).await.unwrap(), [ResultCode::Ok]);
        assert_eq!(placing.await.unwrap().unwrap(), [ResultCode::Ok]);
        let order = server.get(&format!("/v1/orders/{id}")).await.json();
        assert_eq!(order["status"], "paid", "{order}");
    }
    server.server.stop().await.unwrap();
}
