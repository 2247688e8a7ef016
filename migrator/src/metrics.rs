//! The migrator's Prometheus metrics (deployments and their durations,
//! databases created, runs over many databases and their progress), served
//! on its socket at `/metrics`; the router's `/metrics` includes them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

#[derive(Default)]
pub struct Metrics {
    ok: AtomicU64,
    failed: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    databases_created: AtomicU64,
    fleet_jobs: AtomicU64,
    fleet_pending: AtomicU64,
}

/// One run over a platform's databases (`/migrate` without `tenant_id`,
/// `/v2/migrate`) in the fleet gauges while it lasts.
pub struct Fleet<'a> {
    metrics: &'a Metrics,
    left: u64,
}

impl Fleet<'_> {
    /// One database of the run is done (deployed, failed or skipped).
    pub fn one_done(&mut self) {
        if self.left > 0 {
            self.left -= 1;
            self.metrics.fleet_pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Fleet<'_> {
    fn drop(&mut self) {
        self.metrics
            .fleet_pending
            .fetch_sub(self.left, Ordering::Relaxed);
        self.metrics.fleet_jobs.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// One database deployment finished.
    pub fn deployment(&self, ok: bool, elapsed: Duration) {
        if ok { &self.ok } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = BUCKETS.iter().position(|b| elapsed.as_secs_f64() <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// A run over `databases` databases starts.
    pub fn fleet(&self, databases: usize) -> Fleet<'_> {
        let n = databases as u64;
        self.fleet_jobs.fetch_add(1, Ordering::Relaxed);
        self.fleet_pending.fetch_add(n, Ordering::Relaxed);
        Fleet {
            metrics: self,
            left: n,
        }
    }

    pub fn database_created(&self) {
        self.databases_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let ok = self.ok.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        out.push_str(
            "# HELP stonescriptdb_migrator_deployments_total Database deployments, by result.\n",
        );
        out.push_str("# TYPE stonescriptdb_migrator_deployments_total counter\n");
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_deployments_total{{result=\"ok\"}} {ok}"
        );
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_deployments_total{{result=\"failed\"}} {failed}"
        );
        out.push_str("# HELP stonescriptdb_migrator_deployment_duration_seconds Duration of one database deployment.\n");
        out.push_str("# TYPE stonescriptdb_migrator_deployment_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "stonescriptdb_migrator_deployment_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_deployment_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            ok + failed
        );
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_deployment_duration_seconds_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_deployment_duration_seconds_count {}",
            ok + failed
        );
        out.push_str("# HELP stonescriptdb_migrator_databases_created_total Databases created (register, create-tenant, v2 create).\n");
        out.push_str("# TYPE stonescriptdb_migrator_databases_created_total counter\n");
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_databases_created_total {}",
            self.databases_created.load(Ordering::Relaxed)
        );
        for (name, help, value) in [
            (
                "stonescriptdb_migrator_fleet_jobs",
                "Runs over several databases in progress (/migrate without tenant_id, /v2/migrate).",
                &self.fleet_jobs,
            ),
            (
                "stonescriptdb_migrator_fleet_databases_pending",
                "Databases those runs have yet to deploy.",
                &self.fleet_pending,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out.push_str("# HELP stonescriptdb_migrator_sql_reads_total Pieces of SQL text read (statements of uploaded schemas normalized or parsed, and distinct type names the differ reads): once per stored version and per type name, whatever number of databases a deployment reaches.\n");
        out.push_str("# TYPE stonescriptdb_migrator_sql_reads_total counter\n");
        let _ = writeln!(
            out,
            "stonescriptdb_migrator_sql_reads_total {}",
            crate::sql::reads()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(m: &Metrics, name: &str) -> String {
        m.render()
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
            .to_owned()
    }

    /// Runs over many databases show while they last, with the databases
    /// they have left; a run that stops early (an error returned) leaves
    /// nothing behind.
    #[test]
    fn fleet_gauges_follow_runs_and_their_progress() {
        let m = Metrics::default();
        let mut a = m.fleet(3);
        let b = m.fleet(2);
        assert_eq!(
            gauge(&m, "stonescriptdb_migrator_fleet_jobs"),
            "stonescriptdb_migrator_fleet_jobs 2"
        );
        a.one_done();
        assert_eq!(
            gauge(&m, "stonescriptdb_migrator_fleet_databases_pending"),
            "stonescriptdb_migrator_fleet_databases_pending 4"
        );
        drop(b);
        a.one_done();
        a.one_done();
        a.one_done();
        assert_eq!(
            gauge(&m, "stonescriptdb_migrator_fleet_databases_pending"),
            "stonescriptdb_migrator_fleet_databases_pending 0"
        );
        drop(a);
        assert_eq!(
            gauge(&m, "stonescriptdb_migrator_fleet_jobs"),
            "stonescriptdb_migrator_fleet_jobs 0"
        );
    }
}
