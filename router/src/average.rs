//! A moving average kept in one atomic: how long calls of a function, and
//! calls on a shared connection, keep a connection busy. Lock-free, a few
//! relaxed operations per call.

use std::sync::atomic::{AtomicU64, Ordering};

/// A moving average of microseconds, kept in an atomic (no sample yet:
/// `None`). Each new sample weighs `1 / (keep + 1)`.
pub struct MovingAverage {
    value: AtomicU64,
    keep: u64,
}

impl MovingAverage {
    pub const fn new(keep: u64) -> Self {
        Self {
            value: AtomicU64::new(u64::MAX),
            keep,
        }
    }

    pub fn get(&self) -> Option<u64> {
        Some(self.value.load(Ordering::Relaxed)).filter(|v| *v != u64::MAX)
    }

    pub fn record(&self, sample_us: u64) {
        let new = match self.get() {
            None => sample_us,
            Some(old) => old.saturating_mul(self.keep).saturating_add(sample_us) / (self.keep + 1),
        };
        self.value.store(new.min(u64::MAX - 1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::MovingAverage;

    #[test]
    fn moving_average_starts_at_its_first_sample_then_weighs_each_new_one() {
        let avg = MovingAverage::new(3);
        assert_eq!(avg.get(), None);
        avg.record(400);
        assert_eq!(avg.get(), Some(400));
        avg.record(800);
        assert_eq!(avg.get(), Some(500));
    }
}
