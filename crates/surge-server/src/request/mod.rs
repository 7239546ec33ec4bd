//! JSON request bodies → engine batches, without a server: [`parse_request`] is what every
//! command route calls and what the `json_requests` fuzz target feeds arbitrary bytes.
//!
//! A create route takes one object or an array of at most [`HTTP_BATCH_ITEMS_MAX`]. Fields
//! are checked for syntax and type only (unknown fields are refused, so a typo is not
//! silently ignored); whether values make sense (a zero id, an unknown account) is the
//! state machine's decision and comes back as a result code, exactly as over TCP. 128-bit
//! ids and u64 amounts are accepted as decimal strings or JSON numbers.

mod bodies;

use serde::de::DeserializeOwned;
use surge_core::{
    order_action_flags, transfer_flags, BatchBuf, OrderAction, OrderId, ResultCode, Transfer,
    TransferId,
};

use bodies::{
    AccountRequest, AckRequest, ActionRequest, KeyRequest, OrderRequest, PostRequest,
    RefundRequest, ReservationRequest, SkuRequest, TransferRequest, VoidRequest,
};

use crate::constants::HTTP_BATCH_ITEMS_MAX;
use crate::problem::EdgeCode;

/// A route that carries commands, with the ids its path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandRoute {
    /// `POST /v1/accounts`
    CreateAccounts,
    /// `POST /v1/transfers`
    CreateTransfers,
    /// `POST /v1/transfers/{pending_id}/post`
    PostTransfer(TransferId),
    /// `POST /v1/transfers/{pending_id}/void`
    VoidTransfer(TransferId),
    /// `POST /v1/skus`
    CreateSkus,
    /// `POST /v1/reservations`
    Reserve,
    /// `POST /v1/reservations/confirm`
    ConfirmReservations,
    /// `POST /v1/reservations/release`
    ReleaseReservations,
    /// `POST /v1/orders`
    PlaceOrders,
    /// `POST /v1/orders/{id}/pay`
    PayOrder(OrderId),
    /// `POST /v1/orders/{id}/cancel`
    CancelOrder(OrderId),
    /// `POST /v1/orders/{id}/refund`
    RefundOrder(OrderId),
    /// `POST /v1/dispatch/ack`
    AckDispatch,
}

impl CommandRoute {
    /// Every route, with zero path ids (for the fuzz target).
    pub const ALL: [CommandRoute; 13] = [
        CommandRoute::CreateAccounts,
        CommandRoute::CreateTransfers,
        CommandRoute::PostTransfer(TransferId(1)),
        CommandRoute::VoidTransfer(TransferId(1)),
        CommandRoute::CreateSkus,
        CommandRoute::Reserve,
        CommandRoute::ConfirmReservations,
        CommandRoute::ReleaseReservations,
        CommandRoute::PlaceOrders,
        CommandRoute::PayOrder(OrderId(1)),
        CommandRoute::CancelOrder(OrderId(1)),
        CommandRoute::RefundOrder(OrderId(1)),
        CommandRoute::AckDispatch,
    ];
}

/// A parsed request: the batch to submit, and whether the body was a single object (its
/// answer is then the one result, or a problem) rather than an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCommands {
    /// The commands.
    pub batch: BatchBuf,
    /// One object, not an array.
    pub single: bool,
}

/// Why a body is not a valid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The code: [`EdgeCode::InvalidJson`], [`EdgeCode::InvalidRequest`],
    /// [`EdgeCode::TooManyItems`], [`EdgeCode::EmptyBatch`], or a result code decided
    /// without the engine (too many order lines).
    pub code: RequestErrorCode,
    /// What is wrong, with the line and column for JSON errors.
    pub detail: String,
}

/// The code of a [`RequestError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestErrorCode {
    /// An error of the HTTP edge.
    Edge(EdgeCode),
    /// A result code of the state machine, decided from the request alone.
    Result(ResultCode),
}

fn edge(code: EdgeCode, detail: impl Into<String>) -> RequestError {
    RequestError {
        code: RequestErrorCode::Edge(code),
        detail: detail.into(),
    }
}

