//! The parts of a submitted batch, one per shard and kind: commands a shard applies
//! whole (with the posts and voids, and the order actions, that wait for a step between
//! shards), the debit legs of cross-shard transfers, and orders spanning shards.

use super::*;

impl Engine {
    /// Logs the orders `indexes` of `batch` whose buyer or merchant lives on another
    /// shard than their lines' shard `shard`: reserved there, answered once their
    /// authorization's outcome is logged back there.
    pub(super) fn submit_spanning_orders(
        &self,
        shard: usize,
        batch: Batch<'_>,
        indexes: Vec<u32>,
        join: &Arc<Join>,
    ) {
        let Batch::PlaceOrders(orders) = batch else {
            unreachable!("only orders span shards");
        };
        let mut spanning: Vec<SpanningOrder> = indexes
            .iter()
            .map(|&index| {
                let order = orders[index as usize];
                let lines = &order.lines[..usize::from(order.line_count).min(order.lines.len())];
                let line_shard = |line: &surge_core::OrderLine| {
                    shard_of(u128::from(line.sku_id.0), self.shard_count)
                };
                // Routed here only with a line, on this shard.
                let lines_elsewhere = lines.iter().any(|line| line_shard(line) != shard as u32);
                SpanningOrder {
                    order,
                    buyer_shard: shard_of(order.buyer_id.0, self.shard_count),
                    merchant_shard: shard_of(order.merchant_id.0, self.shard_count),
                    merchant_ledger: 0,
                    shard_count: if lines_elsewhere { self.shard_count } else { 0 },
                }
            })
            .collect();
        let merchants: Vec<(u32, AccountId)> = spanning
            .iter()
            .map(|s| (s.merchant_shard, s.order.merchant_id))
            .collect();
        for (order, ledger) in spanning.iter_mut().zip(self.account_ledgers(&merchants)) {
            order.merchant_ledger = ledger;
        }
        let steps = OrderSteps {
            saga: self.order_saga.as_ref().expect("running").handle(),
            home: shard as u32,
            keys: spanning.iter().map(|s| s.order.transfer_id).collect(),
            orders: spanning.iter().map(|s| s.order.id).collect(),
            placing: true,
        };
        let body = bytemuck::cast_slice(&spanning).to_vec();
        let count = spanning.len() as u32;
        let submitted = self
            .node(shard)
            .submit_bytes(Operation::ReserveOrders, body, count);
        let part = Part::new(join.clone(), Some(indexes)).with_order_steps(steps);
        self.enqueue(shard, submitted, part);
    }

    /// The pays, cancels and refunds among the commands `indexes` of `batch` for `shard`:
    /// one of an order spanning shards waits for its step's outcome.
    pub(super) fn order_steps(
        &self,
        shard: usize,
        batch: Batch<'_>,
        indexes: &[u32],
    ) -> Option<OrderSteps> {
        let (Batch::PayOrders(actions)
        | Batch::CancelOrders(actions)
        | Batch::RefundOrders(actions)) = batch
        else {
            return None;
        };
        if self.shard_count() == 1 {
            return None; // No order spans shards.
        }
        Some(OrderSteps {
            saga: self.order_saga.as_ref().expect("running").handle(),
            home: shard as u32,
            keys: indexes
                .iter()
                .map(|&index| actions[index as usize].transfer_id)
                .collect(),
            orders: indexes
                .iter()
                .map(|&index| actions[index as usize].order_id)
                .collect(),
            placing: false,
        })
    }

    /// Logs the commands `indexes` of `batch` that shard `shard` applies whole.
    pub(super) fn submit_local(
        &self,
        shard: usize,
        batch: Batch<'_>,
        indexes: Vec<u32>,
        join: &Arc<Join>,
    ) {
        let record_size = batch.operation().record_size_bytes();
        let mut body = Vec::with_capacity(indexes.len() * record_size);
        for &index in &indexes {
            let start = index as usize * record_size;
            body.extend_from_slice(&batch.body()[start..start + record_size]);
        }
        let count = indexes.len() as u32;
        let resolutions = self.resolutions(shard, batch, &indexes);
        let submitted = self
            .node(shard)
            .submit_bytes(batch.operation(), body, count);
        let order_steps = self.order_steps(shard, batch, &indexes);
        let mut part = Part::new(join.clone(), Some(indexes));
        if let Some(resolutions) = resolutions {
            part = part.with_resolutions(resolutions);
        }
        if let Some(order_steps) = order_steps {
            part = part.with_order_steps(order_steps);
        }
        self.enqueue(shard, submitted, part);
    }

