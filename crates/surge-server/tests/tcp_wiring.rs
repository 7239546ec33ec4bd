//! The TCP protocol served by `surge serve`: a client with a first-start token pays over
//! TCP, and HTTP sees the payment; a wrong token is refused at the handshake.

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
