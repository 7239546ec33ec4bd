//! From an applied batch to index entries: the transfers each successful command created,
//! the order events, and one statement line per account a transfer touched, carrying the
//! account's balances right after that transfer (so a statement needs no running sum).

use std::collections::HashMap;

use surge_core::{
    transfer_flags, AccountId, Batch, LogPosition, Operation, OrderId, ResultCode, StateMachine,
    Transfer, TransferId, TransferLookup, TRANSFER_CODE_CROSS_SHARD_COMPENSATION,
};

/// One thing the index stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexEntry {
    /// A transfer was created at `position`.
    Transfer {
        /// Where the command that created it is.
        position: LogPosition,
        /// The transfer as applied (a post carries the amount it captured).
        transfer: Transfer,
    },
    /// A command on an order succeeded.
    OrderEvent {
        /// The order.
        order_id: OrderId,
        /// Where the command is.
        position: LogPosition,
        /// What it did.
        operation: Operation,
    },
    /// A transfer moved an account's balances.
    Statement {
        /// The line.
        line: StatementLine,
        /// Whether the line's transfer is the one indexed under its id (then the index
        /// stores it once); false for the return of a failed cross-shard transfer's funds,
        /// whose id names its debit leg.
        transfer_indexed: bool,
    },
}

/// One line of an account statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementLine {
    /// The account.
    pub account_id: AccountId,
    /// Where the transfer's command is.
    pub position: LogPosition,
    /// The transfer.
    pub transfer: Transfer,
    /// The account's balances right after this transfer.
    pub balances_after: Balances,
}

/// An account's four balances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    /// Held debits.
    pub debits_pending: u64,
    /// Posted debits.
    pub debits_posted: u64,
    /// Held credits.
    pub credits_pending: u64,
    /// Posted credits.
    pub credits_posted: u64,
}

/// Transfers skipped at most, looking for the next one a batch created among those
/// committed since it began. A skip is a transfer committed that the batch's commands do
/// not list (none does today); past the bound, the rest are looked up by id.
const COMMITTED_SKIP_MAX: usize = 64;

/// Accounts whose slots are hinted to the cache ahead of reading their balances.
const PREFETCH_AHEAD: usize = 8;

/// The entries of log record `record_index`, whose batch was just applied to
/// `state_machine` with `results`. Call it before the next batch is applied: it reads the
/// balances the batch left.
pub fn derive_entries(
    state_machine: &StateMachine,
    record_index: u64,
    batch: Batch<'_>,
    results: &[ResultCode],
) -> Vec<IndexEntry> {
    derive_entries_since(state_machine, None, record_index, batch, results)
}