    /// The posts and voids among the commands `indexes` of `batch` for `shard`, which
    /// may resolve a cross-shard pending transfer (see [`Resolutions`]).
    pub(super) fn resolutions(
        &self,
        shard: usize,
        batch: Batch<'_>,
        indexes: &[u32],
    ) -> Option<Resolutions> {
        let Batch::CreateTransfers(transfers) = batch else {
            return None;
        };
        if self.shard_count() == 1 {
            // No pending transfer crosses shards: no post or void has a leg to wait for.
            return None;
        }
        let phase_two = transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING;
        let (positions, ids): (Vec<u32>, Vec<TransferId>) = indexes
            .iter()
            .enumerate()
            .filter(|(_, &index)| transfers[index as usize].flags & phase_two != 0)
            .map(|(position, &index)| (position as u32, transfers[index as usize].id))
            .unzip();
        if positions.is_empty() {
            return None;
        }
        Some(Resolutions {
            saga: self.saga.as_ref().expect("running").handle(),
            source: shard as u32,
            positions,
            ids,
        })
    }

    /// Logs the debit legs of the cross-shard transfers `indexes` of `batch` on `shard`.
    pub(super) fn submit_debit_legs(
        &self,
        shard: usize,
        batch: Batch<'_>,
        routes: &[Route],
        indexes: Vec<u32>,
        join: &Arc<Join>,
    ) {
        let Batch::CreateTransfers(transfers) = batch else {
            unreachable!("only transfers cross shards");
        };
        let mut legs: Vec<ShardLeg> = indexes
            .iter()
            .map(|&index| {
                let Route::Cross { debit, credit } = routes[index as usize] else {
                    unreachable!("indexes of crossing transfers");
                };
                ShardLeg {
                    transfer: transfers[index as usize],
                    source_shard: debit,
                    destination_shard: credit,
                    credit_account_ledger: 0,
                    reserved: [0; 4],
                }
            })
            .collect();
        let credit_accounts: Vec<(u32, AccountId)> = legs
            .iter()
            .map(|leg| (leg.destination_shard, leg.transfer.credit_account_id))
            .collect();
        for (leg, ledger) in legs.iter_mut().zip(self.account_ledgers(&credit_accounts)) {
            leg.credit_account_ledger = ledger;
        }
        let body = bytemuck::cast_slice(&legs).to_vec();
        let count = legs.len() as u32;
        let submitted = self
            .node(shard)
            .submit_bytes(Operation::ShardDebit, body, count);
        let saga = self.saga.as_ref().expect("running").handle();
        let legs = Legs {
            saga,
            source: shard as u32,
            legs,
        };
        let part = Part::debit_legs(join.clone(), indexes, legs);
        self.enqueue(shard, submitted, part);
    }

    /// Each (shard, account)'s ledger as that shard holds it now (0: no such account), one
    /// read per shard named. Accounts never change ledger and are never deleted, so a
    /// command routed with it fails as one shard would fail it.
    fn account_ledgers(&self, accounts: &[(u32, AccountId)]) -> Vec<u32> {
        let mut ledgers = vec![0; accounts.len()];
        let mut shards: Vec<u32> = accounts.iter().map(|(shard, _)| *shard).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            self.node(shard as usize).read(|state| {
                for (ledger, (_, id)) in ledgers
                    .iter_mut()
                    .zip(accounts)
                    .filter(|(_, (owner, _))| *owner == shard)
                {
                    *ledger = state.account(*id).map_or(0, |account| account.ledger);
                }
            });
        }
        ledgers
    }
}
