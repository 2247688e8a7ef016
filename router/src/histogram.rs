//! A Prometheus histogram kept in atomics (recording one value is a few
//! relaxed increments), rendered in the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in seconds (fine below 1 ms, where `/call` of a short
/// function and a connection lease land, so a p99 can be read from them).
pub const BUCKETS: [f64; 19] = [
    0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `_bucket` (cumulative), `_sum` and `_count` lines of `name`, with
    /// `labels` (`route="/call",status_class="2xx"`, or empty) on each.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let count = self.count();
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            braces(labels),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets_with_and_without_labels() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(120));
        h.observe(Duration::from_millis(3));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "");
        assert!(out.contains("x_seconds_bucket{le=\"0.0001\"} 0\n"), "{out}");
        assert!(
            out.contains("x_seconds_bucket{le=\"0.00015\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_sum 0.00312\n"), "{out}");
        assert!(out.contains("x_seconds_count 2\n"), "{out}");
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "route=\"/call\"");
        assert!(out.contains("x_seconds_bucket{route=\"/call\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("x_seconds_count{route=\"/call\"} 2\n"));
    }
}
