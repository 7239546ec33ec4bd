//! Helpers of the tests that run the real `surge serve` binary: start it on 127.0.0.1 port 0
//! over a data directory and read where it listens, the first-start tokens, SIGTERM, one
//! HTTP request per connection, and a raw TCP protocol client over a blocking socket.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surge_core::{Batch, ResultCode};
use surge_protocol::{encode_batch, encode_lookup, ErrorCode, Frame, FrameDecoder, Hello};
use surge_protocol::{LookupEntry, LookupOperation, LookupStatus, ReplyStatus, Welcome};

/// How long a test waits for one answer before failing.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// A `surge serve` process and where it listens.
pub struct Served {
    pub child: Child,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    /// Everything it wrote to stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

/// Starts `surge serve` on `data_dir` (one shard unless `extra` says `--shards`, loopback
/// port 0) with `extra` flags.
pub fn serve(data_dir: &Path, extra: &[&str]) -> Served {
    let shards: &[&str] = if extra.contains(&"--shards") {
        &[]
    } else {
        &["--shards", "1"]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_surge"))
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--tcp-addr",
            "127.0.0.1:0",
        ])
        .args(shards)
        .args(extra)
        .env("SURGE_DATA_DIR", data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("surge serve starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut errors = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let collected = stderr.clone();
    std::thread::spawn(move || {
        for line in errors.by_ref().map_while(Result::ok) {
            let mut text = collected.lock().expect("stderr lock");
            text.push_str(&line);
            text.push('\n');
        }
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut http, mut tcp) = (None, None);
    while http.is_none() || tcp.is_none() {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => panic!("surge serve stopped early: {}", stderr.lock().unwrap()),
        };
        if let Some(rest) = line.strip_prefix("surge: HTTP listening on http://") {
            http = Some(rest.parse().expect("an address"));
        }
        if let Some(rest) = line.strip_prefix("surge: TCP listening on ") {
            tcp = Some(rest.parse().expect("an address"));
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Served {
        child,
        http: http.expect("HTTP address"),
        tcp: tcp.expect("TCP address"),
        stderr,
    }
}

impl Served {
    /// Sends SIGTERM (the server drains and exits).
    pub fn signal_terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `wait` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status (within the answer wait).
    pub fn terminate(mut self) -> ExitStatus {
        self.signal_terminate();
        self.wait_exit(ANSWER_WAIT)
            .expect("surge serve exits after SIGTERM")
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A failed test must not leave its server running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

/// One request on a new connection: status, headers and body; `None` if the server did
/// not answer (refused, reset, closed).
pub fn http(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(ANSWER_WAIT)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    read_answer(&mut stream)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Reads an answer until the server closes.
pub fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// A frame received, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    Welcome(Welcome),
    HandshakeError(ErrorCode),
    Codes {
        request_id: u64,
        codes: Vec<ResultCode>,
    },
    Busy {
        request_id: u64,
    },
    Rejected {
        request_id: u64,
        code: ErrorCode,
    },
    Found {
        request_id: u64,
        operation: u8,
        ids_count: u32,
        entries: Vec<LookupEntry>,
    },
    LookupBusy {
        request_id: u64,
    },
    LookupRejected {
        request_id: u64,
        code: ErrorCode,
    },
    Error(ErrorCode),
    Pong(u64),
    /// End of stream or a reset.
    Closed,
}

impl Got {
    /// The request id a reply answers.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Got::Codes { request_id, .. }
            | Got::Busy { request_id }
            | Got::Rejected { request_id, .. }
            | Got::Found { request_id, .. }
            | Got::LookupBusy { request_id }
            | Got::LookupRejected { request_id, .. }
            | Got::Pong(request_id) => Some(*request_id),
            _ => None,
        }
    }
}

fn owned(frame: Frame<'_>) -> Got {
    match frame {
        Frame::Welcome(welcome) => Got::Welcome(welcome),
        Frame::HandshakeError(message) => Got::HandshakeError(message.code),
        Frame::Error(message) => Got::Error(message.code),
        Frame::Pong { request_id } => Got::Pong(request_id),
        Frame::Reply(reply) => {
            let request_id = reply.request_id;
            match reply.status {
                ReplyStatus::Ok(codes) => Got::Codes {
                    request_id,
                    codes: codes.to_vec().expect("known codes"),
                },
                ReplyStatus::Busy => Got::Busy { request_id },
                ReplyStatus::Rejected(code) => Got::Rejected { request_id, code },
            }
        }
        Frame::LookupReply(reply) => {
            let request_id = reply.request_id;
            match reply.status {
                LookupStatus::Found(entries) => Got::Found {
                    request_id,
                    operation: reply.operation,
                    ids_count: entries.ids_count(),
                    entries: entries
                        .iter()
                        .map(|entry| entry.expect("an entry"))
                        .collect(),
                },
                LookupStatus::Busy => Got::LookupBusy { request_id },
                LookupStatus::Rejected(code) => Got::LookupRejected { request_id, code },
            }
        }
        other => panic!("a server never sends {other:?}"),
    }
}

/// A protocol client speaking raw frames over a blocking socket.
pub struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    /// Connects and handshakes with `token`; panics unless welcomed.
    pub fn connect(addr: SocketAddr, token: &str) -> (RawClient, Welcome) {
        match RawClient::hello(addr, token) {
            (client, Got::Welcome(welcome)) => (client, welcome),
            (_, other) => panic!("no Welcome: {other:?}"),
        }
    }

    /// Connects, sends `Hello` with `token` and returns the server's first answer.
    pub fn hello(addr: SocketAddr, token: &str) -> (RawClient, Got) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(ANSWER_WAIT)).expect("timeout");
        let mut client = RawClient {
            stream,
            buffer: Vec::new(),
        };
        client.send_frame(Frame::Hello(Hello {
            client_id: 42,
            token: token.as_bytes(),
        }));
        let got = client.next();
        (client, got)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed; the test looks at what comes back.
        let _ = self.stream.write_all(bytes);
    }

    pub fn send_frame(&mut self, frame: Frame<'_>) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        self.send(&bytes);
    }

    /// The next frame, or `Closed`.
    pub fn next(&mut self) -> Got {
        let decoder = FrameDecoder::default();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            if let Some((frame, size)) = decoder.decode(&self.buffer).expect("server frames") {
                let got = owned(frame);
                self.buffer.drain(..size);
                return got;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return Got::Closed,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
            }
        }
    }

    /// Sends one request and returns its reply.
    pub fn call(&mut self, request_id: u64, batch: Batch<'_>) -> Got {
        let mut bytes = Vec::new();
        encode_batch(&mut bytes, request_id, batch);
        self.send(&bytes);
        self.next()
    }

    /// Sends one lookup of `ids` and returns its reply.
    pub fn lookup(&mut self, request_id: u64, operation: LookupOperation, ids: &[u128]) -> Got {
        self.send(&lookup_bytes(request_id, operation, ids));
        self.next()
    }
}

/// A `Lookup` frame's bytes.
pub fn lookup_bytes(request_id: u64, operation: LookupOperation, ids: &[u128]) -> Vec<u8> {
    let size = operation.id_size_bytes();
    let body: Vec<u8> = ids
        .iter()
        .flat_map(|id| id.to_le_bytes()[..size].to_vec())
        .collect();
    let mut bytes = Vec::new();
    encode_lookup(&mut bytes, request_id, operation, ids.len() as u32, &body);
    bytes
}
