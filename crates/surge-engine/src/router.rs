//! Splits a client's batch by shard. Accounts, SKUs and orders are owned by the shard of
//! their id ([`surge_core::shard_of`]); a transfer goes to its debit account's shard (the
//! balance checks happen there), a post or void to its pending transfer's, an order and
//! its reservations to their SKU's, an order action and a dispatch acknowledgement to the
//! shard holding the order. A transfer (single-phase or pending) whose credit account
//! lives elsewhere is a cross-shard transfer (debit leg here, credit leg there); a post or
//! void goes to its pending transfer's debit shard, which sends the credit side its own
//! phase-two leg. An order whose buyer or merchant lives on another shard than its SKUs is
//! reserved on the SKUs' shard and runs as an order saga (see `surge_core`'s `order_saga`
//! module). Shapes that cannot be split safely are refused with a code and never logged.

use surge_core::{
    shard_of, transfer_flags, AccountId, Batch, OrderId, ResultCode, Transfer, TransferId,
};

/// Where one command goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Applied whole on this shard.
    Local(u32),
    /// A single-phase or pending transfer: debit leg on `debit`, credit leg on `credit`.
    Cross {
        /// The debit account's shard.
        debit: u32,
        /// The credit account's shard.
        credit: u32,
    },
    /// An order whose buyer or merchant lives elsewhere: reserved on its lines' shard
    /// `home`, its authorization sent to the buyer's shard.
    Spanning(u32),
    /// Answered at once with this code; nothing is logged.
    Refused(ResultCode),
}

/// Finds the shards holding existing pending transfers or orders (they are not placed by
/// their own id), a whole batch's ids at a time.
pub(crate) trait Locate {
    /// For each id, the shard holding that pending transfer, if any shard does.
    fn pending_transfers(&self, ids: &[TransferId]) -> Vec<Option<u32>>;
    /// For each id, the shard holding that order, if any shard does.
    fn orders(&self, ids: &[OrderId]) -> Vec<Option<u32>>;
}

/// The route of every command of `batch`, in order.
pub(crate) fn routes(batch: Batch<'_>, shard_count: u32, locate: &dyn Locate) -> Vec<Route> {
    let account = |id: AccountId| shard_of(id.0, shard_count);
    let order_homes = |ids: Vec<OrderId>| -> Vec<Route> {
        let found = locate.orders(&ids);
        ids.iter()
            .zip(found)
            .map(|(id, home)| Route::Local(home.unwrap_or_else(|| shard_of(id.0, shard_count))))
            .collect()
    };
    match batch {
        Batch::Pulse => Vec::new(),
        Batch::CreateAccounts(accounts) => accounts
            .iter()
            .map(|a| Route::Local(account(a.id)))
            .collect(),
        Batch::CreateTransfers(transfers) => transfer_routes(transfers, shard_count, locate),
        Batch::CreateSkus(skus) => skus
            .iter()
            .map(|sku| Route::Local(shard_of(u128::from(sku.id.0), shard_count)))
            .collect(),
        Batch::Reserve(reservations) => reservations
            .iter()
            .map(|r| Route::Local(shard_of(u128::from(r.sku_id.0), shard_count)))
            .collect(),
        Batch::ConfirmReservations(keys) | Batch::ReleaseReservations(keys) => keys
            .iter()
            .map(|key| Route::Local(shard_of(u128::from(key.sku_id.0), shard_count)))
            .collect(),
        Batch::PlaceOrders(orders) => orders
            .iter()
            .map(|order| {
                let lines = &order.lines[..usize::from(order.line_count).min(order.lines.len())];
                let mut shards = lines
                    .iter()
                    .filter(|line| line.sku_id.0 != 0)
                    .map(|line| shard_of(u128::from(line.sku_id.0), shard_count));
                let Some(home) = shards.next() else {
                    // No line: refused by the state machine.
                    return Route::Local(shard_of(order.id.0, shard_count));
                };
                // Lines on several shards: the order lives with its first line.
                let lines_elsewhere = !shards.all(|shard| shard == home);
                let elsewhere = lines_elsewhere
                    || [order.buyer_id, order.merchant_id]
                        .into_iter()
                        .any(|id| !id.is_zero() && account(id) != home);
                if elsewhere {
                    Route::Spanning(home)
                } else {
                    Route::Local(home)
                }
            })
            .collect(),
        Batch::PayOrders(actions) | Batch::CancelOrders(actions) | Batch::RefundOrders(actions) => {
            order_homes(actions.iter().map(|a| a.order_id).collect())
        }
        // The engine's own messages: `Engine::submit` refuses them before routing.
        Batch::ShardDebit(legs) | Batch::ShardCredit(legs) => {
            vec![Route::Refused(ResultCode::ReservedFlag); legs.len()]
        }
        Batch::ShardResolve(_)
        | Batch::ReserveOrders(_)
        | Batch::OrderLegs(_)
        | Batch::OrderResolve(_)
        | Batch::OrderConfirm(_)
        | Batch::OrderUnits(_)
        | Batch::UnitConfirm(_) => vec![Route::Refused(ResultCode::ReservedFlag); batch.len()],
        // `Engine::submit` routes compact orders as the orders they stand for.
        Batch::PlaceOrdersCompact(_) => unreachable!("expanded before routing"),
        Batch::AckDispatch(acks) => {
            order_homes(acks.iter().map(|ack| OrderId(ack.dispatch_id.0)).collect())
        }
    }
}

