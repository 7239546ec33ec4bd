//! The client handle: one method per operation, each returning one result code per
//! command. Cheap to clone; every clone shares one connection and one driver task.

use std::time::Duration;

use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{account_flags, transfer_flags, Account, Batch, DispatchAck, Order};
use surge_core::{OrderAction, Reservation, ReservationKey, ResultCode, Sku, Transfer};
use surge_protocol::{ErrorCode, Scopes};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::batcher::Call;
use crate::config::ClientConfig;
use crate::connection::{self, ConnectError};
use crate::constants::CALLS_QUEUED_MAX;
use crate::driver::Driver;
use crate::error::ClientError;

/// A connection to a Surge server that batches the calls of many tasks into few requests.
/// Clone it freely; the driver task ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    calls: mpsc::Sender<Call>,
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
        let call = Call {
            operation,
            count: u32::try_from(batch.len()).expect("at most BATCH_EVENTS_MAX"),
            body: batch.body().to_vec(),
            chain_open: chain_open(&batch),
            deadline,
            attempts: 0,
            reply: Some(reply),
        };
        self.calls
            .send(call)
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.unwrap_or(Err(ClientError::Closed))
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

    /// Places orders (operation 7).
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
