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

use std::alloc::Layout;
use std::collections::BinaryHeap;
use std::ptr::NonNull;

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
    advised(Vec::with_capacity(capacity))
}

/// [`reserved_vec`] with room for `wanted` values if the allocator grants that much
/// address space (it may not, under strict overcommit), else for `capacity`.
pub(crate) fn reserved_vec_preferring<T>(capacity: usize, wanted: usize) -> Vec<T> {
    let mut buffer: Vec<T> = Vec::new();
    if buffer.try_reserve_exact(wanted.max(capacity)).is_err() {
        buffer.reserve_exact(capacity);
    }
    advised(buffer)
}

/// `buffer`, its capacity advised for huge pages if it is large enough to gain.
fn advised<T>(buffer: Vec<T>) -> Vec<T> {
    let size_bytes = buffer.capacity() * std::mem::size_of::<T>();
    if size_bytes >= HUGE_PAGE_WORTHWHILE_BYTES {
        advise_huge_pages(buffer.as_ptr().cast(), size_bytes);
    }
    buffer
}

/// Touches the memory of the first `count` values of an empty `buffer`'s capacity (by
/// writing `value` there) and leaves it empty, so pushing them later takes no page fault.
pub(crate) fn touch<T: Copy>(buffer: &mut Vec<T>, count: usize, value: T) {
    touch_from(buffer, 0, count, value);
}

/// Touches the memory of values `from..count` of an empty `buffer`'s capacity (by writing
/// `value` there), for a buffer whose first `from` values' memory is already touched.
pub(crate) fn touch_from<T: Copy>(buffer: &mut Vec<T>, from: usize, count: usize, value: T) {
    assert!(buffer.is_empty());
    let count = count.min(buffer.capacity());
    if let Some(untouched) = buffer.spare_capacity_mut().get_mut(from..count) {
        for slot in untouched {
            slot.write(value);
        }
    }
}

/// An empty heap with room for `capacity` items, its memory touched (with huge pages
/// where the kernel has them): a heap grows at its end, one page fault per page pushed
/// into otherwise.
pub(crate) fn touched_heap<T: Copy + Ord>(capacity: usize, value: T) -> BinaryHeap<T> {
    let mut buffer = reserved_vec(capacity);
    touch(&mut buffer, capacity, value);
    BinaryHeap::from(buffer)
}

/// A fixed number of `T`s whose first one starts on a 2 MiB boundary (a 64-byte one for
/// buffers too small for huge pages): the tables' slots. A `Vec` this large starts 16
/// bytes past a page (the allocator's header), so every 128-byte account spanned three
/// cache lines instead of two and every other 32-byte slot two instead of one: more
/// misses per lookup and more prefetches per command, on every table.
pub(crate) struct AlignedSlots<T: Copy> {
    start: NonNull<T>,
    len: usize,
}

// SAFETY: an `AlignedSlots` owns its `T`s like a `Vec<T>` does; nothing else points into
// them, so it moves and shares between threads exactly as `T` does.
#[allow(unsafe_code)]
unsafe impl<T: Copy + Send> Send for AlignedSlots<T> {}
// SAFETY: as above; `&AlignedSlots` only hands out `&[T]`.
#[allow(unsafe_code)]
unsafe impl<T: Copy + Sync> Sync for AlignedSlots<T> {}

impl<T: Copy> AlignedSlots<T> {
    /// `len` copies of `value`, with the kernel asked to back them with huge pages (touched
    /// after the advice, so the faults that zero the pages take huge pages).
    #[allow(unsafe_code)]
    pub(crate) fn filled(len: usize, value: T) -> Self {
        let Some(layout) = Self::layout(len) else {
            return Self {
                start: NonNull::dangling(),
                len,
            };
        };
        // SAFETY: `layout` has a non-zero size (checked by `layout`).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(start) = NonNull::new(raw.cast::<T>()) else {
            std::alloc::handle_alloc_error(layout);
        };
        if layout.size() >= HUGE_PAGE_WORTHWHILE_BYTES {
            advise_huge_pages(raw, layout.size());
        }
        for index in 0..len {
            // SAFETY: `index < len` lies inside the allocation, which is aligned for `T`.
            unsafe { start.as_ptr().add(index).write(value) };
        }
        Self { start, len }
    }

    /// The allocation's layout, `None` if it allocates nothing (no `T`s, or zero-sized).
    fn layout(len: usize) -> Option<Layout> {
        let size = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("a table's size fits in memory");
        if size == 0 {
            return None;
        }
        let align = if size >= HUGE_PAGE_WORTHWHILE_BYTES {
            HUGE_PAGE_SIZE_BYTES
        } else {
            64
        }
        .max(std::mem::align_of::<T>());
        Some(Layout::from_size_align(size, align).expect("a valid layout"))
    }
}

impl<T: Copy> std::ops::Deref for AlignedSlots<T> {
    type Target = [T];

    #[allow(unsafe_code)]
    fn deref(&self) -> &[T] {
        // SAFETY: `start` points to `len` initialised `T`s this buffer owns (or is dangling
        // and aligned with nothing to read when it allocated nothing).
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for AlignedSlots<T> {
    #[allow(unsafe_code)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for AlignedSlots<T> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `filled` with this very layout; `T: Copy` needs no drop.
            unsafe { std::alloc::dealloc(self.start.as_ptr().cast(), layout) };
        }
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for AlignedSlots<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AlignedSlots")
            .field("len", &self.len)
            .finish()
    }
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
    fn a_buffer_touched_from_a_point_stays_empty_and_keeps_its_capacity() {
        let mut buffer: Vec<u64> = super::reserved_vec_preferring(1_000, 4_000);
        assert_eq!(buffer.capacity(), 4_000);
        super::touch_from(&mut buffer, 500, 3_000, 9);
        assert!(buffer.is_empty());
        assert_eq!(buffer.capacity(), 4_000);
        // Past the capacity, or from past the end, nothing is touched (nor allocated).
        super::touch_from(&mut buffer, 3_000, usize::MAX, 9);
        super::touch_from(&mut buffer, 5_000, 6_000, 9);
        assert_eq!(buffer.capacity(), 4_000);
        // More address space than can be had: the room asked for, no more.
        let fallback: Vec<u64> = super::reserved_vec_preferring(1_000, usize::MAX / 4);
        assert_eq!(fallback.capacity(), 1_000);
    }

    #[test]
    fn aligned_slots_hold_their_values_on_a_line_boundary() {
        for len in [0, 1, 16, 1_000, 5_000_000] {
            let mut slots = super::AlignedSlots::filled(len, [7u128, 8]);
            assert_eq!(slots.len(), len);
            assert!(slots.iter().all(|value| *value == [7, 8]));
            if len > 0 {
                assert_eq!(slots.as_ptr() as usize % 64, 0);
                slots[len - 1] = [1, 2];
                assert_eq!(slots[len - 1], [1, 2]);
            }
        }
        let big = super::AlignedSlots::filled(1 << 20, 0u128);
        assert_eq!(big.as_ptr() as usize % super::HUGE_PAGE_SIZE_BYTES, 0);
    }

    #[test]
    fn filled_vec_has_the_values() {
        let buffer = super::filled_vec(5_000_000, 7u32);
        assert_eq!(buffer.len(), 5_000_000);
        assert!(buffer.iter().all(|value| *value == 7));
    }
}
