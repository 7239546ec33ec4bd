//! The newest entries of the log-structured index, in memory: appended in write order into
//! one byte buffer (no allocation per entry), read by scanning, sorted only when a
//! background thread writes them out as a run.

use std::cmp::Ordering;

/// Where one entry's bytes are, with its key's first 32 bytes to compare quickly (the
/// index's keys differ within them: a kind byte, then an id of 16 bytes, then a time or
/// a log position).
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The key's first 32 bytes as two big-endian integers, zero-padded: ordering by them
    /// first agrees with ordering keys byte by byte.
    prefix: (u128, u128),
    at: u32,
    key_len: u32,
    value_len: u32,
}

/// Entries in write order; a later entry for a key replaces an earlier one.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
    /// Entries pushed as point keys (a key written twice counts twice): what a run's
    /// filter is sized for.
    points: usize,
}

pub(crate) fn prefix_of(key: &[u8]) -> (u128, u128) {
    let mut bytes = [0u8; 32];
    let length = key.len().min(32);
    bytes[..length].copy_from_slice(&key[..length]);
    let (high, low) = bytes.split_at(16);
    (
        u128::from_be_bytes(high.try_into().expect("16 bytes")),
        u128::from_be_bytes(low.try_into().expect("16 bytes")),
    )
}

