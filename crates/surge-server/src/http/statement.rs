//! `GET /v1/accounts/{id}/statement`: the transfers that moved an account in a range of
//! log time, each with the account's balances right after it, one page at a time from the
//! history index. The cursor is `<timestamp>.<transfer id>` of the page's last line.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use surge_core::{AccountId, LogPosition, Transfer, TransferId};
use surge_engine::EngineError;
use surge_history::{StatementCursor, StatementLine};

use super::queries::statement_limit;
use super::{json, AppState};
use crate::problem::{EdgeCode, Problem};

#[derive(Serialize)]
struct Balances {
    debits_pending: u64,
    debits_posted: u64,
    credits_pending: u64,
    credits_posted: u64,
    /// `credits_posted - debits_posted`, as a decimal string (it may be negative and
    /// exceed 2^53).
    net_posted: String,
}

#[derive(Serialize)]
struct Line {
    timestamp: u64,
    transfer_id: TransferId,
    /// `debit` or `credit`: which side of the transfer the account was on.
    side: &'static str,
    amount: u64,
    position: LogPosition,
    transfer: Transfer,
    balances_after: Balances,
}

#[derive(Serialize)]
struct Page {
    account_id: AccountId,
    lines: Vec<Line>,
    /// Pass as `cursor` for the next page; `null` when the range is exhausted.
    next_cursor: Option<String>,
}

fn parse_cursor(text: &str) -> Option<StatementCursor> {
    let (timestamp, transfer_id) = text.split_once('.')?;
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(timestamp) || !digits(transfer_id) {
        return None;
    }
    Some(StatementCursor {
        timestamp: timestamp.parse().ok()?,
        transfer_id: TransferId(transfer_id.parse().ok()?),
    })
}

fn line(account_id: AccountId, line: StatementLine) -> Line {
    let balances = line.balances_after;
    let net = i128::from(balances.credits_posted) - i128::from(balances.debits_posted);
    let side = if line.transfer.debit_account_id == account_id {
        "debit"
    } else {
        "credit"
    };
    Line {
        timestamp: line.transfer.timestamp,
        transfer_id: line.transfer.id,
        side,
        amount: line.transfer.amount,
        position: line.position,
        transfer: line.transfer,
        balances_after: Balances {
            debits_pending: balances.debits_pending,
            debits_posted: balances.debits_posted,
            credits_pending: balances.credits_pending,
            credits_posted: balances.credits_posted,
            net_posted: net.to_string(),
        },
    }
}

/// One page of `account_id`'s statement.
pub(super) async fn answer(
    state: &AppState,
    account_id: AccountId,
    from: Option<u64>,
    to: Option<u64>,
    cursor: Option<String>,
    limit: Option<usize>,
) -> Response {
    let limit = match statement_limit(limit) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let after = match cursor.as_deref() {
        None | Some("") => None,
        Some(text) => match parse_cursor(text) {
            Some(cursor) => Some(cursor),
            None => {
                let detail = format!("{text:?} is not a statement cursor");
                return Problem::edge(EdgeCode::InvalidRequest, detail).into_response();
            }
        },
    };
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    let engine = state.engine.clone();
    let page =
        tokio::task::spawn_blocking(move || engine.statement(account_id, from, to, after, limit))
            .await;
    let page = match page {
        Ok(Ok(page)) => page,
        Ok(Err(EngineError::HistoryDisabled)) => {
            let detail = "statements need the history index";
            return Problem::edge(EdgeCode::HistoryDisabled, detail).into_response();
        }
        Ok(Err(error)) => {
            return Problem::edge(EdgeCode::EngineFailed, error.to_string()).into_response()
        }
        Err(error) => {
            return Problem::edge(EdgeCode::EngineFailed, error.to_string()).into_response()
        }
    };
    let next_cursor = page
        .next
        .map(|next| format!("{}.{}", next.timestamp, next.transfer_id));
    let lines = page
        .lines
        .into_iter()
        .map(|entry| line(account_id, entry))
        .collect();
    json(
        StatusCode::OK,
        &Page {
            account_id,
            lines,
            next_cursor,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_strictly() {
        let cursor = parse_cursor("12.34").unwrap();
        assert_eq!((cursor.timestamp, cursor.transfer_id), (12, TransferId(34)));
        for bad in ["", ".", "1.", ".1", "a.1", "1.2.3", "-1.2", "1.+2"] {
            assert!(parse_cursor(bad).is_none(), "{bad}");
        }
    }
}
