//! The TCP limits of the real `surge serve` binary come from its settings: with
//! `--tcp-connections-max 1` a second connection is refused `too_many_connections` at its
//! handshake while the first keeps working, and with `--tcp-idle-timeout-ms` an idle
//! connection is told `idle_timeout` and closed.

mod served;

use std::time::{Duration, Instant};

use served::{initial_token, serve, Got, RawClient};
use surge_core::{Account, AccountId, Batch, ResultCode};
use surge_protocol::ErrorCode;

#[test]
fn the_tcp_connection_limit_and_idle_timeout_are_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve(
        dir.path(),
        &[
            "--tcp-connections-max",
            "1",
            "--tcp-idle-timeout-ms",
            "1500",
        ],
    );
    let token = initial_token(dir.path(), "payments");
    let (mut first, _) = RawClient::connect(served.tcp, &token);
    let (mut second, answer) = RawClient::hello(served.tcp, &token);
    assert_eq!(answer, Got::HandshakeError(ErrorCode::TooManyConnections));
    assert_eq!(second.next(), Got::Closed);
    // The first connection still works.
    let account = Account {
        id: AccountId(1),
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    match first.call(1, Batch::CreateAccounts(&[account])) {
        Got::Codes { codes, .. } => assert_eq!(codes, [ResultCode::Ok]),
        other => panic!("{other:?}"),
    }
    // Idle for longer than the timeout: the server closes it, which frees the slot.
    let idle = Instant::now();
    assert_eq!(first.next(), Got::Error(ErrorCode::IdleTimeout));
    assert_eq!(first.next(), Got::Closed);
    assert!(
        idle.elapsed() >= Duration::from_millis(1_000),
        "{:?}",
        idle.elapsed()
    );
    // (The slot is released just after the close, so allow the server a moment.)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match RawClient::hello(served.tcp, &token) {
            (_, Got::Welcome(_)) => break,
            (_, Got::HandshakeError(ErrorCode::TooManyConnections))
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            (_, other) => panic!("a connection after the idle one closed: {other:?}"),
        }
    }
    served.terminate();
}