/// Routes transfers one by one, then refuses every linked chain that touches more than
/// one shard (a chain is atomic only within one state machine).
fn transfer_routes(transfers: &[Transfer], shard_count: u32, locate: &dyn Locate) -> Vec<Route> {
    // Posts and voids that name no debit account go where their pending transfer is.
    let unplaced = |t: &&Transfer| {
        t.flags & (transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING) != 0
            && t.debit_account_id.is_zero()
    };
    let pending_ids: Vec<TransferId> = transfers
        .iter()
        .filter(unplaced)
        .map(|t| t.pending_id)
        .collect();
    let mut pending_homes = if pending_ids.is_empty() {
        Vec::new()
    } else {
        locate.pending_transfers(&pending_ids)
    }
    .into_iter();
    let mut routes: Vec<Route> = transfers
        .iter()
        .map(|transfer| {
            let located = if unplaced(&transfer) {
                pending_homes.next().flatten()
            } else {
                None
            };
            transfer_route(transfer, shard_count, located)
        })
        .collect();
    let mut start = 0;
    while start < transfers.len() {
        let mut end = start;
        while end + 1 < transfers.len() && transfers[end].flags & transfer_flags::LINKED != 0 {
            end += 1;
        }
        let linked = end > start || transfers[start].flags & transfer_flags::LINKED != 0;
        if linked && spans_shards(&routes[start..=end]) {
            routes[start..=end].fill(Route::Refused(ResultCode::LinkedChainSpansShards));
        }
        start = end + 1;
    }
    routes
}

fn spans_shards(routes: &[Route]) -> bool {
    let mut shards = routes.iter().flat_map(|route| match *route {
        Route::Local(shard) | Route::Spanning(shard) => [Some(shard), None],
        Route::Cross { debit, credit } => [Some(debit), Some(credit)],
        Route::Refused(_) => [None, None],
    });
    let Some(first) = shards.by_ref().flatten().next() else {
        return false;
    };
    shards.flatten().any(|shard| shard != first)
}

