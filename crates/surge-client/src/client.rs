//! The client handle: one method per operation, each returning one result code per
//! command, and one per lookup operation, each returning one answer per id. Cheap to
//! clone; every clone shares one connection and one driver task.

use std::time::Duration;

use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{account_flags, transfer_flags, Account, AccountId, Batch, DispatchAck};
use surge_core::{
    compact_form, Order, OrderAction, OrderId, OrderLookup, Reservation, ReservationKey,
};
use surge_core::{ResultCode, Sku, SkuId, Transfer, TransferId, TransferLookup};
use surge_protocol::constants::LOOKUP_IDS_MAX;
use surge_protocol::{ErrorCode, LookupEntry, LookupOperation, Scopes};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::batcher::{Call, Submission};
use crate::caller::Caller;
use crate::config::ClientConfig;
use crate::connection::{self, ConnectError};
use crate::constants::CALLS_QUEUED_MAX;
use crate::driver::Driver;
use crate::error::ClientError;
use crate::lookup::{self, LookupCall};

/// A connection to a Surge server that batches the calls of many tasks into few requests.
/// Clone it freely; the driver task ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    calls: mpsc::Sender<Submission>,
    call_timeout: Duration,
}

/// Whether the batch's last command asks to be linked to a next one.
fn chain_open(batch: &Batch<'_>) -> bool {
    match batch {
        Batch::CreateAccounts(accounts) => accounts
            .last()
            .is_some_and(|account| account.flags & account_flags::LINKED != 0),
        Batch::CreateTransfers(transfers) => transfers
            .last()
            .is_some_and(|transfer| transfer.flags & transfer_flags::LINKED != 0),
        _ => false,
    }
}

impl Client {
    /// Connects to `address` (`host:port`) and handshakes. Later connection losses are
    /// repaired by the driver; this first attempt reports its failure.
    pub async fn connect(address: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let connection =
            connection::connect(address, &config)
                .await
                .map_err(|error| match error {
                    ConnectError::Refused(code) => ClientError::Handshake(code),
                    ConnectError::Failed(reason) => ClientError::Connect(reason),
                })?;
        let (calls, receiver) = mpsc::channel(CALLS_QUEUED_MAX);
        let call_timeout = config.call_timeout;
        let driver = Driver::new(address.to_string(), config, receiver, connection);
        tokio::spawn(driver.run());
        Ok(Client {
            calls,
            call_timeout,
        })
    }