/// [`derive_entries`] for a batch applied when [`StateMachine::transfer_sequence_next`]
/// was `first_sequence`: the transfers it created are read in the order they were
/// committed rather than looked up by id (the same records: a lookup would find each at
/// its sequence number). `None` looks every one up.
pub fn derive_entries_since(
    state_machine: &StateMachine,
    first_sequence: Option<u64>,
    record_index: u64,
    batch: Batch<'_>,
    results: &[ResultCode],
) -> Vec<IndexEntry> {
    assert_eq!(batch.len(), results.len());
    // Mostly a transfer and its two statement lines per command.
    let mut entries = Vec::with_capacity(results.len() * 3);
    let mut created: Vec<(LogPosition, TransferId)> = Vec::with_capacity(results.len());
    // Funds returned from transit for failed cross-shard transfers: statement lines only
    // (the transfer's own entry stays the debit leg).
    let mut compensations: Vec<(LogPosition, Transfer)> = Vec::new();
    for (index, code) in results.iter().enumerate() {
        if *code != ResultCode::Ok {
            continue; // `exists` and failures created nothing new.
        }
        let position = LogPosition {
            record_index,
            command_index: index as u32,
        };
        let order_event = |order_id: OrderId| IndexEntry::OrderEvent {
            order_id,
            position,
            // A place is a place, whichever form the engine logged it in.
            operation: match batch.operation() {
                Operation::PlaceOrdersCompact => Operation::PlaceOrders,
                operation => operation,
            },
        };
        match batch {
            Batch::CreateTransfers(records) => created.push((position, records[index].id)),
            Batch::PlaceOrders(records) => {
                created.push((position, records[index].transfer_id));
                entries.push(order_event(records[index].id));
            }
            Batch::PlaceOrdersCompact(records) => {
                created.push((position, records[index].transfer_id));
                entries.push(order_event(records[index].id));
            }
            Batch::PayOrders(records)
            | Batch::CancelOrders(records)
            | Batch::RefundOrders(records) => {
                let id = records[index].transfer_id;
                // An order spanning shards sent the action's transfer to another shard,
                // whose index records it when it is applied there.
                if !state_machine.order_step_in_flight(id) {
                    created.push((position, id));
                }
                entries.push(order_event(records[index].order_id));
            }
            Batch::ReserveOrders(records) => entries.push(order_event(records[index].order.id)),
            Batch::OrderLegs(legs) => created.push((position, legs[index].transfer.id)),
            // An expiry's void carries the authorization's id: it creates nothing.
            Batch::OrderResolve(records) if records[index].id != records[index].pending_id => {
                created.push((position, records[index].id));
            }
            Batch::AckDispatch(records) => {
                entries.push(order_event(OrderId(records[index].dispatch_id.0)));
            }
            Batch::ShardDebit(legs) | Batch::ShardCredit(legs) => {
                let transfer = &legs[index].transfer;
                // The void of an expired cross-shard pending transfer carries the pending
                // id as its own: it creates nothing (expiries have no entries).
                if transfer.id != transfer.pending_id {
                    created.push((position, transfer.id));
                }
            }
            Batch::ShardResolve(outcomes) => {
                let id = outcomes[index].transfer_id;
                let failed = ResultCode::from_u32(outcomes[index].code)
                    .is_some_and(|code| !code.is_success());
                if let (true, Some((_, back))) = (failed, state_machine.shard_compensation(id)) {
                    compensations.push((position, back));
                }
            }
            _ => {}
        }
    }
    let look_up = |id: TransferId| match state_machine.transfer(id) {
        Some(TransferLookup::Committed { transfer, .. }) => transfer,
        other => panic!("a command that returned ok created transfer {id}: {other:?}"),
    };
    let mut committed = first_sequence
        .map(|sequence| state_machine.transfers_committed_since(sequence))
        .into_iter()
        .flatten();
    let transfers: Vec<(LogPosition, Transfer)> = created
        .into_iter()
        .map(|(position, id)| {
            // Commands commit in order: the next transfer committed with this id is the one
            // this command created. One not found is looked up, and the walk resumes where
            // it was.
            let mut ahead = committed.clone();
            let found = ahead
                .by_ref()
                .take(COMMITTED_SKIP_MAX + 1)
                .find(|transfer| transfer.id == id);
            let transfer = match found {
                Some(transfer) => {
                    committed = ahead;
                    debug_assert_eq!(*transfer, look_up(id), "committed order differs");
                    *transfer
                }
                None => look_up(id),
            };
            (position, transfer)
        })
        .collect();
    entries.extend(
        transfers
            .iter()
            .map(|(position, transfer)| IndexEntry::Transfer {
                position: *position,
                transfer: *transfer,
            }),
    );
    statement_lines(state_machine, &transfers, true, &mut entries);
    statement_lines(state_machine, &compensations, false, &mut entries);
    entries
}