/// Parses the body of a command route into a batch. Never panics, whatever the bytes.
pub fn parse_request(route: CommandRoute, body: &[u8]) -> Result<ParsedCommands, RequestError> {
    use CommandRoute as R;
    let (batch, single) = match route {
        R::CreateAccounts => many(body, AccountRequest::into_record, BatchBuf::CreateAccounts)?,
        R::CreateTransfers => many(
            body,
            TransferRequest::into_record,
            BatchBuf::CreateTransfers,
        )?,
        R::PostTransfer(pending_id) => {
            let request: PostRequest = one(body)?;
            let transfer = phase_two(request.id, pending_id, request.amount.0, true);
            (BatchBuf::CreateTransfers(vec![transfer]), true)
        }
        R::VoidTransfer(pending_id) => {
            let request: VoidRequest = one(body)?;
            let transfer = phase_two(request.id, pending_id, request.amount.0, false);
            (BatchBuf::CreateTransfers(vec![transfer]), true)
        }
        R::CreateSkus => many(body, SkuRequest::into_record, BatchBuf::CreateSkus)?,
        R::Reserve => many(body, ReservationRequest::into_record, BatchBuf::Reserve)?,
        R::ConfirmReservations => {
            many(body, KeyRequest::into_record, BatchBuf::ConfirmReservations)?
        }
        R::ReleaseReservations => {
            many(body, KeyRequest::into_record, BatchBuf::ReleaseReservations)?
        }
        R::PlaceOrders => many(body, OrderRequest::into_record, BatchBuf::PlaceOrders)?,
        R::PayOrder(order_id) => (BatchBuf::PayOrders(vec![action(body, order_id)?]), true),
        R::CancelOrder(order_id) => (BatchBuf::CancelOrders(vec![action(body, order_id)?]), true),
        R::RefundOrder(order_id) => {
            let request: RefundRequest = one(body)?;
            let flags = if request.restock {
                order_action_flags::RESTOCK
            } else {
                0
            };
            let record = OrderAction {
                order_id,
                transfer_id: request.transfer_id,
                flags,
                ..Default::default()
            };
            (BatchBuf::RefundOrders(vec![record]), true)
        }
        R::AckDispatch => many(body, AckRequest::into_record, BatchBuf::AckDispatch)?,
    };
    Ok(ParsedCommands { batch, single })
}

fn json_error(error: serde_json::Error) -> RequestError {
    use serde_json::error::Category;
    let code = match error.classify() {
        Category::Data => EdgeCode::InvalidRequest,
        Category::Syntax | Category::Eof | Category::Io => EdgeCode::InvalidJson,
    };
    edge(code, error.to_string())
}

fn one<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    serde_json::from_slice(body).map_err(json_error)
}

/// One object or an array of them, each turned into a record.
fn many<T: DeserializeOwned, R>(
    body: &[u8],
    into_record: impl Fn(T) -> Result<R, RequestError>,
    into_batch: impl FnOnce(Vec<R>) -> BatchBuf,
) -> Result<(BatchBuf, bool), RequestError> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<T> = serde_json::from_slice(body).map_err(json_error)?;
        if items.is_empty() {
            return Err(edge(EdgeCode::EmptyBatch, "the array holds no command"));
        }
        if items.len() > HTTP_BATCH_ITEMS_MAX {
            return Err(edge(
                EdgeCode::TooManyItems,
                format!(
                    "{} commands is over the limit of {HTTP_BATCH_ITEMS_MAX} per request",
                    items.len()
                ),
            ));
        }
        let records = items
            .into_iter()
            .map(into_record)
            .collect::<Result<Vec<R>, _>>()?;
        Ok((into_batch(records), false))
    } else {
        let item: T = one(body)?;
        Ok((into_batch(vec![into_record(item)?]), true))
    }
}

fn action(body: &[u8], order_id: OrderId) -> Result<OrderAction, RequestError> {
    let request: ActionRequest = one(body)?;
    Ok(OrderAction {
        order_id,
        transfer_id: request.transfer_id,
        ..Default::default()
    })
}

