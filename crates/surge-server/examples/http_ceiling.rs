//! The ceiling of the HTTP edge on this machine: the same routes Surge serves for a
//! single payment (`POST /v1/transfers`) and a health check (`GET /healthz`), answered
//! without an engine, auth or limits, by plain hyper or by axum (`--stack`). The JSON body
//! is parsed into the same shape Surge parses and a result of the same size is written, so
//! the difference to `surge serve` is what Surge adds (auth, limits, metrics, idempotency,
//! the engine and the log). Benchmark-only: `docs/PERFORMANCE.md`, "HTTP API".
//!
//! ```sh
//! cargo build --release -p surge-server --example http_ceiling
//! target/release/examples/http_ceiling --stack hyper --addr 127.0.0.1:7790
//! TOKEN=x wrk -t2 -c256 -d8s --latency -s benches/http/transfers.lua http://127.0.0.1:7790
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, Response, StatusCode};
use clap::Parser;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

/// The result a single payment answers with (as `surge serve` does, same length).
const CREATED_BODY: &[u8] = br#"{"index":0,"id":"1000001","code":"ok","code_number":0}"#;

#[derive(Parser)]
#[command(about = "HTTP ceiling: Surge's routes answered without an engine")]
struct Args {
    /// `hyper` (a service function) or `axum` (a router with the same two routes).
    #[arg(long, default_value = "hyper")]
    stack: String,
    /// Where to listen (loopback only).
    #[arg(long, default_value = "127.0.0.1:7790")]
    addr: SocketAddr,
}

/// The fields of Surge's transfer body that matter for parsing cost.
#[derive(Deserialize)]
#[allow(dead_code)] // Parsed for its cost, not read.
struct TransferBody {
    id: String,
    #[serde(default)]
    debit_account_id: String,
    #[serde(default)]
    credit_account_id: String,
    #[serde(default)]
    amount: serde_json::Value,
    #[serde(default)]
    ledger: u32,
    #[serde(default)]
    code: u16,
}

fn answer(path: &str, body: Option<&[u8]>) -> Response<Body> {
    let (status, content): (StatusCode, &'static [u8]) = match (path, body) {
        ("/healthz", None) => (StatusCode::OK, b"ok"),
        ("/v1/transfers", Some(body)) => match serde_json::from_slice::<TransferBody>(body) {
            Ok(_) => (StatusCode::CREATED, CREATED_BODY),
            Err(_) => (StatusCode::BAD_REQUEST, b"{\"code\":\"invalid_request\"}"),
        },
        _ => (StatusCode::NOT_FOUND, b""),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(content))
        .expect("a static response")
}

async fn hyper_service(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    use http_body_util::BodyExt;
    let path = request.uri().path().to_string();
    if request.method() == hyper::Method::GET {
        return Ok(answer(&path, None));
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    Ok(answer(&path, Some(&body)))
}

fn axum_router() -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/healthz", get(|| async { answer("/healthz", None) }))
        .route(
            "/v1/transfers",
            post(|body: Bytes| async move { answer("/v1/transfers", Some(&body)) }),
        )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.addr.ip().is_loopback(), "listen on loopback only");
    let listener = TcpListener::bind(args.addr).await?;
    eprintln!("http_ceiling: {} on http://{}", args.stack, args.addr);
    let router = axum_router();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let builder = hyper::server::conn::http1::Builder::new();
        match args.stack.as_str() {
            "hyper" => {
                let service = hyper::service::service_fn(hyper_service);
                tokio::spawn(async move {
                    let _ = builder.serve_connection(io, service).await;
                });
            }
            "axum" => {
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let _ = builder.serve_connection(io, service).await;
                });
            }
            other => anyhow::bail!("unknown --stack {other}: hyper or axum"),
        }
    }
}
