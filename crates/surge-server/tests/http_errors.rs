//! Every documented error over real sockets, and that none of them changes state:
//! authentication and scopes, malformed bodies, limits, unknown ids, idempotency keys,
//! overload (429), token changes reaching a running server.

mod common;

use std::time::Duration;

use common::{request, TestServer};

/// Commands the engine has logged so far (from `/metrics`).
async fn engine_commands(server: &TestServer) -> u64 {
    let metrics = server.get("/metrics").await.body;
    metrics
        .lines()
        .find(|line| line.starts_with("surge_engine_commands_total{shard=\"0\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no engine command counter in\n{metrics}"))
}

const ACCOUNT: &str = r#"{"id":"1","ledger":1,"code":1}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_scopes() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let post = |token: Option<String>| async move {
        request(
            addr,
            "POST",
            "/v1/accounts",
            token.as_deref(),
            &[],
            ACCOUNT.as_bytes(),
        )
        .await
    };
    let missing = post(None).await;
    assert_eq!(
        (missing.status, missing.code()),
        (401, "unauthorized".to_string())
    );
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong = post(Some(format!("{}0", server.payments))).await;
    assert_eq!(wrong.status, 401);
    let basic = request(
        addr,
        "GET",
        "/v1/accounts/1",
        None,
        &[("Authorization", "Basic eDp5")],
        b"",
    )
    .await;
    assert_eq!(basic.status, 401);
    let read_scope = post(Some(server.read.clone())).await;
    assert_eq!(
        (read_scope.status, read_scope.code()),
        (403, "forbidden".to_string())
    );
    let payments_reading = request(
        addr,
        "GET",
        "/v1/accounts/1",
        Some(&server.payments),
        &[],
        b"",
    )
    .await;
    assert_eq!(payments_reading.status, 403);
    let dispatch_paying = request(
        addr,
        "POST",
        "/v1/transfers",
        Some(&server.dispatch),
        &[],
        b"{}",
    )
    .await;
    assert_eq!(dispatch_paying.status, 403);
    let read_dispatch = request(addr, "GET", "/v1/dispatch", Some(&server.read), &[], b"").await;
    assert_eq!(read_dispatch.status, 403);
    // Without a token, even unknown paths and the API document say only 401.
    assert_eq!(
        request(addr, "GET", "/nowhere", None, &[], b"")
            .await
            .status,
        401
    );
    assert_eq!(
        request(addr, "GET", "/openapi.json", None, &[], b"")
            .await
            .status,
        401
    );
    assert_eq!(
        request(addr, "GET", "/metrics", None, &[], b"")
            .await
            .status,
        401
    );
    assert_eq!(server.get("/nowhere").await.status, 404);

    assert_eq!(
        server.get("/v1/accounts/1").await.status,
        404,
        "nothing was created"
    );
    assert_eq!(engine_commands(&server).await, 0);
    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.contains("surge_http_rejections_total{reason=\"unauthorized\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("surge_http_rejections_total{reason=\"forbidden\"} 4"),
        "{metrics}"
    );
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_change_nothing() {
    let server = TestServer::start_with(|config| config.http_body_size_bytes_max = 4096).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/v1/accounts", "{\"id\":\"1\",", 400, "invalid_json"),
        ("/v1/accounts", "", 400, "invalid_json"),
        ("/v1/accounts", "not json", 400, "invalid_json"),
        (
            "/v1/accounts",
            r#"{"id":"1","ledger":"one","code":1}"#,
            422,
            "invalid_request",
        ),
        (
            "/v1/accounts",
            r#"{"id":"-1","ledger":1,"code":1}"#,
            422,
            "invalid_request",
        ),
        (
            "/v1/accounts",
            r#"{"id":"1","ledger":4294967296,"code":1}"#,
            422,
            "invalid_request",
        ),
        (
            "/v1/accounts",
            r#"{"ledger":1,"code":1}"#,
            422,
            "invalid_request",
        ),
        (
            "/v1/accounts",
            r#"{"id":"1","ledger":1,"code":1,"colour":2}"#,
            422,
            "invalid_request",
        ),
        ("/v1/accounts", "[]", 422, "empty_batch"),
        ("/v1/accounts", "[1]", 422, "invalid_request"),
        (
            "/v1/transfers",
            r#"{"id":"5","amount":-3}"#,
            422,
            "invalid_request",
        ),
        (
            "/v1/transfers/abc/post",
            r#"{"id":"6"}"#,
            422,
            "invalid_request",
        ),
        ("/v1/orders/1/pay", r#"{}"#, 422, "invalid_request"),
        ("/v1/skus", r#"{"id":1}"#, 422, "invalid_request"),
    ];
    for (path, body, status, code) in cases {
        let reply = server.post(path, body).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (*status, *code),
            "{path} {body}"
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
    let nine_lines = [r#"{"sku_id":1,"quantity":1}"#; 9].join(",");
    let order = format!(
        r#"{{"id":"1","buyer_id":"1","merchant_id":"2","transfer_id":"3","amount":1,
            "timeout_ns":1,"ledger":1,"lines":[{nine_lines}]}}"#
    );
    let reply = server.post("/v1/orders", &order).await;
    assert_eq!(
        (reply.status, reply.code()),
        (422, "order_lines_invalid".to_string())
    );
    assert_eq!(reply.json()["code_number"], 400);

    let huge = format!("[{}]", vec![ACCOUNT; 200].join(","));
    let reply = server.post("/v1/accounts", &huge).await;
    assert_eq!(
        (reply.status, reply.code()),
        (413, "body_too_large".to_string())
    );

    for path in [
        "/v1/accounts/42",
        "/v1/transfers/42",
        "/v1/skus/42",
        "/v1/orders/42",
    ] {
        let reply = server.get(path).await;
        assert_eq!(
            (reply.status, reply.code()),
            (404, "not_found".to_string()),
            "{path}"
        );
    }
    assert_eq!(server.get("/v1/accounts/x1").await.status, 422);
    assert_eq!(
        server.get("/v1/skus/18446744073709551616").await.status,
        422
    );
    assert_eq!(
        server.get("/v1/accounts/1/statement?limit=0").await.status,
        422
    );
    assert_eq!(
        server
            .get("/v1/accounts/1/statement?cursor=zz")
            .await
            .status,
        422
    );
    assert_eq!(
        server.get("/v1/accounts/1/statement?extra=1").await.status,
        422
    );
    let dispatch = |query: &'static str| {
        let token = server.dispatch.clone();
        let addr = server.addr();
        async move { request(addr, "GET", query, Some(&token), &[], b"").await }
    };
    assert_eq!(dispatch("/v1/dispatch?wait_ms=30001").await.status, 422);
    assert_eq!(dispatch("/v1/dispatch?cursor=x").await.status, 422);
    assert_eq!(dispatch("/v1/dispatch?limit=0").await.status, 422);
    let wrong_method = server.get("/v1/transfers/1/post").await;
    assert_eq!(
        (wrong_method.status, wrong_method.code()),
        (405, "method_not_allowed".to_string())
    );

    assert_eq!(
        engine_commands(&server).await,
        0,
        "no bad request reached the engine"
    );
    assert_eq!(server.get("/v1/accounts/1").await.status, 404);
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_and_refuse_reuse() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let send = |key: &'static str, body: &'static str| {
        let token = server.payments.clone();
        async move {
            request(
                addr,
                "POST",
                "/v1/accounts",
                Some(&token),
                &[("Idempotency-Key", key)],
                body.as_bytes(),
            )
            .await
        }
    };
    let first = send("k-1", ACCOUNT).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let replay = send("k-1", ACCOUNT).await;
    assert_eq!(
        (replay.status, &replay.body),
        (201, &first.body),
        "the first response, replayed"
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    // Without the key, the same command is a retry the engine answers: exists.
    assert_eq!(server.post("/v1/accounts", ACCOUNT).await.code(), "exists");
    let reused = send("k-1", r#"{"id":"2","ledger":1,"code":1}"#).await;
    assert_eq!(
        (reused.status, reused.code()),
        (422, "idempotency_key_reused".to_string())
    );
    assert_eq!(
        server.get("/v1/accounts/2").await.status,
        404,
        "the reused key did nothing"
    );
    // A failed command's problem is replayed too.
    let failing = r#"{"id":"3","ledger":0,"code":1}"#;
    let problem = send("k-2", failing).await;
    assert_eq!(
        (problem.status, problem.code()),
        (422, "ledger_must_not_be_zero".to_string())
    );
    assert_eq!(send("k-2", failing).await.body, problem.body);
    // A request refused before the engine leaves no trace: fixed, it goes through.
    assert_eq!(send("k-3", "{").await.status, 400);
    assert_eq!(
        send("k-3", r#"{"id":"4","ledger":1,"code":1}"#)
            .await
            .status,
        201
    );
    let bad_key = request(
        addr,
        "POST",
        "/v1/accounts",
        Some(&server.payments),
        &[("Idempotency-Key", "")],
        ACCOUNT.as_bytes(),
    )
    .await;
    assert_eq!(
        (bad_key.status, bad_key.code()),
        (400, "invalid_idempotency_key".to_string())
    );
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_limit_is_429_at_once() {
    let server = TestServer::start_with(|config| config.http_requests_in_flight_max = 1).await;
    let addr = server.addr();
    let token = server.dispatch.clone();
    let poll = tokio::spawn(async move {
        request(
            addr,
            "GET",
            "/v1/dispatch?wait_ms=1500",
            Some(&token),
            &[],
            b"",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let busy = server.post("/v1/accounts", ACCOUNT).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    assert_eq!((busy.status, busy.code()), (429, "busy".to_string()));
    assert_eq!(busy.header("retry-after"), Some("1"));
    let health = request(addr, "GET", "/healthz", None, &[], b"").await;
    assert_eq!(health.status, 200, "health checks stay responsive");
    assert_eq!(
        request(addr, "GET", "/readyz", None, &[], b"").await.status,
        200
    );
    assert_eq!(
        poll.await.unwrap().status,
        200,
        "the admitted request finished"
    );
    assert_eq!(server.post("/v1/accounts", ACCOUNT).await.status, 201);
    let metrics = server.get("/metrics").await.body;
    assert!(metrics.contains("surge_http_rejections_total{reason=\"in_flight_limit\"} 1"));
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_and_revoked_tokens_reach_the_running_server() {
    let server = TestServer::start().await;
    let (entry, token) = surge_server::tokens::create_token(
        server.dir.path(),
        Some("ci"),
        &[surge_server::tokens::Scope::Read],
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reply = request(
        server.addr(),
        "GET",
        "/v1/accounts/1",
        Some(&token),
        &[],
        b"",
    )
    .await;
    assert_eq!(reply.status, 404, "the new token is accepted");
    surge_server::tokens::revoke_token(server.dir.path(), &entry.name).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reply = request(
        server.addr(),
        "GET",
        "/v1/accounts/1",
        Some(&token),
        &[],
        b"",
    )
    .await;
    assert_eq!(reply.status, 401, "the revoked token is refused");
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_engine_queue_is_429_and_loses_nothing_admitted() {
    let server = TestServer::start_with(|config| config.engine_batches_in_flight_max = 1).await;
    let accounts = r#"[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1}]"#;
    assert_eq!(server.post("/v1/accounts", accounts).await.status, 200);
    let addr = server.addr();
    let tasks: Vec<_> = (0..64u64)
        .map(|index| {
            let token = server.payments.clone();
            tokio::spawn(async move {
                let body = format!(
                    r#"{{"id":"{}","debit_account_id":"1","credit_account_id":"2",
                        "amount":1,"ledger":1,"code":1}}"#,
                    100 + index
                );
                let reply = request(
                    addr,
                    "POST",
                    "/v1/transfers",
                    Some(&token),
                    &[],
                    body.as_bytes(),
                )
                .await;
                (100 + index, reply)
            })
        })
        .collect();
    let mut busy = 0;
    let mut paid = 0;
    for task in tasks {
        let (id, reply) = task.await.unwrap();
        match reply.status {
            201 => {
                paid += 1;
                let lookup = server.get(&format!("/v1/transfers/{id}")).await.json();
                assert_eq!(lookup["outcome"], "committed");
            }
            429 => {
                busy += 1;
                assert_eq!(reply.code(), "busy");
                assert_eq!(reply.header("retry-after"), Some("1"));
                assert_eq!(server.get(&format!("/v1/transfers/{id}")).await.status, 404);
            }
            other => panic!("transfer {id}: {other} {}", reply.body),
        }
    }
    assert!(busy > 0 && paid > 0, "busy {busy}, paid {paid}");
    let account = server.get("/v1/accounts/2").await.json();
    assert_eq!(
        account["credits_posted"], paid,
        "exactly the answered payments happened"
    );
    let metrics = server.get("/metrics").await.body;
    let line = format!("surge_http_rejections_total{{reason=\"engine_busy\"}} {busy}");
    assert!(metrics.contains(&line), "{metrics}");
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_slow_bodies_are_closed() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start_with(|config| {
        config.http_idle_timeout = Duration::from_millis(200);
    })
    .await;
    let mut idle = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "closed, not left open"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let health = request(server.addr(), "GET", "/healthz", None, &[], b"").await;
    assert_eq!(health.status, 200);

    // A body that never finishes does not hold its in-flight slot forever.
    use tokio::io::AsyncWriteExt;
    let mut slow = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 100\r\n\r\n{{\"id\":",
        server.payments
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_items_and_no_history() {
    let server = TestServer::start_with(|config| config.history = false).await;
    let items = surge_server::constants::HTTP_BATCH_ITEMS_MAX + 1;
    let body = format!("[{}]", vec![ACCOUNT; items].join(","));
    let reply = server.post("/v1/accounts", &body).await;
    assert_eq!(
        (reply.status, reply.code()),
        (413, "too_many_items".to_string())
    );
    assert_eq!(engine_commands(&server).await, 0);
    let reply = server.get("/v1/accounts/1/statement").await;
    assert_eq!(
        (reply.status, reply.code()),
        (501, "history_disabled".to_string())
    );
    server.server.stop().await.unwrap();
}
