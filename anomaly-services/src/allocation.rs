//! How the binaries get their memory: the global allocator, and whether the main job's fresh
//! memory comes in transparent huge pages.

/// Every binary of this crate (the services, the main job, the examples, the tests) allocates
/// and frees several small buffers per record (decoded messages, card states, payloads); with
/// the system allocator that churn was a fifth of a service's CPU time. mimalloc serves it
/// from thread-local free lists (docs/BENCHMARKS.md has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for the rest of this process and the processes it starts
/// (Linux; elsewhere it does nothing and returns `Ok`).
///
/// For a process whose memory is mostly fresh (the main job): mimalloc asks the kernel for
/// huge pages, and the kernel zeroes each 2 MB page whole on first touch. On a virtual machine
/// whose host has taken freed memory back, that zeroing is many times slower than for memory
/// still backed, and it was a quarter of the main job's CPU time on cold memory; 4 KB pages
/// cost the same either way, and only the bytes touched are zeroed. What it costs instead
/// are TLB misses on the card states' random reads, which showed on warm memory on one VM
/// and not on another. Long-running services keep huge pages: they fault their memory in
/// once. docs/BENCHMARKS.md ("Cold memory") has the measurements.
///
/// Call it first thing in `main`: pages already faulted in stay as they are.
///
/// ```
/// anomaly_services::allocation::disable_transparent_huge_pages()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    set_thp_disabled(true)?;
    Ok(())
}

/// prctl(PR_SET_THP_DISABLE) with `disabled` as its argument.
#[cfg(target_os = "linux")]
fn set_thp_disabled(disabled: bool) -> std::io::Result<()> {
    let flag = libc::c_ulong::from(disabled);
    let unused: libc::c_ulong = 0;
    #[allow(unsafe_code)]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only (as unsigned longs, the width the
    // kernel reads) and changes no memory of this program; the kernel applies it to later page
    // faults.
    let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, flag, unused, unused, unused) };
    if status != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn thp_disabled() -> i32 {
        let unused: libc::c_ulong = 0;
        #[allow(unsafe_code)]
        // SAFETY: PR_GET_THP_DISABLE reads a process flag; the arguments are integers.
        unsafe {
            libc::prctl(libc::PR_GET_THP_DISABLE, unused, unused, unused, unused)
        }
    }

    /// The flag is process-wide, so this changes page sizes (never results) for the other
    /// tests of this binary as well.
    #[test]
    fn the_kernel_reports_huge_pages_disabled() {
        // Cleared first: a flag inherited from the parent would make the check prove nothing.
        set_thp_disabled(false).unwrap();
        assert_eq!(thp_disabled(), 0);
        disable_transparent_huge_pages().unwrap();
        assert_eq!(thp_disabled(), 1);
    }
}
