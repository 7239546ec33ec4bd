//! Serving a `Lookup`: the ids are read through the engine's read API (the same reads as
//! the HTTP `GET` routes). Accounts, SKUs and orders are read in one look at each shard
//! holding some of them (one read lock per shard, between two applied batches, so writes
//! go on, and the ids of one shard answered from one state); transfers one by one, as a
//! transfer may be read from the history index's archive on disk, which must not happen
//! under a lock. Every id found becomes one entry of the reply, in the order of the ids.
//! Runs on tokio's blocking pool: a read lock may wait for a batch being applied.

use surge_core::{AccountId, OrderId, SkuId, TransferId};
use surge_engine::{Engine, EngineError};
use surge_protocol::{LookupEntry, LookupOperation};

/// The entries of the ids found among `ids`, back to back, in the order of the ids.
pub(crate) fn read(
    engine: &Engine,
    operation: LookupOperation,
    ids: impl Iterator<Item = u128>,
) -> Result<Vec<u8>, EngineError> {
    let mut entries = Vec::new();
    let mut put = |entry: LookupEntry| entry.encode(&mut entries);
    match operation {
        LookupOperation::Accounts => {
            let ids: Vec<AccountId> = ids.map(AccountId).collect();
            engine
                .accounts(&ids)
                .into_iter()
                .flatten()
                .for_each(|account| put(LookupEntry::Account(account)));
        }
        LookupOperation::Skus => {
            // The decoder read 8 bytes per SKU id: it fits.
            let ids: Vec<SkuId> = ids
                .map(|id| SkuId(u64::try_from(id).expect("SKU ids are 8 bytes on the wire")))
                .collect();
            engine
                .skus(&ids)
                .into_iter()
                .flatten()
                .for_each(|sku| put(LookupEntry::Sku(sku)));
        }
        LookupOperation::Transfers => {
            for id in ids.map(TransferId) {
                if let Some(lookup) = engine.transfer(id)? {
                    put(LookupEntry::Transfer { id, lookup });
                }
            }
        }
        LookupOperation::Orders => {
            let ids: Vec<OrderId> = ids.map(OrderId).collect();
            let found = engine.orders(&ids);
            for (id, lookup) in ids.into_iter().zip(found) {
                if let Some(lookup) = lookup {
                    put(LookupEntry::Order { id, lookup });
                }
            }
        }
    }
    Ok(entries)
}
