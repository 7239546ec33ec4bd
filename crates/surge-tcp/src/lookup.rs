//! Serving a `Lookup`: each id is read through the engine's read API (the same calls the
//! HTTP `GET` routes make: one shard read lock per id, between two applied batches, so
//! writes go on), and every id found becomes one entry of the reply, in the order of the
//! ids. Runs on tokio's blocking pool: a read lock may wait for a batch being applied, and a
//! transfer lookup may read the history index's archive from disk.

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
    for id in ids {
        let found = match operation {
            LookupOperation::Accounts => engine.account(AccountId(id)).map(LookupEntry::Account),
            LookupOperation::Skus => {
                // The decoder read 8 bytes per SKU id: it fits.
                let id = SkuId(u64::try_from(id).expect("SKU ids are 8 bytes on the wire"));
                engine.sku(id).map(LookupEntry::Sku)
            }
            LookupOperation::Transfers => {
                let id = TransferId(id);
                engine
                    .transfer(id)?
                    .map(|lookup| LookupEntry::Transfer { id, lookup })
            }
            LookupOperation::Orders => {
                let id = OrderId(id);
                engine
                    .order(id)
                    .map(|lookup| LookupEntry::Order { id, lookup })
            }
        };
        if let Some(entry) = found {
            entry.encode(&mut entries);
        }
    }
    Ok(entries)
}
