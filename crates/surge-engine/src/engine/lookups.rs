//! Lookups of many ids at once (a TCP `Lookup` frame): each shard holding some of the ids
//! is read once, so the ids of one shard are answered from one state, between two applied
//! batches, and a frame of 4,096 ids takes a shard's read lock once rather than 4,096
//! times. Ids on different shards come from different moments, as with single reads.

use std::collections::BTreeMap;

use surge_core::{shard_of, Account, AccountId, OrderId, OrderLookup, Sku, SkuId};

use super::Engine;

impl Engine {
    /// Each account as [`Engine::account`] answers it, in the order of `ids`; one read of
    /// each shard holding some of them.
    pub fn accounts(&self, ids: &[AccountId]) -> Vec<Option<Account>> {
        self.by_owner(ids, |id| id.0, |state, id| state.account(*id))
    }

    /// Each SKU as [`Engine::sku`] answers it, in the order of `ids`; one read of each
    /// shard holding some of them.
    pub fn skus(&self, ids: &[SkuId]) -> Vec<Option<Sku>> {
        self.by_owner(ids, |id| u128::from(id.0), |state, id| state.sku(*id))
    }

    /// Each order as [`Engine::order`] answers it, in the order of `ids`: an order lives
    /// with its SKU lines, which its id does not name, so every shard is read once (in
    /// shard order, as the single lookup looks) for the ids not found before it.
    pub fn orders(&self, ids: &[OrderId]) -> Vec<Option<OrderLookup>> {
        let mut found: Vec<Option<OrderLookup>> = vec![None; ids.len()];
        for node in self.nodes().iter() {
            let missing: Vec<usize> = (0..ids.len()).filter(|&p| found[p].is_none()).collect();
            if missing.is_empty() {
                break;
            }
            node.read(|state| {
                for position in missing {
                    found[position] = state.order(ids[position]);
                }
            });
        }
        found
    }

    /// `read(state, id)` for every id, with the state of the shard owning `key(id)`, in
    /// the order of `ids`; one read of each shard named.
    fn by_owner<I, T: Clone>(
        &self,
        ids: &[I],
        key: impl Fn(&I) -> u128,
        read: impl Fn(&surge_core::StateMachine, &I) -> Option<T>,
    ) -> Vec<Option<T>> {
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (position, id) in ids.iter().enumerate() {
            by_shard
                .entry(shard_of(key(id), self.shard_count))
                .or_default()
                .push(position);
        }
        let mut found: Vec<Option<T>> = vec![None; ids.len()];
        for (shard, positions) in by_shard {
            self.node(shard as usize).read(|state| {
                for position in positions {
                    found[position] = read(state, &ids[position]);
                }
            });
        }
        found
    }
}
