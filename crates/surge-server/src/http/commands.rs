//! Command routes: JSON body → [`parse_request`] → one engine batch → the codes.
//!
//! One object answers with its one result: `201` for `ok`, `200` for `exists` (a retry),
//! or a problem (`422` for a malformed command, `409` for a state conflict). An array
//! answers `200` with one result per command, in order. Every answer is given only after
//! the batch is durable (fdatasync) and applied.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use surge_core::{BatchBuf, OrderId, ResultCode, TransferId};
use tokio::sync::oneshot;

use super::{json, AppState, EngineDecided};
use crate::coalesce::{Coalescer, Refusal};
use crate::metrics::Rejection;
use crate::problem::{EdgeCode, Problem};
use crate::request::{parse_request, CommandRoute, RequestErrorCode};

/// One command's result.
#[derive(Serialize)]
struct CommandResult {
    index: usize,
    id: String,
    code: String,
    code_number: u32,
}

#[derive(Serialize)]
struct BatchResults {
    results: Vec<CommandResult>,
}

pub(super) async fn create_accounts(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::CreateAccounts, &body).await
}

pub(super) async fn create_transfers(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::CreateTransfers, &body).await
}

pub(super) async fn post_transfer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_id(&id) {
        Ok(id) => execute(&state, CommandRoute::PostTransfer(TransferId(id)), &body).await,
        Err(response) => response,
    }
}

pub(super) async fn void_transfer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_id(&id) {
        Ok(id) => execute(&state, CommandRoute::VoidTransfer(TransferId(id)), &body).await,
        Err(response) => response,
    }
}

pub(super) async fn create_skus(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::CreateSkus, &body).await
}

pub(super) async fn reserve(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::Reserve, &body).await
}

pub(super) async fn confirm_reservations(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::ConfirmReservations, &body).await
}

pub(super) async fn release_reservations(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::ReleaseReservations, &body).await
}

pub(super) async fn place_orders(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::PlaceOrders, &body).await
}

pub(super) async fn pay_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_id(&id) {
        Ok(id) => execute(&state, CommandRoute::PayOrder(OrderId(id)), &body).await,
        Err(response) => response,
    }
}

pub(super) async fn cancel_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_id(&id) {
        Ok(id) => execute(&state, CommandRoute::CancelOrder(OrderId(id)), &body).await,
        Err(response) => response,
    }
}

pub(super) async fn refund_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_id(&id) {
        Ok(id) => execute(&state, CommandRoute::RefundOrder(OrderId(id)), &body).await,
        Err(response) => response,
    }
}

pub(super) async fn ack_dispatch(State(state): State<AppState>, body: Bytes) -> Response {
    execute(&state, CommandRoute::AckDispatch, &body).await
}

/// A 128-bit id from a path segment: decimal digits only.
pub(super) fn parse_id(text: &str) -> Result<u128, Response> {
    let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u128>() {
        Ok(id) if valid => Ok(id),
        _ => Err(Problem::edge(
            EdgeCode::InvalidRequest,
            format!("{text:?} is not an id: a decimal number below 2^128"),
        )
        .into_response()),
    }
}

async fn execute(state: &AppState, route: CommandRoute, body: &[u8]) -> Response {
    let parsed = match parse_request(route, body) {
        Ok(parsed) => parsed,
        Err(error) => {
            state.metrics.reject(Rejection::BadRequest);
            return match error.code {
                RequestErrorCode::Edge(code) => Problem::edge(code, error.detail),
                RequestErrorCode::Result(code) => {
                    Problem::result_with_detail(code, None, error.detail)
                }
            }
            .into_response();
        }
    };
    let submitted = if Coalescer::accepts(&parsed.batch) {
        submit_coalesced(state, &parsed.batch)
            .await
            .map(|code| vec![code])
    } else {
        submit(state, &parsed.batch).await
    };
    let codes = match submitted {
        Ok(codes) => codes,
        Err(response) => return response,
    };
    if matches!(parsed.batch, BatchBuf::PayOrders(_)) && codes.contains(&ResultCode::Ok) {
        state.dispatch_ready.notify_waiters();
    }
    let ids = item_ids(&parsed.batch);
    let mut response = if parsed.single {
        single_response(codes[0], ids.into_iter().next().unwrap_or_default())
    } else {
        let results = ids
            .into_iter()
            .zip(&codes)
            .enumerate()
            .map(|(index, (id, code))| CommandResult {
                index,
                id,
                code: code.name(),
                code_number: code.as_u32(),
            })
            .collect();
        json(StatusCode::OK, &BatchResults { results })
    };
    if is_final(&codes) {
        response.extensions_mut().insert(EngineDecided);
    }
    response
}

/// Whether an answer with `codes` is final, so that its `Idempotency-Key` remembers it:
/// not if any command may succeed when retried (`busy`, a step still travelling between
/// shards), or a retry with the same key would get the stale refusal back.
fn is_final(codes: &[ResultCode]) -> bool {
    !codes.iter().any(|code| code.is_transient())
}

