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

use crate::histogram::Histogram;
use crate::pool::Pools;

/// The label of paths no route matches (answered 404).
const UNMATCHED: &str = "unmatched";

/// The metrics slot of a request's route (`routes::find`): its place in
/// `ROUTES`, or the `unmatched` slot after them.
pub fn slot(route: Option<&Route>) -> usize {
    route
        .and_then(|found| ROUTES.iter().position(|r| r.id == found.id))
        .unwrap_or(ROUTES.len())
}

fn labels() -> impl Iterator<Item = &'static str> {
    ROUTES
        .iter()
        .map(|r| r.pattern)
        .chain(std::iter::once(UNMATCHED))
}
/// (metric, help, type, value of one pool).
type PoolSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&stonescriptdb_shared::wire::PoolStats) -> u64,
);

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

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
                .map(|_| std::array::from_fn(|_| Histogram::default()))
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
        self.latency[r][code / 100].observe(elapsed);
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
                if h.count() == 0 {
                    continue;
                }
                h.render(
                    &mut out,
                    "stonescriptdb_router_request_duration_seconds",
                    &format!("route=\"{name}\",status_class=\"{class}\""),
                );
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
        gauge(
            &mut out,
            "stonescriptdb_router_pool_wait_seconds",
            "How long a /call waited for its connection (or its share of one).",
            "histogram",
        );
        pools
            .wait
            .render(&mut out, "stonescriptdb_router_pool_wait_seconds", "");
        for (name, help, counter) in [
            (
                "stonescriptdb_router_calls_abandoned_total",
                "Calls whose client disconnected before the answer, mid-statement.",
                &crate::pool::CALLS_ABANDONED,
            ),
            (
                "stonescriptdb_router_statements_cancelled_total",
                "Of the abandoned calls, those whose statement was cancelled (a connection of their own).",
                &crate::pool::STATEMENTS_CANCELLED,
            ),
        ] {
            gauge(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
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
            stonescriptdb_startup::tls::PgTls::new(&stonescriptdb_shared::config::DbTls {
                mode: stonescriptdb_shared::config::SslMode::Disable,
                root_cert: None,
            })
            .unwrap(),
            crate::pool::PoolSettings {
                per_pool: 1,
                total: 1,
                per_platform: 1,
                wait_timeout: Duration::from_millis(1),
                idle_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                pipeline_budget: Duration::from_micros(500),
                call_timeouts: stonescriptdb_shared::config::CallTimeouts {
                    default: Duration::ZERO,
                    platforms: Default::default(),
                },
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
