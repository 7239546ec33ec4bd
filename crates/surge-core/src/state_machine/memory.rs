//! Large buffers for the state machine's tables, backed by transparent huge pages where the
//! kernel offers them. The tables are hundreds of megabytes touched at random: with 4 KiB
//! pages nearly every lookup also misses the TLB, and the page walks, not the cache misses,
//! become the limit. A 2 MiB page covers 512 times as much.
//!
//! Buffers can also be reserved (advised, nothing touched) and touched ahead of use, so the
//! page faults that first touch memory happen when the state machine is sized rather than
//! on the hot path.
//!
//! This is a hint about memory, not I/O: it changes no value and no result.

use std::collections::BinaryHeap;

/// A vector of `len` copies of `value`, with the kernel asked to back it with huge pages.
pub(crate) fn filled_vec<T: Copy>(len: usize, value: T) -> Vec<T> {
    let mut buffer: Vec<T> = Vec::with_capacity(len);
    let size_bytes = len * std::mem::size_of::<T>();
    // Small buffers gain nothing and would only fragment huge pages.
    if size_bytes >= HUGE_PAGE_WORTHWHILE_BYTES {
        advise_huge_pages(buffer.as_ptr().cast(), size_bytes);
    }
    // Touched only after the advice, so the faults that zero the pages take huge pages.
    buffer.resize(len, value);
    buffer
}

/// An empty vector with room for `capacity` values, with the kernel asked to back it with
/// huge pages. Nothing is touched: pages are faulted in as values are pushed, one huge page
/// at a time where the kernel has them.
pub(crate) fn reserved_vec<T>(capacity: usize) -> Vec<T> {
    let buffer: Vec<T> = Vec::with_capacity(capacity);
    let size_bytes = capacity * std::mem::size_of::<T>();
    if size_bytes >= HUGE_PAGE_WORTHWHILE_BYTES {
        advise_huge_pages(buffer.as_ptr().cast(), size_bytes);
    }
    buffer
}

/// Touches the memory of the first `count` values of an empty `buffer`'s capacity (by
/// writing `value` there) and leaves it empty, so pushing them later takes no page fault.
pub(crate) fn touch<T: Copy>(buffer: &mut Vec<T>, count: usize, value: T) {
    assert!(buffer.is_empty());
    let count = count.min(buffer.capacity());
    buffer.resize(count, value);
    buffer.clear();
}

/// An empty heap with room for `capacity` items, its memory touched (with huge pages
/// where the kernel has them): a heap grows at its end, one page fault per page pushed
/// into otherwise.
pub(crate) fn touched_heap<T: Copy + Ord>(capacity: usize, value: T) -> BinaryHeap<T> {
    let mut buffer = reserved_vec(capacity);
    touch(&mut buffer, capacity, value);
    BinaryHeap::from(buffer)
}

/// Below this size a buffer keeps ordinary pages.
const HUGE_PAGE_WORTHWHILE_BYTES: usize = 16 << 20;

const HUGE_PAGE_SIZE_BYTES: usize = 2 << 20;

/// `madvise(MADV_HUGEPAGE)` over the whole 2 MiB pages inside `[start, start + size)`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_huge_pages(start: *const u8, size_bytes: usize) {
    let first = (start as usize).next_multiple_of(HUGE_PAGE_SIZE_BYTES);
    let end = (start as usize + size_bytes) / HUGE_PAGE_SIZE_BYTES * HUGE_PAGE_SIZE_BYTES;
    if end <= first {
        return;
    }
    // SAFETY: the range lies inside an allocation this function's caller owns and has not
    // handed out; MADV_HUGEPAGE only changes how the kernel backs the pages, never their
    // contents or mapping. A failure (THP disabled) leaves ordinary pages, which is fine.
    let _ = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: *const u8, _size_bytes: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_touched_buffer_is_empty_and_keeps_its_capacity() {
        let mut buffer: Vec<u64> = super::reserved_vec(3_000_000);
        let capacity = buffer.capacity();
        assert!(capacity >= 3_000_000);
        super::touch(&mut buffer, 2_000_000, 9);
        assert!(buffer.is_empty());
        assert_eq!(buffer.capacity(), capacity);
        // Past the capacity nothing is touched (nor allocated).
        super::touch(&mut buffer, usize::MAX, 9);
        assert_eq!(buffer.capacity(), capacity);
    }

    #[test]
    fn filled_vec_has_the_values() {
        let buffer = super::filled_vec(5_000_000, 7u32);
        assert_eq!(buffer.len(), 5_000_000);
        assert!(buffer.iter().all(|value| *value == 7));
    }
}
