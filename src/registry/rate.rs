//! A limit on the download rate, shared by every blob download of a run, so a fleet of nodes
//! does not saturate a WAN link.

use std::time::{Duration, Instant};

/// Bytes per second for all downloads together. Callers report each chunk with
/// [`RateLimit::consume`], which sleeps while the run is ahead of the limit.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    /// Start of the current window and the bytes counted in it.
    window: tokio::sync::Mutex<(Instant, u64)>,
}

/// Idle time after which the window restarts, so a pause earns no burst above the limit.
const IDLE_RESET: Duration = Duration::from_secs(1);

impl RateLimit {
    pub fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit { bytes_per_second: bytes_per_second.max(1), window: tokio::sync::Mutex::new((Instant::now(), 0)) }
    }

    /// Counts `bytes` and waits until the total since the window start fits the limit.
    pub async fn consume(&self, bytes: u64) {
        let wait = {
            let mut window = self.window.lock().await;
            let due = Duration::from_secs_f64(window.1 as f64 / self.bytes_per_second as f64);
            if window.0.elapsed() > due + IDLE_RESET {
                *window = (Instant::now(), 0);
            }
            window.1 += bytes;
            let due = Duration::from_secs_f64(window.1 as f64 / self.bytes_per_second as f64);
            due.saturating_sub(window.0.elapsed())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limit_paces_bytes() {
        let limit = RateLimit::new(1_000_000);
        let started = Instant::now();
        for _ in 0..4 {
            limit.consume(100_000).await;
        }
        // 400 kB at 1 MB/s take about 0.4 s.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
}
