//! Hints that start loading memory into cache before the code that needs it runs.
//!
//! Both users (the HalfSpaceTrees walks and the per-card feature state) follow chains of
//! pointers into memory far larger than a core's cache: a load that waits for the previous
//! one costs a full trip to memory each time. Asking for every line as soon as its address
//! is known lets those trips overlap.

/// Hints the CPU to start loading the cache line that holds the start of `item`. Only a hint:
/// it never faults and has no effect on results.
#[inline(always)]
pub(crate) fn prefetch<T>(item: &T) {
    prefetch_address((item as *const T).cast());
}

/// [`prefetch`] of the lines holding both the first and the last byte of `item`: all of it
/// for an item of up to 65 bytes (a 48-byte summary spans two lines when it starts past a
/// line's first 16 bytes).
#[inline(always)]
pub(crate) fn prefetch_whole<T>(item: &T) {
    let start: *const i8 = (item as *const T).cast();
    prefetch_address(start);
    // Address arithmetic only: nothing is read through this pointer.
    prefetch_address(start.wrapping_add(size_of::<T>().saturating_sub(1)));
}

/// [`prefetch`] of `slice[index]`, if there is one.
#[inline(always)]
pub(crate) fn prefetch_at<T>(slice: &[T], index: usize) {
    if let Some(item) = slice.get(index) {
        prefetch(item);
    }
}

#[inline(always)]
fn prefetch_address(address: *const i8) {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unsafe_code)]
        // SAFETY: a prefetch is only a cache hint: it reads nothing into the program and never
        // faults, whatever the address (callers pass addresses inside live objects anyway).
        // SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(address);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
