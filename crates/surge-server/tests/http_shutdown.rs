//! Graceful shutdown loses nothing acknowledged: a burst of payments on many connections,
//! a stop in the middle of it, a restart on the same data directory, and every transfer
//! that was answered `ok` is there.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{test_config, try_request, TestServer};
use surge_server::server;

const BURST: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_in_a_burst_keeps_every_acknowledged_transfer() {
    let test = TestServer::start().await;
    let accounts = r#"[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1}]"#;
    assert_eq!(test.post("/v1/accounts", accounts).await.status, 200);
    let addr = test.addr();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for index in 0..BURST {
        let token = test.payments.clone();
        let answered = Arc::clone(&answered);
        tasks.push(tokio::spawn(async move {
            // Spread the burst so that the stop lands in the middle of it.
            tokio::time::sleep(Duration::from_millis(index as u64)).await;
            let id = 1_000 + index;
            let body = format!(
                r#"{{"id":"{id}","debit_account_id":"1","credit_account_id":"2","amount":1,
                    "ledger":1,"code":1}}"#
            );
            let reply = try_request(
                addr,
                "POST",
                "/v1/transfers",
                Some(&token),
                &[],
                body.as_bytes(),
            )
            .await;
            answered.fetch_add(1, Ordering::SeqCst);
            (id, reply.map(|reply| reply.status))
        }));
    }
    // Stop once a few payments were answered, whatever the machine's speed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::SeqCst) < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let TestServer {
        server: running,
        dir,
        read,
        ..
    } = test;
    running.stop().await.unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (id, Some(201)) => acknowledged.push(id),
            (_, Some(status)) => assert_eq!(status, 503, "only a shutdown refusal"),
            (_, None) => refused += 1,
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "some payments went through before the stop"
    );
    assert!(refused > 0, "the stop came in the middle of the burst");

    let restarted = server::start(test_config(dir.path())).await.unwrap();
    for id in &acknowledged {
        let path = format!("/v1/transfers/{id}");
        let reply =
            common::request(restarted.http_addr(), "GET", &path, Some(&read), &[], b"").await;
        assert_eq!(reply.status, 200, "acknowledged transfer {id} is lost");
        assert_eq!(reply.json()["outcome"], "committed");
    }
    let path = "/v1/accounts/2";
    let account = common::request(restarted.http_addr(), "GET", path, Some(&read), &[], b"")
        .await
        .json();
    let credited = account["credits_posted"].as_u64().unwrap();
    assert!(
        credited >= acknowledged.len() as u64,
        "{credited} < {}",
        acknowledged.len()
    );
    restarted.stop().await.unwrap();
}
