//! The HTTP/JSON edge: the router, and the one middleware every request goes through —
//! metrics, then authentication and scope, then the drain (no new `/v1/` request once the
//! server shuts down), then the in-flight limit, then the body limit and `Idempotency-Key`
//! — before a handler turns JSON into an engine batch.
//!
//! **Invariant:** nothing reaches the engine before the token, the scope, the limits and
//! the JSON were checked; a refused request changes no state.

// An error here is the response on its way out, built at most once per request: boxing
// it buys nothing.
#![allow(clippy::result_large_err)]

mod commands;
mod dispatch;
pub(crate) mod listener;
mod queries;
mod statement;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use surge_engine::Engine;
use tokio::sync::{watch, Notify, Semaphore};

use crate::config::ServerConfig;
use crate::idempotency::{self, Begin, IdempotencyCache, StoredResponse};
use crate::metrics::{Metrics, Rejection};
use crate::problem::{EdgeCode, Problem};
use crate::tokens::{Principal, Scope, TokenStore};

/// Everything a handler needs; cloned per request (all `Arc`s).
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) tokens: Arc<TokenStore>,
    pub(crate) idempotency: Arc<IdempotencyCache>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Woken when a payment made through this server completes (new dispatch requests).
    pub(crate) dispatch_ready: Arc<Notify>,
    /// Single-command requests share engine batches.
    pub(crate) coalescer: Arc<crate::coalesce::Coalescer>,
    /// Where a command answered `engine_failed` reports it (the server then stops).
    pub(crate) engine_failure: crate::engine_failure::EngineFailure,
    /// The TCP server's counters, rendered by `/metrics` with the HTTP ones.
    pub(crate) tcp_metrics: Arc<surge_tcp::TcpMetrics>,
    /// Set when a shutdown signal came and the server still serves for the shutdown
    /// delay: `/readyz` answers 503 already.
    pub(crate) not_ready: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub(crate) fn requests_in_flight(&self) -> usize {
        self.config.http_requests_in_flight_max - self.in_flight.available_permits()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Marks a response the engine decided, so its `Idempotency-Key` remembers it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineDecided;

/// Every route: method, path template, and who may call it. `docs/openapi.json` documents
/// exactly these (a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts/{id}"),
    ("GET", "/v1/accounts/{id}/statement"),
    ("POST", "/v1/transfers"),
    ("GET", "/v1/transfers/{id}"),
    ("POST", "/v1/transfers/{id}/post"),
    ("POST", "/v1/transfers/{id}/void"),
    ("POST", "/v1/skus"),
    ("GET", "/v1/skus/{id}"),
    ("POST", "/v1/reservations"),
    ("POST", "/v1/reservations/confirm"),
    ("POST", "/v1/reservations/release"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders/{id}"),
    ("POST", "/v1/orders/{id}/pay"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("POST", "/v1/orders/{id}/refund"),
    ("GET", "/v1/dispatch"),
    ("POST", "/v1/dispatch/ack"),
];

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Public,
    AnyToken,
    Scope(Scope),
}

fn access(method: &Method, route: &str) -> Access {
    match route {
        "/healthz" | "/readyz" => Access::Public,
        "/metrics" => Access::Scope(Scope::Read),
        _ if route.starts_with("/v1/dispatch") => Access::Scope(Scope::Dispatch),
        _ if route.starts_with("/v1/") && (method == Method::GET || method == Method::HEAD) => {
            Access::Scope(Scope::Read)
        }
        _ if route.starts_with("/v1/") => Access::Scope(Scope::Payments),
        // /openapi.json, and paths no route has: a stranger learns nothing, not even 404.
        _ => Access::AnyToken,
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(queries::healthz))
        .route("/readyz", get(queries::readyz))
        .route("/metrics", get(queries::metrics))
        .route("/openapi.json", get(queries::openapi))
        .route("/v1/accounts", post(commands::create_accounts))
        .route("/v1/accounts/{id}", get(queries::account))
        .route("/v1/accounts/{id}/statement", get(queries::statement))
        .route("/v1/transfers", post(commands::create_transfers))
        .route("/v1/transfers/{id}", get(queries::transfer))
        .route("/v1/transfers/{id}/post", post(commands::post_transfer))
        .route("/v1/transfers/{id}/void", post(commands::void_transfer))
        .route("/v1/skus", post(commands::create_skus))
        .route("/v1/skus/{id}", get(queries::sku))
        .route("/v1/reservations", post(commands::reserve))
        .route(
            "/v1/reservations/confirm",
            post(commands::confirm_reservations),
        )
        .route(
            "/v1/reservations/release",
            post(commands::release_reservations),
        )
        .route("/v1/orders", post(commands::place_orders))
        .route("/v1/orders/{id}", get(queries::order))
        .route("/v1/orders/{id}/pay", post(commands::pay_order))
        .route("/v1/orders/{id}/cancel", post(commands::cancel_order))
        .route("/v1/orders/{id}/refund", post(commands::refund_order))
        .route("/v1/dispatch", get(dispatch::feed))
        .route("/v1/dispatch/ack", post(commands::ack_dispatch))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

async fn not_found() -> Response {
    Problem::edge(EdgeCode::NotFound, "no route has this path").into_response()
}

async fn method_not_allowed() -> Response {
    Problem::edge(
        EdgeCode::MethodNotAllowed,
        "the route does not take this method",
    )
    .into_response()
}

/// Times and counts every request, around [`guard`].
async fn edge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = guard(&state, &route, request, next).await;
    state.metrics.record(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Authentication, scope, in-flight limit, body limit, idempotency; then the handler.
async fn guard(state: &AppState, route: &str, request: Request, next: Next) -> Response {
    let access = access(request.method(), route);
    if access == Access::Public {
        return next.run(request).await;
    }
    let principal = match authenticate(state, &request, access) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    // Draining: what was admitted before finishes (its batch is submitted and answered),
    // nothing new is admitted.
    if route.starts_with("/v1/") && state.is_shutting_down() {
        state.metrics.reject(Rejection::ShuttingDown);
        let detail = "the server is shutting down and admits no new requests";
        return Problem::edge(EdgeCode::ShuttingDown, detail).into_response();
    }
    let _permit = if route.starts_with("/v1/") {
        match Arc::clone(&state.in_flight).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                state.metrics.reject(Rejection::InFlightLimit);
                let detail = format!(
                    "{} requests are in flight, the most this server serves at once",
                    state.config.http_requests_in_flight_max
                );
                return Problem::edge(EdgeCode::Busy, detail).into_response();
            }
        }
    } else {
        None
    };
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let limit = state.config.http_body_size_bytes_max;
    // A body trickled in slowly would hold an in-flight slot: it gets the idle timeout.
    let timeout = state.config.http_idle_timeout;
    let body = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            state.metrics.reject(Rejection::BodyTooLarge);
            let detail = format!("the body is over {limit} bytes (or was cut short)");
            return Problem::edge(EdgeCode::BodyTooLarge, detail).into_response();
        }
        Err(_) => {
            state.metrics.reject(Rejection::BadRequest);
            let detail = format!("the body did not arrive within {} ms", timeout.as_millis());
            return Problem::edge(EdgeCode::RequestTimeout, detail).into_response();
        }
    };
    let key = parts.headers.get("idempotency-key").cloned();
    let request = Request::from_parts(parts, Body::from(body.clone()));
    match key {
        None => next.run(request).await,
        Some(key) => with_idempotency(state, &principal, key, body, request, next).await,
    }
}

