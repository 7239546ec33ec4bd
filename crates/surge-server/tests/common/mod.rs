//! Test helpers: an in-process server on 127.0.0.1 port 0 over a temporary data
//! directory, the tokens of its first start, and a tiny HTTP/1.1 client over a real
//! socket (one connection per request, `Connection: close`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use surge_server::config::ServerConfig;
use surge_server::server::{self, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server and what a test needs to talk to it.
pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub payments: String,
    pub read: String,
    pub dispatch: String,
}

/// A config for tests: loopback port 0, one shard (the same ids land on one shard whatever
/// the machine), the given data directory.
pub fn test_config(data_dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::with_data_dir(data_dir);
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.tcp_addr = "127.0.0.1:0".parse().unwrap();
    config.shards = Some(1);
    config
}

/// The first-start token of `scope` in `data_dir`.
pub fn initial_token(data_dir: &Path, scope: &str) -> String {
    let text = std::fs::read_to_string(data_dir.join("initial-tokens.txt")).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| line.split('\t').next() == Some(scope))
        .and_then(|line| line.split('\t').nth(2))
        .unwrap()
        .to_string()
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = server::start(config).await.unwrap();
        TestServer {
            payments: initial_token(dir.path(), "payments"),
            read: initial_token(dir.path(), "read"),
            dispatch: initial_token(dir.path(), "dispatch"),
            server,
            dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.http_addr()
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        request(
            self.addr(),
            "POST",
            path,
            Some(&self.payments),
            &[],
            body.as_bytes(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr(), "GET", path, Some(&self.read), &[], b"").await
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The problem's `code`, asserting the content type.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

/// Sends one request on a new connection and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    try_request(addr, method, path, token, headers, body)
        .await
        .unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

/// [`request`], or `None` when the connection fails or closes without an answer.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    // The server may answer (413) before reading a large body and close: ignore write errors.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
