//! Runs the real `surge serve` binary: first-start tokens, `surge token` against a running
//! server, refusals with the exact reason, and SIGTERM in the middle of a burst of
//! payments — exit 0, and after a restart every acknowledged transfer is there.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod served;

use served::{initial_token, serve};

/// One request on a new connection: status and body; `None` if the server did not answer.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Option<(u16, String)> {
    served::http(addr, method, path, token, body).map(|answer| (answer.status, answer.body))
}

fn surge(args: &[&str], data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

#[test]
fn sigterm_in_a_burst_exits_0_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &[]);
    let tokens_file = dir.path().join("initial-tokens.txt");
    let mode = std::fs::metadata(&tokens_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the first tokens are readable by the owner only"
    );
    let payments = initial_token(dir.path(), "payments");
    let read = initial_token(dir.path(), "read");
    let stored = std::fs::read_to_string(dir.path().join("tokens.toml")).unwrap();
    assert!(
        !stored.contains(&payments) && !stored.contains(&read),
        "hashes only"
    );

    let accounts = r#"[{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1}]"#;
    let created = http(served.http, "POST", "/v1/accounts", &payments, accounts).unwrap();
    assert_eq!(created.0, 200, "{}", created.1);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (addr, token, stop) = (served.http, payments.clone(), stop.clone());
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for sequence in 0.. {
                    let id = 10_000 * (worker + 1) + sequence;
                    let body = format!(
                        r#"{{"id":"{id}","debit_account_id":"1","credit_account_id":"2",
                            "amount":1,"ledger":1,"code":1}}"#
                    );
                    match http(addr, "POST", "/v1/transfers", &token, &body) {
                        Some((201, _)) => {
                            acknowledged.push(id);
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        _ if stop.load(Ordering::SeqCst) => break,
                        other => panic!("transfer {id} before the stop: {other:?}"),
                    }
                }
                acknowledged
            })
        })
        .collect();
    // Terminate in the middle of the burst, once some payments were answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) < 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let status = served.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");
    let acknowledged: Vec<u64> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 10,
        "only {} payments went through",
        acknowledged.len()
    );

    let served = serve(dir.path(), &[]);
    for id in &acknowledged {
        let (status, body) = http(
            served.http,
            "GET",
            &format!("/v1/transfers/{id}"),
            &read,
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "acknowledged transfer {id} is lost: {body}");
        assert!(body.contains("\"committed\""), "{body}");
    }
    assert!(!dir.path().join("initial-tokens2.txt").exists());
    assert!(served.terminate().success());
}

#[test]
fn token_commands_reach_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &[]);
    let created = surge(
        &["token", "create", "--scope", "read", "--name", "ci"],
        dir.path(),
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(token.starts_with("surge_"), "{token}");
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = http(served.http, "GET", "/v1/accounts/1", &token, "").unwrap();
    assert_eq!(
        status, 404,
        "the new token is accepted (and the account unknown)"
    );

    let listed = surge(&["token", "list"], dir.path());
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("\tci\tread\t"), "{listed}");
    assert!(!listed.contains(&token), "list never shows tokens");
    let duplicate = surge(
        &["token", "create", "--scope", "read", "--name", "ci"],
        dir.path(),
    );
    assert!(!duplicate.status.success());
    let bad_scope = surge(&["token", "create", "--scope", "admin"], dir.path());
    assert!(!bad_scope.status.success());

    let revoked = surge(&["token", "revoke", "ci"], dir.path());
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = http(served.http, "GET", "/v1/accounts/1", &token, "").unwrap();
    assert_eq!(
        status, 401,
        "the revoked token is refused without a restart"
    );
    let again = surge(&["token", "revoke", "ci"], dir.path());
    assert!(!again.status.success());
    assert!(served.terminate().success());
}

fn refusal(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_surge"))
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} should be refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_to_start_with_the_exact_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let config = dir.path().join("surge.toml");
    std::fs::write(&config, "http_adr = \"127.0.0.1:1\"\n").unwrap();
    let text = refusal(&["--data-dir", data, "--config", config.to_str().unwrap()]);
    assert!(text.contains("http_adr"), "{text}");

    let text = refusal(&["--data-dir", data, "--http-addr", "localhost"]);
    assert!(text.contains("--http-addr"), "{text}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let text = refusal(&[
        "--data-dir",
        data,
        "--http-addr",
        &taken,
        "--tcp-addr",
        "127.0.0.1:0",
    ]);
    assert!(text.contains("cannot listen on HTTP address"), "{text}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("data");
    let text = refusal(&["--data-dir", under_file.to_str().unwrap()]);
    assert!(text.contains("data directory"), "{text}");

    // The engine refuses a data directory made for another shard count.
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(Path::new(data).join("shards"), "1\n").unwrap();
    let addrs = ["--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0"];
    let text = refusal(&[&["--data-dir", data, "--shards", "2"][..], &addrs[..]].concat());
    assert!(
        text.contains("engine") && text.contains("1 shards"),
        "{text}"
    );
}
