//! Lookup calls: one caller's ids, sent as one `Lookup` frame of their own (never packed
//! with another caller's), resent after `busy` or a lost connection until the deadline like
//! commands, and the matching of the reply's entries (one per id found, in id order) back to
//! the ids.

use surge_protocol::{LookupEntries, LookupEntry, LookupOperation};

use crate::caller::Caller;
use crate::error::ClientError;

/// What a found lookup reply carried: the entries, owned (out of the read buffer).
#[derive(Debug)]
pub(crate) struct Found {
    pub ids_count: u32,
    pub entries: Vec<u8>,
}

/// One caller's lookup and where its answer goes.
#[derive(Debug)]
pub(crate) struct LookupCall {
    pub operation: LookupOperation,
    pub count: u32,
    /// `count × id size` bytes: the ids as they go on the wire.
    pub ids: Vec<u8>,
    pub caller: Caller<Found>,
}

/// The ids as a `Lookup` body: little-endian, 16 bytes each (8 for SKUs, which are u64).
pub(crate) fn ids_body(operation: LookupOperation, ids: &[u128]) -> Vec<u8> {
    let size = operation.id_size_bytes();
    let mut body = Vec::with_capacity(ids.len() * size);
    for id in ids {
        body.extend_from_slice(&id.to_le_bytes()[..size]);
    }
    body
}

/// One answer per id, in order: the entries answer a subsequence of the ids (each entry
/// names its id), so walking both side by side puts each entry on its id and `None` on the
/// ids without one. Entries that do not fit that pattern are a protocol error.
pub(crate) fn match_ids(
    operation: LookupOperation,
    ids: &[u128],
    found: &Found,
) -> Result<Vec<Option<LookupEntry>>, ClientError> {
    let protocol = |reason: String| ClientError::Protocol(reason);
    let count = u32::try_from(ids.len()).map_err(|_| protocol("too many ids".to_string()))?;
    let entries = LookupEntries::new(operation, count, &found.entries)
        .filter(|_| found.ids_count == count)
        .ok_or_else(|| protocol(format!("a lookup reply for {} ids", found.ids_count)))?;
    let mut entries = entries.iter().peekable();
    let mut answers = Vec::with_capacity(ids.len());
    for &id in ids {
        let answers_this_id = match entries.peek() {
            Some(Ok(entry)) => entry.id() == id,
            Some(Err(error)) => return Err(protocol(format!("lookup entry: {error}"))),
            None => false,
        };
        let entry = match answers_this_id {
            true => entries.next().and_then(Result::ok),
            false => None,
        };
        answers.push(entry);
    }
    match entries.next() {
        None => Ok(answers),
        Some(_) => Err(protocol(
            "a lookup entry answers no id, or ids out of order".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use surge_core::{Account, AccountId, Sku, SkuId};

    use super::*;

    fn account(id: u128) -> LookupEntry {
        LookupEntry::Account(Account {
            id: AccountId(id),
            ..Account::default()
        })
    }

    fn found(ids_count: u32, entries: &[LookupEntry]) -> Found {
        let mut bytes = Vec::new();
        for entry in entries {
            entry.encode(&mut bytes);
        }
        Found {
            ids_count,
            entries: bytes,
        }
    }

    #[test]
    fn entries_land_on_their_ids_and_the_rest_are_none() {
        let ids = [4, 5, 6, 4];
        let reply = found(4, &[account(5), account(4)]);
        let answers = match_ids(LookupOperation::Accounts, &ids, &reply).unwrap();
        assert_eq!(answers, [None, Some(account(5)), None, Some(account(4))]);
        let none = match_ids(LookupOperation::Accounts, &ids, &found(4, &[])).unwrap();
        assert_eq!(none, [None; 4]);
    }

    #[test]
    fn entries_out_of_order_or_for_other_ids_are_protocol_errors() {
        let ids = [4, 5];
        for reply in [
            found(2, &[account(5), account(4)]),
            found(2, &[account(7)]),
            found(3, &[account(4)]),
        ] {
            let answer = match_ids(LookupOperation::Accounts, &ids, &reply);
            assert!(
                matches!(answer, Err(ClientError::Protocol(_))),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn sku_ids_are_eight_bytes() {
        assert_eq!(ids_body(LookupOperation::Skus, &[1, 2]).len(), 16);
        assert_eq!(ids_body(LookupOperation::Orders, &[1, 2]).len(), 32);
        let sku = LookupEntry::Sku(Sku {
            id: SkuId(9),
            ..Sku::default()
        });
        let answers = match_ids(LookupOperation::Skus, &[9], &found(1, &[sku])).unwrap();
        assert_eq!(answers, [Some(sku)]);
    }
}
