//! Shared helpers of the engine's integration tests: record builders, the ledger and
//! inventory invariants, and a fresh replay of a log to compare state hashes against.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::sync::Arc;

use surge_core::records::ORDER_LINES_MAX;
use surge_core::{
    account_flags, decode, transfer_flags, Account, AccountId, Order, OrderAction, OrderId,
    OrderLine, Sku, SkuId, StateMachine, Transfer, TransferId,
};
use surge_engine::{Node, NodeConfig, NodeStorage, RecoveryReport};
use surge_wal::{Clock, Log, LogConfig, ManualClock, Record, SimStorage, Storage};

/// The ledger (currency) every test record lives on.
pub const LEDGER: u32 = 1;
/// Account `code` of every test account.
pub const ACCOUNT_CODE: u16 = 10;
/// Transfer `code` of client transfers.
pub const TRANSFER_CODE: u16 = 20;

/// A plain account, or a wallet whose debits may never exceed its credits.
pub fn account(id: u128, constrained: bool) -> Account {
    Account {
        id: AccountId(id),
        ledger: LEDGER,
        code: ACCOUNT_CODE,
        flags: if constrained {
            account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
        } else {
            0
        },
        ..Account::default()
    }
}

/// A single-phase transfer.
pub fn transfer(id: u128, debit: u128, credit: u128, amount: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount,
        ledger: LEDGER,
        code: TRANSFER_CODE,
        ..Transfer::default()
    }
}

/// Phase one: hold `amount` for `timeout_ns` of log time (0 = never expires).
pub fn pending(id: u128, debit: u128, credit: u128, amount: u64, timeout_ns: u64) -> Transfer {
    Transfer {
        flags: transfer_flags::PENDING,
        timeout_ns,
        ..transfer(id, debit, credit, amount)
    }
}

/// Phase two: capture `amount` of `pending_id` (0 = all of it).
pub fn post(id: u128, pending_id: u128, amount: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        pending_id: TransferId(pending_id),
        amount,
        flags: transfer_flags::POST_PENDING,
        ..Transfer::default()
    }
}

/// Phase two: release `pending_id`.
pub fn void(id: u128, pending_id: u128) -> Transfer {
    Transfer {
        id: TransferId(id),
        pending_id: TransferId(pending_id),
        flags: transfer_flags::VOID_PENDING,
        ..Transfer::default()
    }
}

/// `transfer` with the linked flag added.
pub fn linked(transfer: Transfer) -> Transfer {
    Transfer {
        flags: transfer.flags | transfer_flags::LINKED,
        ..transfer
    }
}

/// A SKU with `stocked` units and a per-buyer limit (0 = none).
pub fn sku(id: u64, stocked: u64, limit_per_buyer: u32) -> Sku {
    Sku {
        id: SkuId(id),
        units_stocked: stocked,
        limit_per_buyer,
        ..Sku::default()
    }
}

/// An order of `buyer` from `merchant`, authorized by pending transfer `transfer_id`.
pub fn order(
    id: u128,
    buyer: u128,
    merchant: u128,
    transfer_id: u128,
    amount: u64,
    timeout_ns: u64,
    lines: &[(u64, u32)],
) -> Order {
    assert!(lines.len() <= ORDER_LINES_MAX);
    let mut order_lines = [OrderLine::default(); ORDER_LINES_MAX];
    for (slot, &(sku_id, quantity)) in order_lines.iter_mut().zip(lines) {
        *slot = OrderLine {
            sku_id: SkuId(sku_id),
            quantity,
            reserved: 0,
        };
    }
    Order {
        id: OrderId(id),
        buyer_id: AccountId(buyer),
        merchant_id: AccountId(merchant),
        transfer_id: TransferId(transfer_id),
        amount,
        timeout_ns,
        ledger: LEDGER,
        line_count: u16::try_from(lines.len()).expect("at most eight lines"),
        lines: order_lines,
        ..Order::default()
    }
}

