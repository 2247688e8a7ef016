//! Prometheus metrics of the router, kept in atomics so recording a request
//! costs a few relaxed increments: request counts per route template (every
//! route of `routes::ROUTES`, forwarded ones included, and `unmatched` for
//! paths no route matches) and status (`status="200"`), latency histograms
//! per route and status class (`status_class="2xx"`), pool figures per
//! database. `/metrics` renders them in the text exposition
//! format and appends the migrator's own metrics (deployments), fetched over
//! its socket.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stonescriptdb_shared::routes::{Route, ROUTES};

use crate::pool::Pools;

/// The label of paths no route matches (answered 404).
const UNMATCHED: &str = "unmatched";

/// The metrics slot of a request's route (`routes::find`): its place in
/// `ROUTES`, or the `unmatched` slot after them.
pub fn slot(route: Option<&Route>) -> usize {
    route
        .and_then(|found| ROUTES.iter().position(|r| r.pattern == found.pattern))
        .unwrap_or(ROUTES.len())
}

fn labels() -> impl Iterator<Item = &'static str> {
    ROUTES
        .iter()
        .map(|r| r.pattern)
        .chain(std::iter::once(UNMATCHED))
}
/// Histogram bucket upper bounds in seconds (fine below 1 ms, where `/call`
/// of a short function lands, so its p99 can be read from them).
const BUCKETS: [f64; 19] = [
    0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];
/// (metric, help, type, value of one pool).
type PoolSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&stonescriptdb_shared::wire::PoolStats) -> u64,
);

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

pub struct Metrics {
    /// [route][status code - 100]
    counts: Vec<[AtomicU64; 500]>,
    /// [route][status class]
    latency: Vec<[Histogram; 5]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            counts: (0..=ROUTES.len())
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            latency: (0..=ROUTES.len())
                .map(|_| std::array::from_fn(|_| Histogram::new()))
                .collect(),
        }
    }
}