fn authenticate(
    state: &AppState,
    request: &Request,
    access: Access,
) -> Result<Principal, Response> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(principal) = token.and_then(|token| state.tokens.authenticate(token.as_bytes()))
    else {
        state.metrics.reject(Rejection::Unauthorized);
        let detail = "send `Authorization: Bearer <token>` with a token from `surge token`";
        return Err(Problem::edge(EdgeCode::Unauthorized, detail).into_response());
    };
    if let Access::Scope(scope) = access {
        if !principal.scopes.contains(scope) {
            state.metrics.reject(Rejection::Forbidden);
            let detail = format!(
                "this route needs the `{}` scope; the token has `{}`",
                scope.name(),
                principal.scopes
            );
            return Err(Problem::edge(EdgeCode::Forbidden, detail).into_response());
        }
    }
    Ok(principal)
}

async fn with_idempotency(
    state: &AppState,
    principal: &Principal,
    key: HeaderValue,
    body: Bytes,
    request: Request,
    next: Next,
) -> Response {
    if !idempotency::key_is_valid(key.as_bytes()) {
        state.metrics.reject(Rejection::BadRequest);
        let detail = "an Idempotency-Key is 1 to 255 visible ASCII characters";
        return Problem::edge(EdgeCode::InvalidIdempotencyKey, detail).into_response();
    }
    let key = String::from_utf8_lossy(key.as_bytes()).into_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("");
    let fingerprint = idempotency::fingerprint(request.method().as_str(), path, &body);
    let claim = match state
        .idempotency
        .begin(&principal.token_id, &key, fingerprint)
    {
        Begin::Proceed(claim) => claim,
        Begin::Replay(stored) => return replay(stored),
        Begin::Reused => {
            let detail = format!("the key {key:?} was first used with another request");
            return Problem::edge(EdgeCode::IdempotencyKeyReused, detail).into_response();
        }
        Begin::InFlight => {
            let detail = format!("the first request with the key {key:?} is still in flight");
            return Problem::edge(EdgeCode::IdempotencyKeyInFlight, detail).into_response();
        }
    };
    let response = next.run(request).await;
    if response.extensions().get::<EngineDecided>().is_none() {
        return response; // The claim drops: the key is free for a retry.
    }
    let (parts, body) = response.into_parts();
    // Our own handlers' bodies are in memory already; this cannot fail or block.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let content_type = match parts.headers.get(header::CONTENT_TYPE) {
        Some(value) if value == "application/problem+json" => "application/problem+json",
        _ => "application/json",
    };
    claim.complete(StoredResponse {
        status: parts.status.as_u16(),
        content_type,
        body: bytes.to_vec(),
    });
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stored.content_type),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_exactly_the_routes() {
        let document: serde_json::Value =
            serde_json::from_str(queries::OPENAPI_JSON).expect("docs/openapi.json is JSON");
        assert_eq!(document["openapi"], "3.0.3");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }

    #[test]
    fn every_route_has_the_right_access() {
        assert_eq!(access(&Method::GET, "/healthz"), Access::Public);
        assert_eq!(access(&Method::GET, "/readyz"), Access::Public);
        assert_eq!(access(&Method::GET, "/openapi.json"), Access::AnyToken);
        assert_eq!(access(&Method::GET, "unmatched"), Access::AnyToken);
        assert_eq!(
            access(&Method::POST, "/v1/transfers"),
            Access::Scope(Scope::Payments)
        );
        assert_eq!(
            access(&Method::GET, "/v1/transfers/{id}"),
            Access::Scope(Scope::Read)
        );
        assert_eq!(
            access(&Method::POST, "/v1/dispatch/ack"),
            Access::Scope(Scope::Dispatch)
        );
        assert_eq!(access(&Method::GET, "/metrics"), Access::Scope(Scope::Read));
        assert_eq!(
            access(&Method::HEAD, "/v1/accounts/{id}"),
            Access::Scope(Scope::Read)
        );
    }
}