impl Memtable {
    /// Appends an entry; `point` says whether lookups ask for its key alone (counted
    /// for the run's filter).
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8], point: bool) {
        self.points += usize::from(point);
        // The store freezes a memtable at `MEMTABLE_BYTES_MAX` at most, and one record's
        // entries are a few MiB.
        let at = u32::try_from(self.bytes.len()).expect("a memtable stays under 4 GiB");
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self.slots.push(Slot {
            prefix: prefix_of(key),
            at,
            key_len: key.len() as u32,
            value_len: value.len() as u32,
        });
    }

    /// Empties it, keeping its memory for the next entries.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.slots.clear();
        self.points = 0;
    }

    /// Entries pushed as point keys.
    pub(crate) fn points(&self) -> usize {
        self.points
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes held: the entries and their slots.
    pub(crate) fn size_bytes(&self) -> usize {
        self.bytes.len() + self.slots.len() * std::mem::size_of::<Slot>()
    }

    fn key(&self, slot: &Slot) -> &[u8] {
        let at = slot.at as usize;
        &self.bytes[at..at + slot.key_len as usize]
    }

    fn value(&self, slot: &Slot) -> &[u8] {
        let at = (slot.at + slot.key_len) as usize;
        &self.bytes[at..at + slot.value_len as usize]
    }

    fn compare(&self, a: &Slot, b: &Slot) -> Ordering {
        a.prefix
            .cmp(&b.prefix)
            .then_with(|| self.key(a).cmp(self.key(b)))
    }

    /// The newest value under `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let prefix = prefix_of(key);
        self.slots
            .iter()
            .rev()
            .find(|slot| slot.prefix == prefix && self.key(slot) == key)
            .map(|slot| self.value(slot))
    }

    /// For each of `keys` not found yet (`None` in `found`), its newest value here: one
    /// pass over the entries whatever the number of keys.
    pub(crate) fn get_many(&self, keys: &[Vec<u8>], found: &mut [Option<Vec<u8>>]) {
        let mut wanted: Vec<((u128, u128), usize)> = keys
            .iter()
            .enumerate()
            .filter(|(index, _)| found[*index].is_none())
            .map(|(index, key)| (prefix_of(key), index))
            .collect();
        if wanted.is_empty() {
            return;
        }
        wanted.sort_unstable();
        for slot in self.slots.iter().rev() {
            let first = wanted.partition_point(|(prefix, _)| *prefix < slot.prefix);
            for (prefix, index) in &wanted[first..] {
                if *prefix != slot.prefix {
                    break;
                }
                if found[*index].is_none() && keys[*index] == self.key(slot) {
                    found[*index] = Some(self.value(slot).to_vec());
                }
            }
        }
    }

    /// Entries with `from <= key < to`, the newest value of each key, in key order, at
    /// most `limit`.
    pub(crate) fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Vec<(&[u8], &[u8])> {
        let (low, high) = (prefix_of(from), prefix_of(to));
        let mut found: Vec<(usize, &Slot)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.prefix >= low && slot.prefix <= high)
            .filter(|(_, slot)| {
                let key = self.key(slot);
                key >= from && key < to
            })
            .collect();
        // Key order, newest last among equal keys; then keep the newest of each.
        found.sort_by(|(a_at, a), (b_at, b)| self.compare(a, b).then(a_at.cmp(b_at)));
        let mut entries: Vec<(&[u8], &[u8])> = Vec::with_capacity(found.len().min(limit));
        for (_, slot) in found {
            let key = self.key(slot);
            let full = entries.len() == limit;
            match entries.last_mut() {
                Some(last) if last.0 == key => last.1 = self.value(slot),
                _ if full => break,
                _ => entries.push((key, self.value(slot))),
            }
        }
        entries
    }

    /// Every key once, with its newest value, in key order.
    pub(crate) fn sorted(&self) -> Vec<(&[u8], &[u8])> {
        // By the keys' first 32 bytes, then write order (the order of `at`): compared as
        // integers, without reading the keys' bytes.
        let mut order: Vec<Slot> = self.slots.clone();
        order.sort_unstable_by_key(|slot| (slot.prefix, slot.at));
        // Keys alike in their first 32 bytes (longer keys, or one key written twice) are
        // adjacent now: order each such group by the whole key, stably, so equal keys stay
        // in write order and the last of them is the newest.
        let mut start = 0;
        while start < order.len() {
            let prefix = order[start].prefix;
            let alike = order[start..]
                .iter()
                .take_while(|slot| slot.prefix == prefix)
                .count();
            if alike > 1 {
                order[start..start + alike].sort_by(|a, b| self.key(a).cmp(self.key(b)));
            }
            start += alike;
        }
        let mut entries: Vec<(&[u8], &[u8])> = Vec::with_capacity(order.len());
        let mut previous: Option<&Slot> = None;
        for slot in &order {
            let value = self.value(slot);
            match (previous, entries.last_mut()) {
                (Some(before), Some(last)) if self.compare(before, slot).is_eq() => last.1 = value,
                _ => entries.push((self.key(slot), value)),
            }
            previous = Some(slot);
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_value_wins_and_order_is_byte_order() {
        let mut table = Memtable::default();
        table.push(b"b", b"1", false);
        table.push(b"a\x00\x00\x00\x00\x00\x00\x00\x01", b"2", false);
        table.push(b"a", b"3", false);
        table.push(b"b", b"4", false);
        table.push(b"ab", b"5", false);
        assert_eq!(table.get(b"b"), Some(&b"4"[..]));
        assert_eq!(table.get(b"c"), None);
        let keys: Vec<&[u8]> = table.sorted().iter().map(|(key, _)| *key).collect();
        assert_eq!(
            keys,
            vec![&b"a"[..], b"a\x00\x00\x00\x00\x00\x00\x00\x01", b"ab", b"b"]
        );
        assert_eq!(table.sorted()[3], (&b"b"[..], &b"4"[..]));
        let scanned = table.scan(b"a\x00", b"b\x00", 2);
        assert_eq!(
            scanned,
            vec![
                (&b"a\x00\x00\x00\x00\x00\x00\x00\x01"[..], &b"2"[..]),
                (b"ab", b"5")
            ]
        );
        assert_eq!(table.scan(b"b", b"c", 10), vec![(&b"b"[..], &b"4"[..])]);
        // Keys alike in their first 32 bytes.
        let long = |last: u8| [[9u8; 40].as_slice(), &[last]].concat();
        table.push(&long(2), b"6", false);
        table.push(&long(1), b"7", false);
        table.push(&long(2), b"8", false);
        let sorted = table.sorted();
        let head: Vec<(&[u8], &[u8])> = sorted[..2].to_vec();
        assert_eq!(
            head,
            vec![(&long(1)[..], &b"7"[..]), (&long(2)[..], &b"8"[..])]
        );
        assert_eq!(table.get(&long(2)), Some(&b"8"[..]));
    }
}
