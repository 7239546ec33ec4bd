//! Read routes: lookups of accounts, transfers, SKUs and orders, an account's statement
//! from the history index, and the operational routes (`/healthz`, `/readyz`,
//! `/metrics`, `/openapi.json`). Lookups answer from the engine's memory between batches;
//! the statement and transfer lookups may read disk and run on the blocking pool.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use surge_core::{
    AccountId, OrderLookup, OrderStatus, PendingStatus, SkuId, Transfer, TransferId, TransferLookup,
};

use super::commands::parse_id;
use super::{json, AppState};
use crate::constants::{STATEMENT_PAGE_LINES_DEFAULT, STATEMENT_PAGE_LINES_MAX};
use crate::problem::{EdgeCode, Problem};

pub(super) async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let leaving = state.not_ready.load(std::sync::atomic::Ordering::Relaxed);
    if state.is_shutting_down() || leaving {
        return Problem::edge(EdgeCode::ShuttingDown, "not ready: shutting down").into_response();
    }
    json(StatusCode::OK, &serde_json::json!({ "status": "ready" }))
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let shards = crate::server::shard_figures(&state.engine);
    let mut text = state.metrics.render(state.requests_in_flight(), &shards);
    crate::metrics::render_tcp(&mut text, &state.tcp_metrics.samples());
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The OpenAPI document, as kept in `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi.json");

pub(super) async fn openapi() -> Response {
    let mut response = (StatusCode::OK, OPENAPI_JSON).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn not_found(what: &str, id: impl std::fmt::Display) -> Response {
    Problem::edge(EdgeCode::NotFound, format!("no {what} has the id {id}")).into_response()
}

pub(super) async fn account(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => AccountId(id),
        Err(response) => return response,
    };
    match state.engine.account(id) {
        Some(account) => json(StatusCode::OK, &account),
        None => not_found("account", id),
    }
}

/// A transfer lookup's answer.
#[derive(Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum TransferView {
    /// The transfer took effect.
    Committed {
        transfer: Transfer,
        #[serde(skip_serializing_if = "Option::is_none")]
        pending_status: Option<PendingStatus>,
    },
    /// The first attempt failed; the id stays failed.
    Failed { code: String, code_number: u32 },
}

pub(super) async fn transfer(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => TransferId(id),
        Err(response) => return response,
    };
    let engine = state.engine.clone();
    let lookup = tokio::task::spawn_blocking(move || engine.transfer(id)).await;
    let view = match lookup {
        Ok(Ok(Some(TransferLookup::Committed {
            transfer,
            pending_status,
        }))) => TransferView::Committed {
            transfer,
            pending_status,
        },
        Ok(Ok(Some(TransferLookup::Failed(code)))) => TransferView::Failed {
            code: code.name(),
            code_number: code.as_u32(),
        },
        Ok(Ok(None)) => return not_found("transfer", id),
        Ok(Err(error)) => {
            return Problem::edge(EdgeCode::EngineFailed, error.to_string()).into_response()
        }
        Err(error) => {
            return Problem::edge(EdgeCode::EngineFailed, error.to_string()).into_response()
        }
    };
    json(StatusCode::OK, &view)
}

pub(super) async fn sku(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let id = match id.parse::<u64>() {
        Ok(id) if valid => SkuId(id),
        _ => {
            let detail = format!("{id:?} is not a SKU id: a decimal number below 2^64");
            return Problem::edge(EdgeCode::InvalidRequest, detail).into_response();
        }
    };
    match state.engine.sku(id) {
        Some(sku) => json(StatusCode::OK, &sku),
        None => not_found("SKU", id),
    }
}

/// An order lookup's answer.
#[derive(Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum OrderAnswer {
    /// The order was placed; `status` names where it stands.
    Placed {
        status: Option<OrderStatus>,
        order: Box<surge_core::Order>,
        expires_at: u64,
        payment_transfer_id: TransferId,
        closing_transfer_id: TransferId,
    },
    /// Placing it failed; the id stays failed.
    Failed { code: String, code_number: u32 },
}

pub(super) async fn order(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => surge_core::OrderId(id),
        Err(response) => return response,
    };
    let answer = match state.engine.order(id) {
        Some(OrderLookup::Placed(view)) => OrderAnswer::Placed {
            status: OrderStatus::from_u16(view.order.status),
            order: Box::new(view.order),
            expires_at: view.expires_at,
            payment_transfer_id: view.payment_transfer_id,
            closing_transfer_id: view.closing_transfer_id,
        },
        Some(OrderLookup::Failed(code)) => OrderAnswer::Failed {
            code: code.name(),
            code_number: code.as_u32(),
        },
        None => return not_found("order", id),
    };
    json(StatusCode::OK, &answer)
}

/// `GET /v1/accounts/{id}/statement` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatementQuery {
    /// Log time (ns), inclusive; default 0.
    from: Option<u64>,
    /// Log time (ns), exclusive; default the end of time.
    to: Option<u64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Lines per page, 1..=1000; default 100.
    limit: Option<usize>,
}

pub(super) async fn statement(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<StatementQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => AccountId(id),
        Err(response) => return response,
    };
    let Ok(Query(query)) = query.map_err(|error| error.body_text()) else {
        let detail = "query parameters: from, to (ns), cursor, limit (1..=1000)";
        return Problem::edge(EdgeCode::InvalidRequest, detail).into_response();
    };
    if !state.config.history {
        let detail = "statements need the history index: start with --history true";
        return Problem::edge(EdgeCode::HistoryDisabled, detail).into_response();
    }
    super::statement::answer(&state, id, query.from, query.to, query.cursor, query.limit).await
}

/// Bounds a requested statement page size.
pub(crate) fn statement_limit(limit: Option<usize>) -> Result<usize, Response> {
    match limit.unwrap_or(STATEMENT_PAGE_LINES_DEFAULT) {
        limit @ 1..=STATEMENT_PAGE_LINES_MAX => Ok(limit),
        other => Err(Problem::edge(
            EdgeCode::InvalidRequest,
            format!("limit {other} is outside 1..={STATEMENT_PAGE_LINES_MAX}"),
        )
        .into_response()),
    }
}
