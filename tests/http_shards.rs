//! The real `surge serve` binary with two shards, over HTTP: an order whose SKU lines live
//! on both shards is answered with both shards' units in place, paid, refused when a line
//! elsewhere is sold out (the other line's units come back), and the same after a restart.

use std::net::SocketAddr;

use serde_json::Value;
use surge_core::shard_of;

mod served;

use served::{initial_token, serve};

/// One request on a new connection: status and body as JSON.
fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let answer = served::http(addr, method, path, token, body).expect("an answer");
    let json = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, json)
}

/// The first SKU id from 100 living on `shard` of two.
fn sku_on(shard: u32) -> u64 {
    (100u64..)
        .find(|id| shard_of(u128::from(*id), 2) == shard)
        .expect("a SKU id on each shard")
}

/// (available, reserved, sold) of a SKU.
fn units(addr: SocketAddr, token: &str, sku: u64) -> (u64, u64, u64) {
    let (status, json) = call(addr, "GET", &format!("/v1/skus/{sku}"), token, "");
    assert_eq!(status, 200, "{json}");
    let field = |name: &str| {
        json[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {json}"))
    };
    (
        field("units_available"),
        field("units_reserved"),
        field("units_sold"),
    )
}

fn order(id: u64, transfer_id: u64, lines: &[(u64, u32)]) -> String {
    let lines: Vec<String> = lines
        .iter()
        .map(|(sku, quantity)| format!(r#"{{"sku_id":{sku},"quantity":{quantity}}}"#))
        .collect();
    format!(
        r#"{{"id":"{id}","buyer_id":"2","merchant_id":"3","transfer_id":"{transfer_id}",
            "amount":100,"timeout_ns":60000000000,"ledger":1,"lines":[{}]}}"#,
        lines.join(",")
    )
}

#[test]
fn an_order_with_lines_on_both_shards_is_placed_paid_and_refused_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &["--shards", "2"]);
    let payments = initial_token(dir.path(), "payments");
    let read = initial_token(dir.path(), "read");
    let addr = served.http;
    let accounts = r#"[{"id":"1","ledger":1,"code":1},
        {"id":"2","ledger":1,"code":1,"debits_must_not_exceed_credits":true},
        {"id":"3","ledger":1,"code":1}]"#;
    let (status, json) = call(addr, "POST", "/v1/accounts", &payments, accounts);
    assert_eq!(status, 200, "{json}");
    let funding = r#"{"id":"10","debit_account_id":"1","credit_account_id":"2",
        "amount":1000,"ledger":1,"code":1}"#;
    assert_eq!(
        call(addr, "POST", "/v1/transfers", &payments, funding).0,
        201
    );
    let (near, far) = (sku_on(0), sku_on(1));
    let skus = format!(r#"[{{"id":{near},"units_stocked":10}},{{"id":{far},"units_stocked":3}}]"#);
    let (status, json) = call(addr, "POST", "/v1/skus", &payments, &skus);
    assert_eq!(status, 200, "{json}");

    let placed = order(500, 501, &[(near, 2), (far, 1)]);
    let (status, json) = call(addr, "POST", "/v1/orders", &payments, &placed);
    assert_eq!((status, json["code"].as_str()), (201, Some("ok")), "{json}");
    // Answered with both shards' units held.
    assert_eq!(units(addr, &read, near), (8, 2, 0));
    assert_eq!(units(addr, &read, far), (2, 1, 0));
    let (status, json) = call(
        addr,
        "POST",
        "/v1/orders/500/pay",
        &payments,
        r#"{"transfer_id":"502"}"#,
    );
    assert_eq!((status, json["code"].as_str()), (201, Some("ok")), "{json}");
    assert_eq!(units(addr, &read, near), (8, 0, 2));
    assert_eq!(units(addr, &read, far), (2, 0, 1));
    let (_, json) = call(addr, "GET", "/v1/orders/500", &read, "");
    assert_eq!(json["status"], "paid", "{json}");

    // A line sold out on the other shard: refused, the first line's units are back.
    let too_many = order(510, 511, &[(near, 1), (far, 5)]);
    let (status, json) = call(addr, "POST", "/v1/orders", &payments, &too_many);
    assert_eq!(json["code"], "sold_out", "{status} {json}");
    assert_eq!(units(addr, &read, near), (8, 0, 2));
    assert_eq!(units(addr, &read, far), (2, 0, 1));

    assert!(served.terminate().success());
    let served = serve(dir.path(), &["--shards", "2"]);
    assert_eq!(units(served.http, &read, near), (8, 0, 2));
    assert_eq!(units(served.http, &read, far), (2, 0, 1));
    let (status, json) = call(served.http, "POST", "/v1/orders", &payments, &placed);
    assert_eq!(
        (status, json["code"].as_str()),
        (200, Some("exists")),
        "{json}"
    );
    assert!(served.terminate().success());
}
