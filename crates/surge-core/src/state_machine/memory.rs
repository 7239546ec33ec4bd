//! Large buffers for the state machine's tables, backed by transparent huge pages where the
//! kernel offers them. The tables are hundreds of megabytes touched at random: with 4 KiB
//! pages nearly every lookup also misses the TLB, and the page walks, not the cache misses,
//! become the limit. A 2 MiB page covers 512 times as much.
//!
//! This is a hint about memory, not I/O: it changes no value and no result.

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
    fn filled_vec_has_the_values() {
        let buffer = super::filled_vec(5_000_000, 7u32);
        assert_eq!(buffer.len(), 5_000_000);
        assert!(buffer.iter().all(|value| *value == 7));
    }
}
