//! A bounds-checked cursor over a snapshot's untrusted bytes.

use super::super::*;

/// A cursor over untrusted bytes: every read is bounds-checked and returns an error.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        let taken = self
            .offset
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.offset..end));
        match taken {
            Some(taken) => {
                self.offset += len;
                Ok(taken)
            }
            None => Err(SnapshotError::Truncated {
                offset: self.offset,
                needed: len.saturating_sub(self.remaining()),
            }),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, SnapshotError> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn u128(&mut self) -> Result<u128, SnapshotError> {
        self.array().map(u128::from_le_bytes)
    }

    pub(crate) fn record<T: Pod>(&mut self) -> Result<T, SnapshotError> {
        self.take(size_of::<T>()).map(bytemuck::pod_read_unaligned)
    }

    /// A section's item count, checked to fit in the bytes left, so nothing is allocated
    /// for items that are not there.
    pub(crate) fn count(&mut self, item_size_bytes: usize) -> Result<usize, SnapshotError> {
        let offset = self.offset;
        let count = self.u64()?;
        let size_bytes = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(item_size_bytes))
            .ok_or_else(|| invalid(offset, "section count"))?;
        if size_bytes > self.remaining() {
            return Err(SnapshotError::Truncated {
                offset: self.offset,
                needed: size_bytes - self.remaining(),
            });
        }
        Ok(size_bytes / item_size_bytes)
    }

    /// A section whose items must come in strictly increasing key order.
    pub(crate) fn sorted_section<T, K: Ord>(
        &mut self,
        item_size_bytes: usize,
        what: &'static str,
        mut read: impl FnMut(&mut Self) -> Result<T, SnapshotError>,
        key: impl Fn(&T) -> K,
    ) -> Result<Vec<T>, SnapshotError> {
        let count = self.count(item_size_bytes)?;
        let mut items: Vec<T> = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = self.offset;
            let item = read(self)?;
            if let Some(previous) = items.last() {
                if key(previous) >= key(&item) {
                    return Err(invalid(offset, what));
                }
            }
            items.push(item);
        }
        Ok(items)
    }
}
