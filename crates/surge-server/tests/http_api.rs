//! Every HTTP endpoint's happy path, over real sockets against an in-process server.

mod common;

use std::time::{Duration, Instant};

use common::{request, TestServer};
use serde_json::Value;

const WALLET: &str = "1";
const MERCHANT: &str = "2";
const FUNDING: &str = "3";

async fn setup_accounts(server: &TestServer) {
    let reply = server
        .post(
            "/v1/accounts",
            r#"[{"id":"1","ledger":1,"code":1,"debits_must_not_exceed_credits":true},
                {"id":"2","ledger":1,"code":1},
                {"id":"3","ledger":1,"code":1}]"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    for (index, result) in reply.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(result["index"], index);
        assert_eq!(result["code"], "ok", "{result}");
        assert_eq!(result["code_number"], 0);
    }
    let reply = transfer(server, "100", FUNDING, WALLET, 1_000, "").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn transfer(
    server: &TestServer,
    id: &str,
    debit: &str,
    credit: &str,
    amount: u64,
    extra: &str,
) -> common::Reply {
    let body = format!(
        r#"{{"id":"{id}","debit_account_id":"{debit}","credit_account_id":"{credit}",
            "amount":{amount},"ledger":1,"code":1{extra}}}"#
    );
    server.post("/v1/transfers", &body).await
}

