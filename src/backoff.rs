//! Retry delays: `backoff_base ^ attempts` seconds, capped at `backoff_max`.
//!
//! A pure function of its inputs, so it is tested without a clock. The base may be a
//! decimal (1.5) and may be 1 (a constant one-second delay); the result never
//! overflows, however many attempts a job has had.

use std::time::Duration;

/// The retry policy in force when a failure happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: f64,
    max: Duration,
}

impl Backoff {
    /// `base` must be at least 1 (checked where the setting is parsed).
    pub fn new(base: f64, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The delay before the attempt after `attempts` finished ones.
    pub fn delay(&self, attempts: i64) -> Duration {
        let exponent = i32::try_from(attempts.max(0)).unwrap_or(i32::MAX);
        let secs = self.base.powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::from_secs_f64(secs.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_base_two() {
        let b = Backoff::new(2.0, Duration::from_secs(3600));
        let secs: Vec<u64> = (1..=4).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16]);
    }

    #[test]
    fn is_capped_and_never_overflows() {
        let b = Backoff::new(2.0, Duration::from_secs(60));
        assert_eq!(b.delay(6), Duration::from_secs(60));
        assert_eq!(b.delay(i64::MAX), Duration::from_secs(60));
    }

    #[test]
    fn accepts_decimal_and_unit_bases() {
        let b = Backoff::new(1.5, Duration::from_secs(3600));
        assert_eq!(b.delay(2), Duration::from_secs_f64(2.25));
        let one = Backoff::new(1.0, Duration::from_secs(3600));
        assert_eq!(one.delay(50), Duration::from_secs(1));
    }

    #[test]
    fn is_monotonic() {
        let b = Backoff::new(1.7, Duration::from_secs(900));
        let delays: Vec<Duration> = (0..40).map(|n| b.delay(n)).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    }
}
