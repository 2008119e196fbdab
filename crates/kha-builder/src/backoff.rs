//! The one retry schedule of the builder: jittered exponential backoff with
//! a cap, used by every loop that reconnects or retries a call (the
//! session, the log shipper, reporting a result), so builders that lost the
//! control node together do not come back in lockstep.

use std::time::Duration;

/// Waits that double from `first` up to `cap`, each jittered by ±50 %.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            step: first.min(cap),
        }
    }

    /// Reconnecting the session: 200 ms, doubling to 5 s.
    pub fn session() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// Retrying one call (a log stream, a result): 100 ms, doubling to 5 s.
    pub fn call() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The wait before the next try; the one after is twice as long, up to
    /// the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = jitter(self.step);
        self.step = (self.step * 2).min(self.cap);
        d
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.step = self.first.min(self.cap);
    }
}

/// `d` ±50 %, uniformly.
pub fn jitter(d: Duration) -> Duration {
    let f: f64 = 0.5 + rand::random::<f64>();
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        for step in [100, 200, 400, 800, 1000, 1000, 1000] {
            let d = b.next_delay();
            assert!(
                d >= ms(step / 2) && d <= ms(step * 3 / 2),
                "{d:?} for {step}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= ms(150));
        // A first step above the cap starts at the cap.
        let mut b = Backoff::new(ms(10_000), ms(1000));
        assert!(b.next_delay() <= ms(1500));
    }

    #[test]
    fn jitter_spreads() {
        let d = Duration::from_secs(1);
        let waits: Vec<Duration> = (0..200).map(|_| jitter(d)).collect();
        assert!(waits.iter().all(|w| *w >= d / 2 && *w <= d * 3 / 2));
        assert!(waits.iter().any(|w| *w < d) && waits.iter().any(|w| *w > d));
    }
}