fn balance(account: &Value, field: &str) -> u64 {
    account[field].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_single_phase_transfers() {
    let server = TestServer::start().await;
    setup_accounts(&server).await;

    let single = server
        .post("/v1/accounts", r#"{"id":"4","ledger":1,"code":7}"#)
        .await;
    assert_eq!(single.status, 201, "{}", single.body);
    assert_eq!(single.json()["id"], "4");
    let retry = server
        .post("/v1/accounts", r#"{"id":"4","ledger":1,"code":7}"#)
        .await;
    assert_eq!(
        (retry.status, retry.json()["code"].clone()),
        (200, "exists".into())
    );
    let changed = server
        .post("/v1/accounts", r#"{"id":"4","ledger":1,"code":8}"#)
        .await;
    assert_eq!(changed.status, 409);
    assert_eq!(
        changed.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(changed.code(), "exists_with_different_fields");
    assert_eq!(changed.json()["code_number"], 9);

    let paid = transfer(&server, "200", WALLET, MERCHANT, 300, "").await;
    assert_eq!(
        (paid.status, paid.json()["code"].clone()),
        (201, "ok".into())
    );
    let again = transfer(&server, "200", WALLET, MERCHANT, 300, "").await;
    assert_eq!((again.status, again.code()), (200, "exists".to_string()));
    let broke = transfer(&server, "201", WALLET, MERCHANT, 5_000, "").await;
    assert_eq!(
        (broke.status, broke.code()),
        (409, "exceeds_credits".to_string())
    );
    assert_eq!(broke.json()["id"], "201");
    let zero = transfer(&server, "202", WALLET, MERCHANT, 0, "").await;
    assert_eq!(
        (zero.status, zero.code()),
        (422, "amount_must_not_be_zero".to_string())
    );

    let wallet = server.get("/v1/accounts/1").await;
    assert_eq!(wallet.status, 200);
    let wallet = wallet.json();
    assert_eq!(balance(&wallet, "credits_posted"), 1_000);
    assert_eq!(balance(&wallet, "debits_posted"), 300);

    let lookup = server.get("/v1/transfers/200").await.json();
    assert_eq!(lookup["outcome"], "committed");
    assert_eq!(lookup["transfer"]["amount"], 300);
    let failed = server.get("/v1/transfers/201").await.json();
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["code"], "exceeds_credits");
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_transfers_post_and_void() {
    let server = TestServer::start().await;
    setup_accounts(&server).await;
    let hold = transfer(&server, "300", WALLET, MERCHANT, 400, r#","pending":true"#).await;
    assert_eq!(hold.status, 201, "{}", hold.body);
    let wallet = server.get("/v1/accounts/1").await.json();
    assert_eq!(balance(&wallet, "debits_pending"), 400);
    let looked = server.get("/v1/transfers/300").await.json();
    assert_eq!(looked["pending_status"], "pending");

    let post = server
        .post("/v1/transfers/300/post", r#"{"id":"301","amount":150}"#)
        .await;
    assert_eq!(post.status, 201, "{}", post.body);
    assert_eq!(
        server.get("/v1/transfers/300").await.json()["pending_status"],
        "posted"
    );
    let wallet = server.get("/v1/accounts/1").await.json();
    assert_eq!(balance(&wallet, "debits_pending"), 0);
    assert_eq!(balance(&wallet, "debits_posted"), 150);

    let hold = transfer(&server, "310", WALLET, MERCHANT, 200, r#","pending":true"#).await;
    assert_eq!(hold.status, 201);
    let void = server
        .post("/v1/transfers/310/void", r#"{"id":"311"}"#)
        .await;
    assert_eq!(void.status, 201, "{}", void.body);
    assert_eq!(
        server.get("/v1/transfers/310").await.json()["pending_status"],
        "voided"
    );
    let twice = server
        .post("/v1/transfers/310/void", r#"{"id":"312"}"#)
        .await;
    assert_eq!(twice.code(), "pending_transfer_already_voided");
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_pages_with_running_balances() {
    let server = TestServer::start().await;
    setup_accounts(&server).await;
    for (index, amount) in [10u64, 20, 30].iter().enumerate() {
        let reply = transfer(
            &server,
            &format!("{}", 400 + index),
            WALLET,
            MERCHANT,
            *amount,
            "",
        )
        .await;
        assert_eq!(reply.status, 201);
    }
    let mut cursor = String::new();
    let mut lines = Vec::new();
    loop {
        let page = server
            .get(&format!("/v1/accounts/1/statement?limit=2&cursor={cursor}"))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        lines.extend(page["lines"].as_array().unwrap().clone());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    // The funding credit, then three debits, in log order, each with the balance after it.
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["side"], "credit");
    let net: Vec<&str> = lines
        .iter()
        .map(|line| line["balances_after"]["net_posted"].as_str().unwrap())
        .collect();
    assert_eq!(net, ["1000", "990", "970", "940"]);
    let from = lines[2]["timestamp"].as_u64().unwrap();
    let ranged = server
        .get(&format!("/v1/accounts/1/statement?from={from}"))
        .await
        .json();
    assert_eq!(ranged["lines"].as_array().unwrap().len(), 2);
    server.server.stop().await.unwrap();
}

fn order_body(id: &str, transfer_id: &str, sku: u64, quantity: u32, amount: u64) -> String {
    format!(
        r#"{{"id":"{id}","buyer_id":"{WALLET}","merchant_id":"{MERCHANT}",
            "transfer_id":"{transfer_id}","amount":{amount},"timeout_ns":60000000000,
            "ledger":1,"lines":[{{"sku_id":{sku},"quantity":{quantity}}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skus_orders_and_the_dispatch_feed() {
    let server = TestServer::start().await;
    setup_accounts(&server).await;
    let sku = server
        .post(
            "/v1/skus",
            r#"{"id":77,"units_stocked":10,"limit_per_buyer":5}"#,
        )
        .await;
    assert_eq!(sku.status, 201, "{}", sku.body);
    let placed = server
        .post("/v1/orders", &order_body("500", "501", 77, 2, 100))
        .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let stock = server.get("/v1/skus/77").await.json();
    assert_eq!(
        (
            stock["units_available"].as_u64(),
            stock["units_reserved"].as_u64()
        ),
        (Some(8), Some(2))
    );

    // A long poll started before the payment is woken by it.
    let addr = server.addr();
    let dispatch_token = server.dispatch.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        request(
            addr,
            "GET",
            "/v1/dispatch?wait_ms=5000",
            Some(&dispatch_token),
            &[],
            b"",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let paid = server
        .post("/v1/orders/500/pay", r#"{"transfer_id":"502"}"#)
        .await;
    assert_eq!(paid.status, 201, "{}", paid.body);
    let feed = poll.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "woken by the payment"
    );
    let feed = feed.json();
    let requests = feed["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{feed}");
    assert_eq!(requests[0]["order_id"], "500");
    let order = server.get("/v1/orders/500").await.json();
    assert_eq!(
        (order["outcome"].as_str(), order["status"].as_str()),
        (Some("placed"), Some("paid"))
    );

    let ack = request(
        addr,
        "POST",
        "/v1/dispatch/ack",
        Some(&server.dispatch),
        &[],
        br#"{"dispatch_id":"500"}"#,
    )
    .await;
    assert_eq!(ack.status, 201, "{}", ack.body);
    let cursor = feed["cursor"].as_str().unwrap();
    let after = request(
        addr,
        "GET",
        &format!("/v1/dispatch?cursor={cursor}"),
        Some(&server.dispatch),
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(after["requests"].as_array().unwrap().len(), 0);
    assert_eq!(
        server.get("/v1/orders/500").await.json()["status"],
        "dispatched"
    );

    let refund = server
        .post(
            "/v1/orders/500/refund",
            r#"{"transfer_id":"503","restock":true}"#,
        )
        .await;
    assert_eq!(refund.status, 201, "{}", refund.body);
    assert_eq!(
        server.get("/v1/orders/500").await.json()["status"],
        "refunded"
    );

    let placed = server
        .post("/v1/orders", &order_body("510", "511", 77, 1, 50))
        .await;
    assert_eq!(placed.status, 201);
    let cancel = server
        .post("/v1/orders/510/cancel", r#"{"transfer_id":"512"}"#)
        .await;
    assert_eq!(cancel.status, 201, "{}", cancel.body);
    assert_eq!(
        server.get("/v1/orders/510").await.json()["status"],
        "cancelled"
    );
    let stock = server.get("/v1/skus/77").await.json();
    assert_eq!(stock["units_available"], 10, "{stock}");
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_reserve_confirm_release() {
    let server = TestServer::start().await;
    setup_accounts(&server).await;
    assert_eq!(
        server
            .post("/v1/skus", r#"{"id":"9","units_stocked":3}"#)
            .await
            .status,
        201
    );
    let reserve = server
        .post(
            "/v1/reservations",
            r#"[{"order_id":"600","buyer_id":"1","sku_id":9,"quantity":1,"timeout_ns":900000000},
                {"order_id":"601","buyer_id":"1","sku_id":9,"quantity":1,"timeout_ns":900000000},
                {"order_id":"602","buyer_id":"1","sku_id":9,"quantity":5,"timeout_ns":900000000}]"#,
        )
        .await;
    assert_eq!(reserve.status, 200, "{}", reserve.body);
    let codes: Vec<String> = reserve.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, ["ok", "ok", "sold_out"]);
    assert_eq!(reserve.json()["results"][0]["id"], "600/9");
    let confirm = server
        .post(
            "/v1/reservations/confirm",
            r#"{"order_id":"600","sku_id":9}"#,
        )
        .await;
    assert_eq!(confirm.status, 201, "{}", confirm.body);
    let release = server
        .post(
            "/v1/reservations/release",
            r#"{"order_id":"601","sku_id":9}"#,
        )
        .await;
    assert_eq!(release.status, 201, "{}", release.body);
    let stock = server.get("/v1/skus/9").await.json();
    assert_eq!(
        (
            stock["units_sold"].as_u64(),
            stock["units_available"].as_u64()
        ),
        (Some(1), Some(2))
    );
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_routes() {
    let server = TestServer::start().await;
    let health = request(server.addr(), "GET", "/healthz", None, &[], b"").await;
    assert_eq!(health.status, 200);
    let ready = request(server.addr(), "GET", "/readyz", None, &[], b"").await;
    assert_eq!(ready.status, 200);
    let openapi = server.get("/openapi.json").await;
    assert_eq!(openapi.status, 200);
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
    )
    .unwrap();
    assert_eq!(openapi.body, docs, "/openapi.json is docs/openapi.json");
    setup_accounts(&server).await;
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    for needle in [
        "surge_http_requests_total{route=\"/v1/accounts\",method=\"POST\",status=\"200\"} 1",
        "surge_http_request_duration_seconds_bucket{route=\"/v1/transfers\"",
        "surge_engine_queue_depth{shard=\"0\"}",
        "surge_engine_syncs_total{shard=\"0\"}",
        "surge_engine_commands_per_sync{shard=\"0\"}",
        "surge_engine_history_memtables_frozen{shard=\"0\"} 0",
        "surge_engine_history_runs{shard=\"0\"}",
        "surge_http_rejections_total{reason=\"in_flight_limit\"} 0",
    ] {
        assert!(
            metrics.body.contains(needle),
            "no {needle} in\n{}",
            metrics.body
        );
    }
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_across_two_shards() {
    let server = TestServer::start_with(|config| config.shards = Some(2)).await;
    let shard = |id: u128| surge_core::shard_of(id, 2);
    assert!(
        (2..=6).any(|id| shard(id) != shard(1)),
        "some payments cross shards"
    );
    let accounts: Vec<String> = (1..=6)
        .map(|id| format!(r#"{{"id":"{id}","ledger":1,"code":1}}"#))
        .collect();
    let created = server
        .post("/v1/accounts", &format!("[{}]", accounts.join(",")))
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let mut transfers = Vec::new();
    for debit in 1..=6u64 {
        for credit in 1..=6u64 {
            if debit != credit {
                let id = 1_000 + debit * 10 + credit;
                transfers.push(format!(
                    r#"{{"id":"{id}","debit_account_id":"{debit}","credit_account_id":"{credit}",
                        "amount":{debit},"ledger":1,"code":1}}"#
                ));
            }
        }
    }
    let reply = server
        .post("/v1/transfers", &format!("[{}]", transfers.join(",")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    for result in reply.json()["results"].as_array().unwrap() {
        assert_eq!(result["code"], "ok", "{result}");
    }
    // Answered only once both legs landed: every account shows its credits already.
    for id in 1..=6u64 {
        let account = server.get(&format!("/v1/accounts/{id}")).await.json();
        let credited: u64 = (1..=6).filter(|d| *d != id).sum();
        assert_eq!(account["credits_posted"], credited, "account {id}");
        assert_eq!(account["debits_posted"], id * 5, "account {id}");
    }
    server.server.stop().await.unwrap();
}

/// The value of a `/metrics` series for shard 0.
fn metric(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{shard=\"0\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Single-command requests sent at once share engine batches, and each still gets its own
/// code: funded payments succeed, payments to a missing account fail alone, and a lone
/// linked transfer (an open chain) is never merged with another request's transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_requests_share_batches_and_keep_their_codes() {
    let server = std::sync::Arc::new(TestServer::start().await);
    setup_accounts(&server).await;
    let before = server.get("/metrics").await.body;
    let (batches_before, commands_before) = (
        metric(&before, "surge_engine_batches_total"),
        metric(&before, "surge_engine_commands_total"),
    );
    const REQUESTS: u64 = 240;
    let mut tasks = Vec::new();
    for index in 0..REQUESTS {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let id = (10_000 + index).to_string();
            let (credit, extra) = match index % 3 {
                0 => ("99", ""),
                1 if index == 1 => (MERCHANT, r#","linked":true"#),
                _ => (MERCHANT, ""),
            };
            let reply = transfer(&server, &id, FUNDING, credit, 1, extra).await;
            (index, reply)
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (index, reply) = task.await.unwrap();
        let code = reply.json()["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let expected = match index % 3 {
            0 => "credit_account_not_found",
            1 if index == 1 => "linked_event_chain_open",
            _ => "ok",
        };
        assert_eq!(code, expected, "request {index}: {}", reply.body);
        if expected == "ok" {
            ok += 1;
        }
    }
    let merchant = server.get("/v1/accounts/2").await.json();
    assert_eq!(balance(&merchant, "credits_posted"), ok);
    let after = server.get("/metrics").await.body;
    let batches = metric(&after, "surge_engine_batches_total") - batches_before;
    let commands = metric(&after, "surge_engine_commands_total") - commands_before;
    assert!(
        commands >= REQUESTS as f64,
        "{commands} commands for {REQUESTS} requests"
    );
    assert!(
        batches < REQUESTS as f64,
        "{batches} engine batches for {REQUESTS} concurrent requests: nothing was coalesced"
    );
}

/// The `nth` id (from 1) that `shard` of 2 owns.
fn on_shard(shard: u32, nth: usize) -> u128 {
    (1..)
        .filter(|id| surge_core::shard_of(*id, 2) == shard)
        .nth(nth)
        .expect("ids exist on every shard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_spanning_shards_are_answered_once_settled_on_every_shard() {
    let server = TestServer::start_with(|config| config.shards = Some(2)).await;
    // The SKU and the merchant on shard 0, the buyer (and its bank) on shard 1.
    let sku = (1..)
        .find(|id: &u64| surge_core::shard_of(u128::from(*id), 2) == 0)
        .unwrap();
    let (merchant, buyer, bank) = (on_shard(0, 0), on_shard(1, 0), on_shard(1, 1));
    let accounts = format!(
        r#"[{{"id":"{buyer}","ledger":1,"code":1,"debits_must_not_exceed_credits":true}},
            {{"id":"{merchant}","ledger":1,"code":1}},{{"id":"{bank}","ledger":1,"code":1}}]"#
    );
    assert_eq!(server.post("/v1/accounts", &accounts).await.status, 200);
    let funded = transfer(
        &server,
        "100",
        &bank.to_string(),
        &buyer.to_string(),
        1_000,
        "",
    )
    .await;
    assert_eq!(funded.status, 201, "{}", funded.body);
    let stocked = format!(r#"{{"id":{sku},"units_stocked":10,"limit_per_buyer":0}}"#);
    assert_eq!(server.post("/v1/skus", &stocked).await.status, 201);
    let order = |id: &str, authorization: &str, amount: u64| {
        format!(
            r#"{{"id":"{id}","buyer_id":"{buyer}","merchant_id":"{merchant}",
                "transfer_id":"{authorization}","amount":{amount},"timeout_ns":60000000000,
                "ledger":1,"lines":[{{"sku_id":{sku},"quantity":1}}]}}"#
        )
    };
    let account = |reply: common::Reply, field: &str| reply.json()[field].as_u64().unwrap();

    // Answered once the hold is in place on the buyer's shard and the merchant's.
    let placed = server.post("/v1/orders", &order("700", "701", 300)).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let wallet = server.get(&format!("/v1/accounts/{buyer}")).await;
    assert_eq!(account(wallet, "debits_pending"), 300);
    let shop = server.get(&format!("/v1/accounts/{merchant}")).await;
    assert_eq!(account(shop, "credits_pending"), 300);

    let paid = server
        .post("/v1/orders/700/pay", r#"{"transfer_id":"702"}"#)
        .await;
    assert_eq!(paid.status, 201, "{}", paid.body);
    let looked_up = server.get("/v1/orders/700").await.json();
    assert_eq!(looked_up["status"], "paid", "{looked_up}");
    let wallet = server.get(&format!("/v1/accounts/{buyer}")).await;
    assert_eq!(account(wallet, "debits_posted"), 300);
    let refunded = server
        .post("/v1/orders/700/refund", r#"{"transfer_id":"703"}"#)
        .await;
    assert_eq!(refunded.status, 201, "{}", refunded.body);
    assert_eq!(
        server.get("/v1/orders/700").await.json()["status"],
        "refunded"
    );
    let wallet = server.get(&format!("/v1/accounts/{buyer}")).await;
    assert_eq!(account(wallet, "credits_posted"), 1_300);

    // Refused on the buyer's shard: the order id fails with that shard's code.
    let too_dear = server.post("/v1/orders", &order("710", "711", 5_000)).await;
    assert_eq!(too_dear.status, 409, "{}", too_dear.body);
    assert_eq!(too_dear.json()["code"], "exceeds_credits");
    let failed = server.get("/v1/orders/710").await.json();
    assert_eq!(
        (failed["outcome"].as_str(), failed["code"].as_str()),
        (Some("failed"), Some("exceeds_credits"))
    );
    let stock = server.get(&format!("/v1/skus/{sku}")).await.json();
    assert_eq!(stock["units_reserved"], 0, "{stock}");
    server.server.stop().await.unwrap();
}
