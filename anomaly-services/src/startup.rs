//! What every service does before its loop: retries with backoff, and the shutdown flag.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use log::warn;

/// Calls `attempt` up to `tries` times, sleeping `delay` after a failure and multiplying the
/// delay by `factor` (capped at `cap`) each time; returns the last error if all fail.
///
/// ```
/// use std::time::Duration;
/// use anomaly_services::startup::retry;
///
/// let mut calls = 0;
/// let result: Result<u32, String> = retry("demo", 5, Duration::ZERO, 2, Duration::ZERO, || {
///     calls += 1;
///     if calls < 3 { Err("not yet".to_string()) } else { Ok(calls) }
/// });
/// assert_eq!(result, Ok(3));
/// ```
pub fn retry<T, E: std::fmt::Display>(
    what: &str,
    tries: u32,
    mut delay: Duration,
    factor: u32,
    cap: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut n = 1;
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if n >= tries => return Err(e),
            Err(e) => {
                warn!(what = what, attempt = n, error = e.to_string().as_str(); "Connection failed, retrying");
                std::thread::sleep(delay);
                delay = (delay * factor).min(cap);
                n += 1;
            }
        }
    }
}

/// Kafka: 1 s doubling, capped at 60 s, 20 tries.
pub fn retry_kafka<T, E: std::fmt::Display>(attempt: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    retry(
        "kafka",
        20,
        Duration::from_secs(1),
        2,
        Duration::from_secs(60),
        attempt,
    )
}

/// Database and Redis: 10 tries, 5 s apart.
pub fn retry_store<T, E: std::fmt::Display>(
    what: &str,
    attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    retry(
        what,
        10,
        Duration::from_secs(5),
        1,
        Duration::from_secs(5),
        attempt,
    )
}

/// Sleeps `wait`, waking early (within 100 ms) once `shutdown` is set: every wait of a
/// service's threads (backoff, idle, pause) goes through it, so SIGTERM is never kept waiting.
///
/// ```
/// use std::sync::atomic::AtomicBool;
/// use std::time::{Duration, Instant};
/// use anomaly_services::startup::sleep_unless_shutdown;
///
/// let started = Instant::now();
/// sleep_unless_shutdown(Duration::from_secs(60), &AtomicBool::new(true));
/// assert!(started.elapsed() < Duration::from_secs(1));
/// ```
pub fn sleep_unless_shutdown(wait: Duration, shutdown: &AtomicBool) {
    let until = std::time::Instant::now() + wait;
    while !shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// A flag set by SIGTERM or SIGINT; the loop checks it between records.
pub fn shutdown_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}