impl Metrics {
    /// Count a request of the route in slot `r` ([`slot`]).
    pub fn record(&self, r: usize, status: u16, elapsed: Duration) {
        let r = r.min(ROUTES.len());
        let code = usize::from(status.clamp(100, 599)) - 100;
        self.counts[r][code].fetch_add(1, Ordering::Relaxed);
        let h = &self.latency[r][code / 100];
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The text exposition of the router's metrics.
    pub fn render(&self, pools: &Pools, migrator: Option<&str>) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP stonescriptdb_router_requests_total HTTP requests answered, by route template and status.\n");
        out.push_str("# TYPE stonescriptdb_router_requests_total counter\n");
        for (r, name) in labels().enumerate() {
            for (i, c) in self.counts[r].iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "stonescriptdb_router_requests_total{{route=\"{name}\",status=\"{}\"}} {n}",
                        i + 100
                    );
                }
            }
        }
        out.push_str("# HELP stonescriptdb_router_request_duration_seconds Time from request to response, by route template and status class.\n");
        out.push_str("# TYPE stonescriptdb_router_request_duration_seconds histogram\n");
        for (r, name) in labels().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let h = &self.latency[r][c];
                let count = h.count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let mut cumulative = 0;
                for (i, b) in BUCKETS.iter().enumerate() {
                    cumulative += h.buckets[i].load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "stonescriptdb_router_request_duration_seconds_bucket{{route=\"{name}\",status_class=\"{class}\",le=\"{b}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(out, "stonescriptdb_router_request_duration_seconds_bucket{{route=\"{name}\",status_class=\"{class}\",le=\"+Inf\"}} {count}");
                let _ = writeln!(
                    out,
                    "stonescriptdb_router_request_duration_seconds_sum{{route=\"{name}\",status_class=\"{class}\"}} {}",
                    h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
                );
                let _ = writeln!(out, "stonescriptdb_router_request_duration_seconds_count{{route=\"{name}\",status_class=\"{class}\"}} {count}");
            }
        }
        let stats = pools.stats();
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        gauge(
            &mut out,
            "stonescriptdb_router_connections",
            "Open PostgreSQL connections across all pools.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "stonescriptdb_router_connections {}",
            stats.total_connections
        );
        gauge(
            &mut out,
            "stonescriptdb_router_connections_max",
            "MAX_TOTAL_CONNECTIONS.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "stonescriptdb_router_connections_max {}",
            stats.max_total_connections
        );
        gauge(
            &mut out,
            "stonescriptdb_router_pool_exhausted_total",
            "Requests answered 503 pool_exhausted.",
            "counter",
        );
        let _ = writeln!(
            out,
            "stonescriptdb_router_pool_exhausted_total {}",
            stats.exhausted_total
        );
        let pool_series: [PoolSeries; 4] = [
            (
                "stonescriptdb_router_pool_size",
                "Open connections of a database's pool.",
                "gauge",
                |s| s.size as u64,
            ),
            (
                "stonescriptdb_router_pool_available",
                "Idle connections of a database's pool.",
                "gauge",
                |s| s.available as u64,
            ),
            (
                "stonescriptdb_router_pool_waiting",
                "Requests waiting for a connection of a database's pool.",
                "gauge",
                |s| s.waiting as u64,
            ),
            (
                "stonescriptdb_router_pool_timeouts_total",
                "Requests of a database that got no connection in time (503 pool_exhausted).",
                "counter",
                |s| s.exhausted,
            ),
        ];
        for (metric, help, kind, value) in pool_series {
            gauge(&mut out, metric, help, kind);
            for (db, s) in &stats.databases {
                let _ = writeln!(out, "{metric}{{database=\"{db}\"}} {}", value(s));
            }
        }
        gauge(
            &mut out,
            "stonescriptdb_migrator_up",
            "1 when the migrator answered /metrics on its socket.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_up {}",
            u8::from(migrator.is_some())
        );
        if let Some(m) = migrator {
            out.push_str(m);
            if !m.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(path: &str) -> usize {
        slot(stonescriptdb_shared::routes::find(path).map(|(r, _)| r))
    }

    #[test]
    fn buckets_are_cumulative() {
        let m = Metrics::default();
        m.record(route_of("/call"), 200, Duration::from_micros(300));
        m.record(route_of("/call"), 200, Duration::from_millis(3));
        m.record(route_of("/call"), 404, Duration::from_millis(3));
        m.record(
            route_of("/platform/a/schemas"),
            200,
            Duration::from_millis(3),
        );
        m.record(route_of("/nope"), 404, Duration::from_millis(1));
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let pools = Pools::new(
            tokio_postgres::Config::new(),
            crate::pool::PoolSettings {
                per_pool: 1,
                total: 1,
                wait_timeout: Duration::from_millis(1),
                idle_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                pipeline_budget: Duration::from_micros(500),
                call_timeout: Duration::ZERO,
                call_timeouts: Default::default(),
            },
            log,
        );
        let text = m.render(&pools, None);
        assert!(
            text.contains("stonescriptdb_router_requests_total{route=\"/call\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("stonescriptdb_router_requests_total{route=\"/call\",status=\"404\"} 1")
        );
        assert!(
            text.contains("route=\"/call\",status_class=\"2xx\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(text.contains("route=\"/call\",status_class=\"2xx\",le=\"0.005\"} 2"));
        assert!(text.contains("route=\"/call\",status_class=\"2xx\",le=\"+Inf\"} 2"));
        assert!(text.contains("stonescriptdb_migrator_up 0"));
        // forwarded routes by their template, unknown paths apart
        assert!(
            text.contains(
                "requests_total{route=\"/platform/{platform}/schemas\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("requests_total{route=\"unmatched\",status=\"404\"} 1"));
        assert_eq!(route_of("/call"), 0);
        assert_eq!(
            route_of("/platform/x/databases"),
            route_of("/platform/y/databases")
        );
    }
}