/// `located`: the shard holding the pending transfer of a post or void without a debit
/// account, if found.
fn transfer_route(transfer: &Transfer, shard_count: u32, located: Option<u32>) -> Route {
    let account = |id: AccountId| (!id.is_zero()).then(|| shard_of(id.0, shard_count));
    let phase_two = transfer.flags & (transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING);
    if phase_two != 0 {
        // The debit account's shard holds the pending transfer (and, if its credit
        // account lives elsewhere, sends that shard the post or void itself).
        let home = account(transfer.debit_account_id)
            .or(located)
            .unwrap_or_else(|| shard_of(transfer.pending_id.0, shard_count));
        return Route::Local(home);
    }
    let Some(debit) = account(transfer.debit_account_id) else {
        // Refused by the state machine (debit account id must not be zero).
        return Route::Local(shard_of(transfer.id.0, shard_count));
    };
    match account(transfer.credit_account_id) {
        Some(credit) if credit != debit => Route::Cross { debit, credit },
        _ => Route::Local(debit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_core::{Order, OrderLine, SkuId};

    struct Nowhere;

    impl Locate for Nowhere {
        fn pending_transfers(&self, ids: &[TransferId]) -> Vec<Option<u32>> {
            vec![None; ids.len()]
        }
        fn orders(&self, ids: &[OrderId]) -> Vec<Option<u32>> {
            vec![None; ids.len()]
        }
    }

    /// An account id on `shard` of `shard_count` (the `nth` such id).
    fn account_on(shard: u32, shard_count: u32, nth: usize) -> AccountId {
        let id = (1..)
            .filter(|id| shard_of(*id, shard_count) == shard)
            .nth(nth);
        AccountId(id.expect("ids exist on every shard"))
    }

    fn transfer(id: u128, debit: AccountId, credit: AccountId, flags: u16) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account_id: debit,
            credit_account_id: credit,
            amount: 1,
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        }
    }

    #[test]
    fn transfers_go_to_the_debit_shard() {
        let (a0, b0, a1) = (
            account_on(0, 2, 0),
            account_on(0, 2, 1),
            account_on(1, 2, 0),
        );
        let transfers = [
            transfer(1, a0, b0, 0),
            transfer(2, a1, a0, 0),
            transfer(3, a0, a1, transfer_flags::PENDING),
        ];
        let routes = routes(Batch::CreateTransfers(&transfers), 2, &Nowhere);
        assert_eq!(
            routes,
            [
                Route::Local(0),
                Route::Cross {
                    debit: 1,
                    credit: 0
                },
                Route::Cross {
                    debit: 0,
                    credit: 1
                },
            ]
        );
    }

    #[test]
    fn chains_spanning_shards_are_refused_whole() {
        let (a0, b0, a1) = (
            account_on(0, 2, 0),
            account_on(0, 2, 1),
            account_on(1, 2, 0),
        );
        let linked = transfer_flags::LINKED;
        let transfers = [
            transfer(1, a0, b0, linked),
            transfer(2, b0, a0, 0),
            transfer(3, a0, b0, linked),
            transfer(4, a0, a1, 0),
            transfer(5, a1, a0, 0),
        ];
        let routes = routes(Batch::CreateTransfers(&transfers), 2, &Nowhere);
        let spans = Route::Refused(ResultCode::LinkedChainSpansShards);
        assert_eq!(routes[..2], [Route::Local(0), Route::Local(0)]);
        assert_eq!(routes[2..4], [spans, spans]);
        assert_eq!(
            routes[4],
            Route::Cross {
                debit: 1,
                credit: 0
            }
        );
    }

    #[test]
    fn one_shard_routes_everything_locally() {
        let transfers = [transfer(1, AccountId(1), AccountId(2), 0)];
        let routes = routes(Batch::CreateTransfers(&transfers), 1, &Nowhere);
        assert_eq!(routes, [Route::Local(0)]);
    }

    #[test]
    fn orders_with_lines_or_parties_on_other_shards_span() {
        let sku = (1..)
            .find(|id| shard_of(*id, 2) == 0)
            .expect("a SKU on shard 0");
        let mut order = Order {
            id: OrderId(7),
            buyer_id: account_on(0, 2, 0),
            merchant_id: account_on(0, 2, 1),
            line_count: 1,
            ..Order::default()
        };
        order.lines[0] = OrderLine {
            sku_id: SkuId(sku as u64),
            quantity: 1,
            reserved: 0,
        };
        let mut far = order;
        far.buyer_id = account_on(1, 2, 0);
        let other_sku = (1..)
            .find(|id| shard_of(*id, 2) == 1)
            .expect("a SKU on shard 1");
        let mut split = order;
        split.line_count = 2;
        split.lines[1] = OrderLine {
            sku_id: SkuId(other_sku as u64),
            quantity: 1,
            reserved: 0,
        };
        let routes = routes(Batch::PlaceOrders(&[order, far, split]), 2, &Nowhere);
        assert_eq!(
            routes,
            [Route::Local(0), Route::Spanning(0), Route::Spanning(0)]
        );
    }
}