fn phase_two(id: TransferId, pending_id: TransferId, amount: u64, post: bool) -> Transfer {
    Transfer {
        id,
        pending_id,
        amount,
        flags: if post {
            transfer_flags::POST_PENDING
        } else {
            transfer_flags::VOID_PENDING
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_core::account_flags;

    fn code_of(result: Result<ParsedCommands, RequestError>) -> RequestErrorCode {
        result.unwrap_err().code
    }

    #[test]
    fn one_object_or_an_array() {
        let one = parse_request(
            CommandRoute::CreateTransfers,
            br#"{"id":"7","debit_account_id":1,"credit_account_id":"2","amount":"10",
                "ledger":1,"code":1,"pending":true,"timeout_ns":5}"#,
        )
        .unwrap();
        assert!(one.single);
        let BatchBuf::CreateTransfers(transfers) = one.batch else {
            panic!("not transfers")
        };
        assert_eq!(transfers[0].id, TransferId(7));
        assert_eq!(transfers[0].amount, 10);
        assert_eq!(transfers[0].flags, transfer_flags::PENDING);

        let many = parse_request(
            CommandRoute::CreateAccounts,
            br#" [{"id":"1","ledger":1,"code":1},{"id":"2","ledger":1,"code":1,
                  "debits_must_not_exceed_credits":true}]"#,
        )
        .unwrap();
        assert!(!many.single);
        let BatchBuf::CreateAccounts(accounts) = many.batch else {
            panic!("not accounts")
        };
        assert_eq!(
            accounts[1].flags,
            account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
        );
    }

    #[test]
    fn bad_bodies_get_edge_codes() {
        let route = CommandRoute::CreateAccounts;
        let edge = |code| RequestErrorCode::Edge(code);
        assert_eq!(
            code_of(parse_request(route, b"{")),
            edge(EdgeCode::InvalidJson)
        );
        assert_eq!(
            code_of(parse_request(route, b"")),
            edge(EdgeCode::InvalidJson)
        );
        assert_eq!(
            code_of(parse_request(route, br#"{"id":"1","ledger":"x","code":1}"#)),
            edge(EdgeCode::InvalidRequest)
        );
        assert_eq!(
            code_of(parse_request(route, br#"{"ledger":1,"code":1}"#)),
            edge(EdgeCode::InvalidRequest)
        );
        assert_eq!(
            code_of(parse_request(
                route,
                br#"{"id":"1","ledger":1,"code":1,"x":0}"#
            )),
            edge(EdgeCode::InvalidRequest)
        );
        assert_eq!(
            code_of(parse_request(route, b"[]")),
            edge(EdgeCode::EmptyBatch)
        );
        let too_many = format!(
            "[{}]",
            vec![r#"{"id":"1","ledger":1,"code":1}"#; HTTP_BATCH_ITEMS_MAX + 1].join(",")
        );
        assert_eq!(
            code_of(parse_request(route, too_many.as_bytes())),
            edge(EdgeCode::TooManyItems)
        );
    }

    #[test]
    fn nine_order_lines_are_order_lines_invalid() {
        let lines = [r#"{"sku_id":1,"quantity":1}"#; 9].join(",");
        let body = format!(
            r#"{{"id":"1","buyer_id":"2","merchant_id":"3","transfer_id":"4","amount":5,
                "timeout_ns":6,"ledger":1,"lines":[{lines}]}}"#
        );
        assert_eq!(
            code_of(parse_request(CommandRoute::PlaceOrders, body.as_bytes())),
            RequestErrorCode::Result(ResultCode::OrderLinesInvalid)
        );
    }

    #[test]
    fn path_ids_fill_order_actions_and_phase_two() {
        let parsed = parse_request(
            CommandRoute::RefundOrder(OrderId(9)),
            br#"{"transfer_id":"3",
                "restock":true}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.batch,
            BatchBuf::RefundOrders(vec![OrderAction {
                order_id: OrderId(9),
                transfer_id: TransferId(3),
                flags: order_action_flags::RESTOCK,
                ..Default::default()
            }])
        );
        let parsed =
            parse_request(CommandRoute::VoidTransfer(TransferId(5)), br#"{"id":"6"}"#).unwrap();
        let BatchBuf::CreateTransfers(transfers) = parsed.batch else {
            panic!("not transfers")
        };
        assert_eq!(transfers[0].pending_id, TransferId(5));
        assert_eq!(transfers[0].flags, transfer_flags::VOID_PENDING);
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: [&[u8]; 6] = [
            b"\xff\xfe",
            b"[[[[",
            b"{\"id\":1e999}",
            b"null",
            b"[null]",
            b"7",
        ];
        for route in CommandRoute::ALL {
            for input in inputs {
                assert!(parse_request(route, input).is_err());
            }
        }
    }
}