fn single_response(code: ResultCode, id: String) -> Response {
    let status = match code {
        ResultCode::Ok => StatusCode::CREATED,
        ResultCode::Exists => StatusCode::OK,
        _ if code.is_transient() => {
            let mut response = Problem::result(code, Some(id)).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        _ => return Problem::result(code, Some(id)).into_response(),
    };
    let result = CommandResult {
        index: 0,
        id,
        code: code.name(),
        code_number: code.as_u32(),
    };
    json(status, &result)
}

/// Hands the batch to the engine and waits (without blocking a thread) until it is
/// durable and applied. A full queue is 429 at once.
async fn submit(state: &AppState, batch: &BatchBuf) -> Result<Vec<ResultCode>, Response> {
    let (sender, receiver) = oneshot::channel();
    let done = Box::new(move |result| {
        // The receiver is gone only if the client went away; the batch stands anyway.
        let _ = sender.send(result);
    });
    if let Err(error) = state.engine.submit(batch.as_batch(), done) {
        if error.is_busy() {
            state.metrics.reject(Rejection::EngineBusy);
            let detail = format!("the engine's queue is full: {error}");
            return Err(Problem::edge(EdgeCode::Busy, detail).into_response());
        }
        return Err(engine_failed(state, &error.to_string()));
    }
    match receiver.await {
        Ok(Ok(codes)) if codes.len() == batch.as_batch().len() => Ok(codes),
        Ok(Ok(codes)) => Err(engine_failed(
            state,
            &format!(
                "{} codes for {} commands",
                codes.len(),
                batch.as_batch().len()
            ),
        )),
        Ok(Err(error)) => Err(engine_failed(state, &error.to_string())),
        Err(_) => Err(engine_failed(state, "the engine dropped the batch")),
    }
}

/// [`submit`] for one command that shares its engine batch with other requests'
/// commands (see [`crate::coalesce`]).
async fn submit_coalesced(state: &AppState, batch: &BatchBuf) -> Result<ResultCode, Response> {
    match state.coalescer.submit(batch).await {
        Ok(code) => Ok(code),
        Err(Refusal::Busy(reason)) => {
            state.metrics.reject(Rejection::EngineBusy);
            let detail = format!("the engine's queue is full: {reason}");
            Err(Problem::edge(EdgeCode::Busy, detail).into_response())
        }
        Err(Refusal::Failed(reason)) => Err(engine_failed(state, &reason)),
    }
}

/// A command the engine failed: answered `500 engine_failed`, and reported, so the server
/// stops (see [`crate::engine_failure`]).
fn engine_failed(state: &AppState, detail: &str) -> Response {
    state.engine_failure.report(detail);
    Problem::edge(EdgeCode::EngineFailed, detail).into_response()
}

/// The key of each command, as its result names it.
fn item_ids(batch: &BatchBuf) -> Vec<String> {
    match batch {
        BatchBuf::CreateAccounts(r) => r.iter().map(|a| a.id.to_string()).collect(),
        BatchBuf::CreateTransfers(r) => r.iter().map(|t| t.id.to_string()).collect(),
        BatchBuf::CreateSkus(r) => r.iter().map(|s| s.id.to_string()).collect(),
        BatchBuf::Reserve(r) => r
            .iter()
            .map(|v| format!("{}/{}", v.order_id, v.sku_id))
            .collect(),
        BatchBuf::ConfirmReservations(r) | BatchBuf::ReleaseReservations(r) => r
            .iter()
            .map(|k| format!("{}/{}", k.order_id, k.sku_id))
            .collect(),
        BatchBuf::PlaceOrders(r) => r.iter().map(|o| o.id.to_string()).collect(),
        BatchBuf::PayOrders(r) | BatchBuf::CancelOrders(r) | BatchBuf::RefundOrders(r) => {
            r.iter().map(|a| a.transfer_id.to_string()).collect()
        }
        BatchBuf::AckDispatch(r) => r.iter().map(|a| a.dispatch_id.to_string()).collect(),
        // The engine's own operations (pulses, cross-shard legs) never come from a request.
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_refusals_are_not_remembered_under_an_idempotency_key() {
        assert!(is_final(&[ResultCode::Ok, ResultCode::ExceedsCredits]));
        assert!(is_final(&[ResultCode::IdAlreadyFailed]));
        for transient in [
            ResultCode::Busy,
            ResultCode::PendingTransferInFlight,
            ResultCode::OrderInFlight,
        ] {
            assert!(!is_final(&[ResultCode::Ok, transient]));
            let response = single_response(transient, "7".to_string());
            let overload = transient == ResultCode::Busy;
            let status = if overload {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::CONFLICT
            };
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers().get(header::RETRY_AFTER),
                Some(&HeaderValue::from_static("1"))
            );
        }
    }
}