/// Appends the statement lines of `transfers` to `entries`, walking them backwards from
/// the balances the batch left, so each line carries the balances right after its
/// transfer.
fn statement_lines(
    state_machine: &StateMachine,
    transfers: &[(LogPosition, Transfer)],
    transfer_indexed: bool,
    entries: &mut Vec<IndexEntry>,
) {
    let mut balances: foldhash::HashMap<AccountId, Balances> =
        HashMap::with_capacity_and_hasher(transfers.len() * 2, Default::default());
    let first = entries.len();
    entries.reserve(transfers.len() * 2);
    for (back, (position, transfer)) in transfers.iter().rev().enumerate() {
        // Accounts a few lines on are asked for next: start loading them now.
        let ahead = transfers.len().checked_sub(back + 1 + PREFETCH_AHEAD);
        if let Some((_, ahead)) = ahead.map(|index| &transfers[index]) {
            state_machine.prefetch_account(ahead.debit_account_id);
            state_machine.prefetch_account(ahead.credit_account_id);
        }
        let (debit, credit) = effects(state_machine, transfer);
        for (account_id, effect) in [
            (transfer.debit_account_id, debit),
            (transfer.credit_account_id, credit),
        ] {
            let current = balances.entry(account_id).or_insert_with(|| {
                let account = state_machine
                    .account(account_id)
                    .expect("a transfer's account");
                Balances {
                    debits_pending: account.debits_pending,
                    debits_posted: account.debits_posted,
                    credits_pending: account.credits_pending,
                    credits_posted: account.credits_posted,
                }
            });
            entries.push(IndexEntry::Statement {
                line: StatementLine {
                    account_id,
                    position: *position,
                    transfer: *transfer,
                    balances_after: *current,
                },
                transfer_indexed,
            });
            *current = undo(*current, effect);
        }
    }
    entries[first..].reverse();
}

/// How a transfer changed one side's balances: (pending added, pending removed, posted
/// added), on the debit side for the debit account and the credit side for the credit one.
#[derive(Clone, Copy, Debug, Default)]
struct Effect {
    debit_side: bool,
    pending_added: u64,
    pending_removed: u64,
    posted_added: u64,
}

fn effects(state_machine: &StateMachine, transfer: &Transfer) -> (Effect, Effect) {
    let mut effect = Effect::default();
    if transfer.flags & transfer_flags::PENDING != 0 {
        effect.pending_added = transfer.amount;
    } else if transfer.code == TRANSFER_CODE_CROSS_SHARD_COMPENSATION
        && transfer.flags & transfer_flags::VOID_PENDING != 0
    {
        // The hold of a cross-shard pending transfer its destination refused, released
        // (the pending transfer itself reads as failed).
        effect.pending_removed = transfer.amount;
    } else if transfer.flags & (transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING) != 0 {
        let pending = match state_machine.transfer(transfer.pending_id) {
            Some(TransferLookup::Committed { transfer, .. }) => transfer,
            other => panic!("a post names its pending transfer: {other:?}"),
        };
        effect.pending_removed = pending.amount;
        if transfer.flags & transfer_flags::POST_PENDING != 0 {
            effect.posted_added = transfer.amount;
        }
    } else {
        effect.posted_added = transfer.amount;
    }
    (
        Effect {
            debit_side: true,
            ..effect
        },
        Effect {
            debit_side: false,
            ..effect
        },
    )
}

/// The balances before a transfer, from those after it.
fn undo(after: Balances, effect: Effect) -> Balances {
    let back = |value: u64, added: u64, removed: u64| {
        (value + removed)
            .checked_sub(added)
            .expect("balances after include the transfer")
    };
    let mut before = after;
    if effect.debit_side {
        before.debits_pending = back(
            after.debits_pending,
            effect.pending_added,
            effect.pending_removed,
        );
        before.debits_posted = back(after.debits_posted, effect.posted_added, 0);
    } else {
        before.credits_pending = back(
            after.credits_pending,
            effect.pending_added,
            effect.pending_removed,
        );
        before.credits_posted = back(after.credits_posted, effect.posted_added, 0);
    }
    before
}
