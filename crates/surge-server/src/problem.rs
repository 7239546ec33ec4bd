//! Errors as `application/problem+json` (RFC 9457), always carrying a code: a state
//! machine [`ResultCode`] (numbers below 9000, `docs/RESULT_CODES.md`) or an [`EdgeCode`]
//! of the HTTP edge (9000..9099, `docs/API.md`), never a free-form string alone.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use surge_core::ResultCode;

use crate::constants::RETRY_AFTER_S;

macro_rules! edge_codes {
    ($($(#[$doc:meta])* $name:ident = $number:literal, $status:literal, $title:literal;)*) => {
        /// A code of the HTTP edge: the request never reached the state machine (or asked
        /// for something it does not hold). Stable numbers, 9000..9099.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EdgeCode {
            $($(#[$doc])* $name,)*
        }

        impl EdgeCode {
            /// Every edge code, in numeric order.
            pub const ALL: &'static [EdgeCode] = &[$(EdgeCode::$name,)*];

            /// The stable number.
            pub const fn number(self) -> u32 {
                match self { $(EdgeCode::$name => $number,)* }
            }

            /// The HTTP status it is answered with.
            pub const fn status(self) -> u16 {
                match self { $(EdgeCode::$name => $status,)* }
            }

            /// A one-line title.
            pub const fn title(self) -> &'static str {
                match self { $(EdgeCode::$name => $title,)* }
            }
        }
    };
}

edge_codes! {
    /// No `Authorization: Bearer` header, or a token the server does not know.
    Unauthorized = 9000, 401, "A valid bearer token is required.";
    /// The token is valid but lacks the route's scope.
    Forbidden = 9001, 403, "The token lacks the scope this route needs.";
    /// The body is not JSON (syntax error or truncated).
    InvalidJson = 9002, 400, "The body is not valid JSON.";
    /// The JSON has a missing or unknown field, a value of the wrong type or out of range,
    /// or a query parameter or path id does not parse.
    InvalidRequest = 9003, 422, "The request has a missing, unknown or mistyped field.";
    /// The body is larger than `http_body_size_bytes_max`.
    BodyTooLarge = 9004, 413, "The body is larger than the server accepts.";
    /// An array body holds more commands than one batch (8,190).
    TooManyItems = 9005, 413, "Too many commands in one request.";
    /// An array body holds no command.
    EmptyBatch = 9006, 422, "The array holds no command.";
    /// No record has this id, or no route has this path.
    NotFound = 9007, 404, "Not found.";
    /// Over the in-flight limit, or the engine's queue is full: retry after `Retry-After`.
    Busy = 9008, 429, "The server is at its limit; retry later.";
    /// The `Idempotency-Key` was used with a different method, path or body.
    IdempotencyKeyReused = 9009, 422, "The Idempotency-Key was used for another request.";
    /// A request with this `Idempotency-Key` is still being served.
    IdempotencyKeyInFlight = 9010, 409, "A request with this Idempotency-Key is in flight.";
    /// The `Idempotency-Key` header is empty, too long or not visible ASCII.
    InvalidIdempotencyKey = 9011, 400, "The Idempotency-Key header is malformed.";
    /// The route exists but not with this method.
    MethodNotAllowed = 9012, 405, "The route does not take this method.";
    /// The server runs without the history index, which statements need.
    HistoryDisabled = 9013, 501, "The server runs without the history index.";
    /// The server is shutting down.
    ShuttingDown = 9014, 503, "The server is shutting down.";
    /// The engine failed: the log stopped (the server then drains and exits non-zero), or
    /// a lookup could not read a record (the server goes on).
    EngineFailed = 9015, 500, "The engine failed.";
    /// The body did not arrive within `http_idle_timeout_ms`.
    RequestTimeout = 9016, 408, "The request body did not arrive in time.";
}

impl EdgeCode {
    /// The snake_case name, as in the `code` member.
    pub fn name(self) -> String {
        snake_case(&format!("{self:?}"))
    }
}

fn snake_case(camel: &str) -> String {
    let mut name = String::with_capacity(camel.len() + 8);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if index > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// The HTTP status of a command that failed with `code` and was the only command of its
/// request: 422 for what the command alone decides (a malformed command), 409 for what the
/// state decides (insufficient funds, sold out, an id used before).
pub fn result_code_status(code: ResultCode) -> u16 {
    use ResultCode as C;
    match code {
        C::Ok | C::Exists => 200,
        C::TimestampMustBeZero
        | C::ReservedFieldNotZero
        | C::ReservedFlag
        | C::IdMustNotBeZero
        | C::FlagsAreMutuallyExclusive
        | C::LinkedEventChainOpen
        | C::LedgerMustNotBeZero
        | C::CodeMustNotBeZero
        | C::BalancesMustBeZero
        | C::AccountsMustBeDifferent
        | C::DebitAccountIdMustNotBeZero
        | C::CreditAccountIdMustNotBeZero
        | C::AmountMustNotBeZero
        | C::PendingIdMustBeZero
        | C::PendingIdMustNotBeZero
        | C::PendingIdMustBeDifferent
        | C::TimeoutReservedForPendingTransfer
        | C::CodeReserved
        | C::QuantityMustNotBeZero
        | C::BuyerIdMustNotBeZero
        | C::UnitCountersMustBeZero
        | C::TimeoutMustNotBeZero
        | C::SkuIdMustNotBeZero
        | C::OrderLinesInvalid
        | C::DuplicateSkuInOrder
        | C::BuyerMustNotBeMerchant => 422,
        // A shard's queue was full for this command: overload, as the edge's `busy`.
        C::Busy => 429,
        _ => 409,
    }
}

/// A problem document.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// `urn:surge:code:<name>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the code means.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened here, or what to do.
    pub detail: String,
    /// The code's snake_case name.
    pub code: String,
    /// The code's stable number.
    pub code_number: u32,
    /// The id of the command that failed, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Problem {
    /// A problem of the HTTP edge.
    pub fn edge(code: EdgeCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:surge:code:{}", code.name()),
            title: code.title().to_string(),
            status: code.status(),
            detail: detail.into(),
            code: code.name(),
            code_number: code.number(),
            id: None,
        }
    }

    /// A command that failed with a result code.
    pub fn result(code: ResultCode, id: Option<String>) -> Problem {
        Problem::result_with_detail(code, id, code.action().to_string())
    }

    /// A result code, with a detail of our own.
    pub fn result_with_detail(code: ResultCode, id: Option<String>, detail: String) -> Problem {
        Problem {
            kind: format!("urn:surge:code:{}", code.name()),
            title: code.meaning().to_string(),
            status: result_code_status(code),
            detail,
            code: code.name(),
            code_number: code.as_u32(),
            id,
        }
    }

    /// The body bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, self.to_bytes()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_codes_are_numbered_in_their_range_and_named() {
        for (index, code) in EdgeCode::ALL.iter().enumerate() {
            assert_eq!(
                code.number(),
                9000 + index as u32,
                "{code:?}: numbers are dense"
            );
            assert!(ResultCode::from_u32(code.number()).is_none());
        }
        assert_eq!(
            EdgeCode::IdempotencyKeyReused.name(),
            "idempotency_key_reused"
        );
    }

    #[test]
    fn statuses_split_malformed_commands_from_state_conflicts() {
        assert_eq!(result_code_status(ResultCode::AmountMustNotBeZero), 422);
        assert_eq!(result_code_status(ResultCode::ExceedsCredits), 409);
        assert_eq!(result_code_status(ResultCode::SoldOut), 409);
        assert_eq!(result_code_status(ResultCode::Exists), 200);
    }
}
