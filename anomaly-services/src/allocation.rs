//! How the binaries get their memory: the global allocator, and whether a short run's fresh
//! memory comes in transparent huge pages.

/// Every binary of this crate (the services, the main job, the examples, the tests) allocates
/// and frees several small buffers per record (decoded messages, card states, payloads); with
/// the system allocator that churn was a fifth of a service's CPU time. mimalloc serves it
/// from thread-local free lists (docs/BENCHMARKS.md has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for the rest of this process (Linux; elsewhere it does
/// nothing and returns `Ok`).
///
/// For a process that runs a fraction of a second and whose memory is mostly fresh (the main
/// job): mimalloc asks the kernel for huge pages, and the kernel zeroes each 2 MB page
/// whole on first touch. On a virtual machine whose host has taken the memory back (after
/// about 2 s of it being free, here), that zeroing runs at 250-300 MB/s instead of several
/// GB/s and was a quarter of the main job's CPU time; 4 KB pages fault in at about 1.7 GB/s
/// whatever the memory's history, and only the bytes touched are zeroed (peak RSS 58 -> 37 MB).
/// Long-running services keep huge pages: they pay the zeroing once and save TLB misses
/// for hours. docs/BENCHMARKS.md has the measurements.
///
/// Call it first thing in `main`: pages already faulted in stay as they are.
///
/// ```
/// anomaly_services::allocation::disable_transparent_huge_pages()?;
/// let card_states = vec![0u8; 4 << 20]; // faulted in as 4 KB pages on Linux
/// # drop(card_states);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        #[allow(unsafe_code)]
        // SAFETY: prctl(PR_SET_THP_DISABLE) takes integer arguments only and changes no memory
        // of this program; the kernel applies it to later page faults.
        let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if status != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_reports_huge_pages_disabled() {
        disable_transparent_huge_pages().unwrap();
        #[allow(unsafe_code)]
        // SAFETY: PR_GET_THP_DISABLE reads a process flag; the arguments are integers.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }
}
