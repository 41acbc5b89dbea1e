//! The one retry pacing ferry uses after transient errors: exponential, from half a second up to
//! thirty seconds, reset once work succeeds again.
//!
//! Guarantees: every wait is bounded by the ceiling, so a source or target that comes back is
//! retried within thirty seconds; a caller that made progress calls [`Backoff::reset`], so one
//! failure after hours of streaming is retried quickly again.

use std::time::Duration;

/// Exponential backoff between retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    /// 0.5 s, doubling, at most 30 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait the next [`Backoff::wait`] takes.
    pub fn current(&self) -> Duration {
        self.next
    }

    /// Sleeps for the current wait, then doubles it (up to the ceiling).
    pub async fn wait(&mut self) {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(wait).await;
    }

    /// Work succeeded: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(b.current());
            b.wait().await;
        }
        assert_eq!(
            seen,
            [500, 1000, 2000, 2000].map(Duration::from_millis).to_vec()
        );
        b.reset();
        assert_eq!(b.current(), Duration::from_millis(500));
    }
}