    /// Submits `batch` and waits for its codes, retrying (same ids) until `deadline`.
    pub async fn submit_until(
        &self,
        batch: Batch<'_>,
        deadline: Instant,
    ) -> Result<Vec<ResultCode>, ClientError> {
        let operation = batch.operation();
        if Scopes::required_for(operation).is_none() {
            return Err(ClientError::Rejected(ErrorCode::OperationNotAllowed));
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if batch.len() > BATCH_EVENTS_MAX {
            return Err(ClientError::TooManyCommands {
                count: batch.len(),
                max: BATCH_EVENTS_MAX,
            });
        }
        let (reply, answer) = oneshot::channel();
        // One-line orders travel compact: the same commands in half the bytes.
        let (operation, body) = compact_form(operation, batch.body().into());
        let call = Call {
            operation,
            count: u32::try_from(batch.len()).expect("at most BATCH_EVENTS_MAX"),
            body,
            chain_open: chain_open(&batch),
            caller: Caller::new(deadline, Some(reply)),
            earlier: None,
        };
        self.calls
            .send(Submission::Commands(call))
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Looks `ids` up (all of `operation`'s kind; SKU ids must fit 64 bits) and waits for
    /// one answer per id, in order: the entry found, or `None`. Needs the `read` scope.
    /// Retried after `busy` or a lost connection until `deadline`, like commands (a lookup
    /// changes nothing, so a retry is always safe).
    pub async fn lookup_until(
        &self,
        operation: LookupOperation,
        ids: &[u128],
        deadline: Instant,
    ) -> Result<Vec<Option<LookupEntry>>, ClientError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() > LOOKUP_IDS_MAX {
            return Err(ClientError::TooManyIds {
                count: ids.len(),
                max: LOOKUP_IDS_MAX,
            });
        }
        let (reply, answer) = oneshot::channel();
        let call = LookupCall {
            operation,
            count: u32::try_from(ids.len()).expect("at most LOOKUP_IDS_MAX"),
            ids: lookup::ids_body(operation, ids),
            caller: Caller::new(deadline, Some(reply)),
        };
        self.calls
            .send(Submission::Lookup(call))
            .await
            .map_err(|_| ClientError::Closed)?;
        let found = answer.await.unwrap_or(Err(ClientError::Closed))?;
        lookup::match_ids(operation, ids, &found)
    }

    /// [`Client::lookup_until`] with the configured call timeout.
    async fn lookup(
        &self,
        operation: LookupOperation,
        ids: &[u128],
    ) -> Result<Vec<Option<LookupEntry>>, ClientError> {
        self.lookup_until(operation, ids, Instant::now() + self.call_timeout)
            .await
    }

    /// Reads accounts (lookup operation 1): one answer per id, `None` if no account has it.
    pub async fn lookup_accounts(
        &self,
        ids: &[AccountId],
    ) -> Result<Vec<Option<Account>>, ClientError> {
        let ids: Vec<u128> = ids.iter().map(|id| id.0).collect();
        let entries = self.lookup(LookupOperation::Accounts, &ids).await?;
        typed(entries, |entry| match entry {
            LookupEntry::Account(account) => Some(account),
            _ => None,
        })
    }

    /// Reads transfers (lookup operation 2): committed (with the transfer as applied and,
    /// for a pending one, where it stands) or failed (the code its id failed with), or
    /// `None` if no transfer has the id.
    pub async fn lookup_transfers(
        &self,
        ids: &[TransferId],
    ) -> Result<Vec<Option<TransferLookup>>, ClientError> {
        let ids: Vec<u128> = ids.iter().map(|id| id.0).collect();
        let entries = self.lookup(LookupOperation::Transfers, &ids).await?;
        typed(entries, |entry| match entry {
            LookupEntry::Transfer { lookup, .. } => Some(lookup),
            _ => None,
        })
    }

    /// Reads SKUs (lookup operation 3) with their unit counters, `None` for unknown ids.
    pub async fn lookup_skus(&self, ids: &[SkuId]) -> Result<Vec<Option<Sku>>, ClientError> {
        let ids: Vec<u128> = ids.iter().map(|id| u128::from(id.0)).collect();
        let entries = self.lookup(LookupOperation::Skus, &ids).await?;
        typed(entries, |entry| match entry {
            LookupEntry::Sku(sku) => Some(sku),
            _ => None,
        })
    }

    /// Reads orders (lookup operation 4): placed (the order with its status, expiry and
    /// settling transfers) or failed, or `None` if no order has the id.
    pub async fn lookup_orders(
        &self,
        ids: &[OrderId],
    ) -> Result<Vec<Option<OrderLookup>>, ClientError> {
        let ids: Vec<u128> = ids.iter().map(|id| id.0).collect();
        let entries = self.lookup(LookupOperation::Orders, &ids).await?;
        typed(entries, |entry| match entry {
            LookupEntry::Order { lookup, .. } => Some(lookup),
            _ => None,
        })
    }

    /// Submits `batch` with the configured call timeout.
    pub async fn submit(&self, batch: Batch<'_>) -> Result<Vec<ResultCode>, ClientError> {
        self.submit_until(batch, Instant::now() + self.call_timeout)
            .await
    }

    /// Creates accounts (operation 1).
    pub async fn create_accounts(
        &self,
        accounts: &[Account],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::CreateAccounts(accounts)).await
    }

    /// Creates transfers: single-phase, pending, post or void (operation 2).
    pub async fn create_transfers(
        &self,
        transfers: &[Transfer],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::CreateTransfers(transfers)).await
    }

    /// Creates SKUs (operation 3).
    pub async fn create_skus(&self, skus: &[Sku]) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::CreateSkus(skus)).await
    }

    /// Reserves units directly (operation 4).
    pub async fn reserve(
        &self,
        reservations: &[Reservation],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::Reserve(reservations)).await
    }

    /// Confirms direct reservations (operation 5).
    pub async fn confirm_reservations(
        &self,
        keys: &[ReservationKey],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::ConfirmReservations(keys)).await
    }

    /// Releases direct reservations (operation 6).
    pub async fn release_reservations(
        &self,
        keys: &[ReservationKey],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::ReleaseReservations(keys)).await
    }

    /// Places orders (operation 7; sent as operation 19, in half the bytes, when every
    /// order has one line, as every `submit` of such a batch: the same commands).
    pub async fn place_orders(&self, orders: &[Order]) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::PlaceOrders(orders)).await
    }

    /// Pays orders (operation 8).
    pub async fn pay_orders(
        &self,
        actions: &[OrderAction],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::PayOrders(actions)).await
    }

    /// Cancels orders (operation 9).
    pub async fn cancel_orders(
        &self,
        actions: &[OrderAction],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::CancelOrders(actions)).await
    }

    /// Refunds orders (operation 10).
    pub async fn refund_orders(
        &self,
        actions: &[OrderAction],
    ) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::RefundOrders(actions)).await
    }

    /// Acknowledges dispatch requests (operation 11; needs the `dispatch` scope).
    pub async fn ack_dispatch(&self, acks: &[DispatchAck]) -> Result<Vec<ResultCode>, ClientError> {
        self.submit(Batch::AckDispatch(acks)).await
    }
}

/// The entries as the typed answers of one operation (`match_ids` checked the operation:
/// every entry is of it).
fn typed<T>(
    entries: Vec<Option<LookupEntry>>,
    pick: impl Fn(LookupEntry) -> Option<T>,
) -> Result<Vec<Option<T>>, ClientError> {
    entries
        .into_iter()
        .map(|entry| match entry {
            None => Ok(None),
            Some(entry) => pick(entry)
                .map(Some)
                .ok_or_else(|| ClientError::Protocol("an entry of another lookup".to_string())),
        })
        .collect()
}