/// Pay, cancel or refund `order`, creating transfer `transfer_id`.
pub fn action(order: u128, transfer_id: u128) -> OrderAction {
    OrderAction {
        order_id: OrderId(order),
        transfer_id: TransferId(transfer_id),
        ..OrderAction::default()
    }
}

/// Checks the ledger and inventory invariants of `state`: per ledger, debits equal credits
/// (posted and pending); no constrained account owes more than it holds; every SKU's
/// available + reserved + sold units equal its stocked units.
pub fn check_invariants(state: &StateMachine) -> Result<(), String> {
    let mut ledgers = std::collections::BTreeMap::<u32, [u128; 4]>::new();
    for account in state.accounts_sorted() {
        let sums = ledgers.entry(account.ledger).or_default();
        sums[0] += u128::from(account.debits_posted);
        sums[1] += u128::from(account.credits_posted);
        sums[2] += u128::from(account.debits_pending);
        sums[3] += u128::from(account.credits_pending);
        if account.flags & account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS != 0 {
            let debits = u128::from(account.debits_posted) + u128::from(account.debits_pending);
            if debits > u128::from(account.credits_posted) {
                return Err(format!("account {} is negative: {account:?}", account.id));
            }
        }
    }
    for (ledger, [debits_posted, credits_posted, debits_pending, credits_pending]) in ledgers {
        if debits_posted != credits_posted {
            return Err(format!(
                "ledger {ledger}: posted debits {debits_posted} != credits {credits_posted}"
            ));
        }
        if debits_pending != credits_pending {
            return Err(format!(
                "ledger {ledger}: pending debits {debits_pending} != credits {credits_pending}"
            ));
        }
    }
    for sku in state.skus_sorted() {
        let units = u128::from(sku.units_available)
            + u128::from(sku.units_reserved)
            + u128::from(sku.units_sold);
        if units != u128::from(sku.units_stocked) {
            return Err(format!("sku {} counters do not add up: {sku:?}", sku.id));
        }
    }
    Ok(())
}

/// A fresh state machine with every record applied from the start, in log order.
pub fn replay(config: surge_core::Config, records: &[Record]) -> StateMachine {
    let mut state = StateMachine::new(config);
    let mut results = Vec::new();
    for record in records {
        let batch =
            decode(record.header.operation as u8, &record.body).expect("a durable record decodes");
        state.apply(record.header.timestamp_ns, batch.as_batch(), &mut results);
    }
    state
}

/// Every record of the log in `storage` from record 0 (archived segments included), read
/// by a plain `Log::open` and the stream reader (no node running).
pub fn read_log(storage: &SimStorage, config: LogConfig) -> Vec<Record> {
    let (mut log, _) =
        Log::open(Box::new(storage.clone()), config).expect("the log opens after recovery");
    let records: Result<Vec<Record>, _> = log.read_from(0).expect("record 0 is kept").collect();
    records.expect("the log reads back")
}

/// The two simulated disks of a node, kept by the test while the node owns clones.
#[derive(Clone, Default)]
pub struct SimDisks {
    /// The log's disk.
    pub log: SimStorage,
    /// The checkpoints' disk.
    pub checkpoints: SimStorage,
}

impl SimDisks {
    /// Handles for a node.
    pub fn node_storage(&self) -> NodeStorage {
        NodeStorage {
            log: Box::new(self.log.clone()) as Box<dyn Storage>,
            checkpoints: Box::new(self.checkpoints.clone()) as Box<dyn Storage>,
        }
    }

    /// Opens a node on these disks.
    pub fn open(&self, config: &NodeConfig, clock: &ManualClock) -> (Node, RecoveryReport) {
        let clock: Arc<dyn Clock + Sync> = Arc::new(clock.clone());
        Node::open(config.clone(), self.node_storage(), clock).expect("the node opens")
    }
}
