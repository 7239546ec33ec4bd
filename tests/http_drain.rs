//! The HTTP edge of the real `surge serve` binary at its limits: while it drains after
//! SIGTERM, `/readyz` answers 503 (so load balancers stop sending), `/healthz` 200, new
//! `/v1/` requests 503, and a request admitted before the signal still finishes and is
//! durable; past `--http-connections-max`, a connection is answered `429 busy`.

mod served;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use served::{http, initial_token, read_answer, serve, Answer};

/// Waits until `check` is true, for at most 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn code(answer: &Answer) -> String {
    let problem: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    problem["code"].as_str().unwrap_or_default().to_string()
}

fn in_flight(addr: SocketAddr, read: &str) -> Option<u64> {
    let metrics = http(addr, "GET", "/metrics", read, "")?.body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("surge_http_requests_in_flight "))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn while_draining_readyz_is_503_healthz_200_and_admitted_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &["--shutdown-grace-ms", "30000"]);
    let payments = initial_token(dir.path(), "payments");
    let read = initial_token(dir.path(), "read");
    let accounts = r#"[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1}]"#;
    let created = http(served.http, "POST", "/v1/accounts", &payments, accounts).unwrap();
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(
        http(served.http, "GET", "/readyz", "", "").unwrap().status,
        200
    );

    // A payment whose body is still arriving when the signal comes: admitted, in flight.
    let body = r#"{"id":"77","debit_account_id":"1","credit_account_id":"2","amount":5,
                   "ledger":1,"code":1}"#;
    let mut admitted = TcpStream::connect(served.http).unwrap();
    admitted
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /v1/transfers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {payments}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    admitted.write_all(head.as_bytes()).unwrap();
    admitted.write_all(&body.as_bytes()[..10]).unwrap();
    eventually("the payment is in flight", || {
        in_flight(served.http, &read) == Some(1)
    });

    served.signal_terminate();
    // A probe whose connection the server accepted just before it saw the signal may be
    // closed unanswered (hyper closes a connection with no request read yet when the drain
    // starts); once the drain is under way every probe is answered, which `eventually`
    // and the unwrapped calls below check.
    eventually("/readyz answers 503 while draining", || {
        http(served.http, "GET", "/readyz", "", "").is_some_and(|answer| answer.status == 503)
    });
    let ready = http(served.http, "GET", "/readyz", "", "").unwrap();
    assert_eq!(
        (ready.status, code(&ready)),
        (503, "shutting_down".to_string())
    );
    let health = http(served.http, "GET", "/healthz", "", "").unwrap();
    assert_eq!(health.status, 200, "alive while draining: {}", health.body);
    let late = r#"{"id":"78","debit_account_id":"1","credit_account_id":"2","amount":5,
                   "ledger":1,"code":1}"#;
    let refused = http(served.http, "POST", "/v1/transfers", &payments, late).unwrap();
    assert_eq!(
        (refused.status, code(&refused)),
        (503, "shutting_down".to_string())
    );
    assert!(
        refused.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        refused.head
    );
    let lookup = http(served.http, "GET", "/v1/accounts/1", &read, "").unwrap();
    assert_eq!(
        lookup.status, 503,
        "nothing new is admitted: {}",
        lookup.body
    );
    assert!(
        served.wait_exit(Duration::from_millis(300)).is_none(),
        "the drain waits for the admitted payment"
    );

    // The admitted payment finishes: durable and answered.
    admitted.write_all(&body.as_bytes()[10..]).unwrap();
    let answer = read_answer(&mut admitted).expect("the admitted payment is answered");
    assert_eq!(answer.status, 201, "{}", answer.body);
    let status = served
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits once drained");
    assert!(status.success(), "{status:?}");

    let served = serve(dir.path(), &[]);
    let found = http(served.http, "GET", "/v1/transfers/77", &read, "").unwrap();
    assert_eq!(found.status, 200, "{}", found.body);
    let refused = http(served.http, "GET", "/v1/transfers/78", &read, "").unwrap();
    assert_eq!(refused.status, 404, "the late payment never happened");
    assert!(served.terminate().success());
}

#[test]
fn past_the_connection_limit_a_connection_is_answered_429() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &["--http-connections-max", "2"]);
    let read = initial_token(dir.path(), "read");
    // Two idle connections hold both slots (once the server accepted them).
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(served.http).unwrap())
        .collect();
    eventually("a third connection is refused with 429", || {
        let answer = http(served.http, "GET", "/healthz", "", "").expect("an answer");
        answer.status == 429
    });
    let refused = http(served.http, "GET", "/v1/accounts/1", &read, "").unwrap();
    assert_eq!((refused.status, code(&refused)), (429, "busy".to_string()));
    assert!(
        refused.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        refused.head
    );
    assert!(
        refused
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        refused.head
    );

    drop(idle);
    eventually("a slot frees when a connection closes", || {
        http(served.http, "GET", "/healthz", "", "").is_some_and(|answer| answer.status == 200)
    });
    let metrics = http(served.http, "GET", "/metrics", &read, "")
        .unwrap()
        .body;
    let refusals = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"surge_http_rejections_total{reason="connection_limit"} "#)
        })
        .and_then(|value| value.trim().parse::<u64>().ok())
        .expect("the refusals are counted");
    assert!(refusals >= 2, "{refusals}");
    assert!(served.terminate().success());
}

#[test]
fn a_shutdown_delay_keeps_serving_while_readyz_says_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &["--shutdown-delay-ms", "4000"]);
    let payments = initial_token(dir.path(), "payments");
    served.signal_terminate();
    let signalled = Instant::now();
    eventually("/readyz answers 503 during the delay", || {
        http(served.http, "GET", "/readyz", "", "").is_some_and(|answer| answer.status == 503)
    });
    let ready = http(served.http, "GET", "/readyz", "", "").unwrap();
    assert_eq!(code(&ready), "shutting_down");
    // Everything else is served as before: a load balancer still finishing its traffic
    // gets answers, not refusals.
    let accounts = r#"[{"id":"1","ledger":1,"code":1}]"#;
    let created = http(served.http, "POST", "/v1/accounts", &payments, accounts).unwrap();
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(
        signalled.elapsed() < Duration::from_millis(4_000),
        "the request came inside the delay (the machine was too slow to tell)"
    );
    let status = served
        .wait_exit(Duration::from_secs(20))
        .expect("the server drains and exits after the delay");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_millis(4_000));
    let served = serve(dir.path(), &[]);
    let read = initial_token(dir.path(), "read");
    let found = http(served.http, "GET", "/v1/accounts/1", &read, "").unwrap();
    assert_eq!(found.status, 200, "durable: {}", found.body);
    assert!(served.terminate().success());
}
