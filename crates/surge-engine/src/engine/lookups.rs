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
        self.by_owner(ids.iter().map(|id| id.0), |state, position| {
            state.account(ids[position])
        })
    }

    /// Each SKU as [`Engine::sku`] answers it, in the order of `ids`; one read of each
    /// shard holding some of them.
    pub fn skus(&self, ids: &[SkuId]) -> Vec<Option<Sku>> {
        self.by_owner(ids.iter().map(|id| u128::from(id.0)), |state, position| {
            state.sku(ids[position])
        })
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

    /// `read(state, position)` for every position of `keys` (routing keys), with the
    /// state of the key's shard; one read of each shard named.
    fn by_owner<T: Clone>(
        &self,
        keys: impl Iterator<Item = u128>,
        read: impl Fn(&surge_core::StateMachine, usize) -> Option<T>,
    ) -> Vec<Option<T>> {
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut len = 0;
        for (position, key) in keys.enumerate() {
            by_shard
                .entry(shard_of(key, self.shard_count))
                .or_default()
                .push(position);
            len = position + 1;
        }
        let mut found: Vec<Option<T>> = vec![None; len];
        for (shard, positions) in by_shard {
            self.node(shard as usize).read(|state| {
                for position in positions {
                    found[position] = read(state, position);
                }
            });
        }
        found
    }
}
