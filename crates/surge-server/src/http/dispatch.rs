//! `GET /v1/dispatch`: the logistics feed, read from a cursor, with long-poll. With
//! `wait_ms`, an empty read waits (at most [`DISPATCH_WAIT_MS_MAX`]) until requests appear:
//! woken at once by a payment through this server's HTTP API, and otherwise looking again
//! every [`DISPATCH_POLL_INTERVAL_MS`] (payments over TCP and redeliveries show up there).
//! A shutdown ends the wait with an empty page. Acknowledging is a command
//! (`POST /v1/dispatch/ack`).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use surge_core::DispatchRequest;
use surge_engine::DispatchCursor;

use super::{json, AppState};
use crate::constants::{
    DISPATCH_PAGE_REQUESTS_DEFAULT, DISPATCH_PAGE_REQUESTS_MAX, DISPATCH_POLL_INTERVAL_MS,
    DISPATCH_WAIT_MS_MAX,
};
use crate::problem::{EdgeCode, Problem};

/// The feed's query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
    /// `cursor` of the previous page; empty or absent to start at the beginning.
    cursor: Option<String>,
    /// Requests per page, 1..=1000; default 100.
    limit: Option<usize>,
    /// Milliseconds to wait for requests when there are none; default 0, at most 30,000.
    wait_ms: Option<u64>,
}

#[derive(Serialize)]
struct FeedPage {
    requests: Vec<DispatchRequest>,
    /// Pass back as `cursor`.
    cursor: String,
}

fn bad(detail: String) -> Response {
    Problem::edge(EdgeCode::InvalidRequest, detail).into_response()
}

pub(super) async fn feed(
    State(state): State<AppState>,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad("query parameters: cursor, limit (1..=1000), wait_ms (0..=30000)".into());
    };
    let limit = query.limit.unwrap_or(DISPATCH_PAGE_REQUESTS_DEFAULT);
    if !(1..=DISPATCH_PAGE_REQUESTS_MAX).contains(&limit) {
        return bad(format!(
            "limit {limit} is outside 1..={DISPATCH_PAGE_REQUESTS_MAX}"
        ));
    }
    let wait_ms = query.wait_ms.unwrap_or(0);
    if wait_ms > DISPATCH_WAIT_MS_MAX {
        return bad(format!("wait_ms {wait_ms} is over {DISPATCH_WAIT_MS_MAX}"));
    }
    let cursor: DispatchCursor = match query.cursor.as_deref().unwrap_or("").parse() {
        Ok(cursor) => cursor,
        Err(error) => return bad(error.to_string()),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut shutdown = state.shutdown.clone();
    loop {
        // Registered before reading, so a payment completing in between still wakes us.
        let woken = state.dispatch_ready.notified();
        let (requests, next) = match state.engine.dispatch_feed(&cursor, limit) {
            Ok(page) => page,
            Err(error) => return bad(error.to_string()),
        };
        let now = tokio::time::Instant::now();
        if !requests.is_empty() || now >= deadline || state.is_shutting_down() {
            let page = FeedPage {
                requests,
                cursor: next.to_string(),
            };
            return json(StatusCode::OK, &page);
        }
        let poll = (now + Duration::from_millis(DISPATCH_POLL_INTERVAL_MS)).min(deadline);
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(poll) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}
