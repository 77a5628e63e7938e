//! Hints that start loading memory into cache before the code that needs it runs.
//!
//! Both users (the HalfSpaceTrees walks and the per-card feature state) follow chains of
//! pointers into memory far larger than a core's cache: a load that waits for the previous
//! one costs a full trip to memory each time. Asking for every line as soon as its address
//! is known lets those trips overlap.

/// Hints the CPU to start loading `item` into cache. Only a hint: it never faults and has no
/// effect on results.
#[inline(always)]
pub(crate) fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unsafe_code)]
        // SAFETY: a prefetch is only a cache hint and never faults; the pointer comes from a
        // live reference anyway. SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

/// [`prefetch`] of `slice[index]`, if there is one.
#[inline(always)]
pub(crate) fn prefetch_at<T>(slice: &[T], index: usize) {
    if let Some(item) = slice.get(index) {
        prefetch(item);
    }
}
