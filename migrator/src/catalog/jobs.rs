//! Jobs: `/v2/migrate-all` runs recorded in the catalog. A job is
//! inserted `queued` under a lease (the partial unique index lets one job
//! per platform and schema be queued or running), turns `running`, appends
//! each database's result as it finishes and ends with its status. A job
//! still `queued` or `running` whose lease is free belongs to a migrator
//! that stopped: whoever meets it (a start on its slot, a poll, the next
//! migrator's start) marks it `interrupted`, which frees the slot. Ended
//! jobs older than [`KEPT`] are deleted when a job starts.

use stonescriptdb_shared::wire::{JobResult, JobStatus};

use super::handle::{pg, ts, Catalog};
use super::leases::{self, Lease};
use crate::error::MigratorError;

/// How long an ended job is kept, at least.
const KEPT: &str = "24 hours";

/// The error recorded on a job whose migrator stopped before it ended.
const INTERRUPTED: &str = "the migrator running this job stopped before it ended; databases without a result were not migrated by it (start a new job)";

/// A job this migrator runs: its lease is held until it is finished.
pub struct RunningJob {
    lease: Lease,
    pub id: String,
}

/// What starting a job found.
pub enum JobStart {
    Started(Box<RunningJob>),
    /// A job of this platform and schema is queued or running: its id.
    Running(String),
}

/// A job as recorded.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub platform: String,
    pub schema_name: String,
    pub status: JobStatus,
    pub total: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub results: Vec<JobResult>,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub execution_time_ms: i64,
}

/// The job `id`, marked `interrupted` if it is still queued or running and
/// its lease `lease` is free (its migrator stopped); `true` if it was.
/// Live migrators' leases are never taken for longer than the check.
pub(super) async fn interrupt_if_dead(
    c: &tokio_postgres::Client,
    id: &str,
    lease: i32,
) -> Result<bool, tokio_postgres::Error> {
    if !leases::claim(c, lease).await? {
        return Ok(false);
    }
    let out = c
        .execute(
            "UPDATE jobs SET status = 'interrupted', finished_at = now(), lease = NULL, error = $2
             WHERE id = $1 AND status IN ('queued', 'running')",
            &[&id, &INTERRUPTED],
        )
        .await;
    let _ = leases::unclaim(c, lease).await;
    Ok(out? > 0)
}

/// The select list [`job_row`] reads.
fn columns() -> String {
    format!(
        "id, platform, schema_name, status, total, succeeded, failed, results, error, {}, {},
         (extract(epoch FROM coalesce(finished_at, now()) - coalesce(started_at, created_at)) * 1000)::bigint",
        ts("created_at"),
        ts("finished_at")
    )
}

fn job_row(r: &tokio_postgres::Row) -> Result<JobRow, MigratorError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        MigratorError::Internal(format!("the catalog's jobs.{what}: {e}"))
    };
    let status: &str = r.get(3);
    let results: serde_json::Value = r.get(7);
    Ok(JobRow {
        id: r.get(0),
        platform: r.get(1),
        schema_name: r.get(2),
        status: status.parse().map_err(|e| bad("status", &e))?,
        total: r.get(4),
        succeeded: r.get(5),
        failed: r.get(6),
        results: serde_json::from_value(results).map_err(|e| bad("results", &e))?,
        error: r.get(8),
        created_at: r.get(9),
        finished_at: r.get(10),
        execution_time_ms: r.get(11),
    })
}

impl Catalog {
    /// Record a new job of `platform` and `schema_name` over `total`
    /// databases, `queued` under a lease this migrator holds; or the id of
    /// the live job already queued or running there (a dead migrator's is
    /// marked `interrupted` and the slot taken). Ended jobs past [`KEPT`]
    /// are deleted on the way.
    pub async fn start_job(
        &self,
        platform: &str,
        schema_name: &str,
        total: usize,
        requested_by: &str,
    ) -> Result<JobStart, MigratorError> {
        let total = i32::try_from(total)
            .map_err(|_| MigratorError::BadRequest("too many databases for one job".into()))?;
        let mut conn = self.conn().await?;
        conn.execute(
            &format!("DELETE FROM jobs WHERE finished_at < now() - interval '{KEPT}'"),
            &[],
        )
        .await
        .map_err(pg)?;
        // a dead holder is resolved and the insert tried again; a live one
        // is the answer (three rounds: a slot keeps changing hands only when
        // jobs start and die that fast)
        for _ in 0..3 {
            let tx = conn.transaction().await.map_err(pg)?;
            let lease = leases::next(&*tx).await.map_err(pg)?;
            let inserted = tx
                .query_opt(
                    "INSERT INTO jobs (platform, schema_name, status, total, lease, requested_by)
                     VALUES ($1, $2, 'queued', $3, $4, $5)
                     ON CONFLICT (platform, schema_name) WHERE status IN ('queued', 'running') DO NOTHING
                     RETURNING id",
                    &[&platform, &schema_name, &total, &lease, &requested_by],
                )
                .await
                .map_err(pg)?;
            if let Some(row) = inserted {
                leases::take(&*tx, lease).await.map_err(pg)?;
                tx.commit().await.map_err(pg)?;
                return Ok(JobStart::Started(Box::new(RunningJob {
                    lease: Lease::held(conn, lease),
                    id: row.get(0),
                })));
            }
            tx.rollback().await.map_err(pg)?;
            let holder = conn
                .query_opt(
                    "SELECT id, coalesce(lease, 0) FROM jobs
                     WHERE platform = $1 AND schema_name = $2 AND status IN ('queued', 'running')",
                    &[&platform, &schema_name],
                )
                .await
                .map_err(pg)?;
            if let Some(h) = holder {
                let (id, lease): (String, i32) = (h.get(0), h.get(1));
                if !interrupt_if_dead(&conn, &id, lease).await.map_err(pg)? {
                    return Ok(JobStart::Running(id));
                }
            }
        }
        Err(MigratorError::DatabaseUnavailable(format!(
            "control catalog: the job slot of {platform}/{schema_name} kept changing hands; try again"
        )))
    }

    /// The job has begun its databases.
    pub async fn job_running(&self, job: &RunningJob) -> Result<(), MigratorError> {
        job.lease
            .conn()
            .execute(
                "UPDATE jobs SET status = 'running', started_at = now() WHERE id = $1",
                &[&job.id],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// One database's result, added as it finishes (counted as succeeded
    /// when `completed`, else failed).
    pub async fn job_result(&self, job: &RunningJob, r: &JobResult) -> Result<(), MigratorError> {
        let value =
            serde_json::to_value([r]).map_err(|e| MigratorError::Internal(e.to_string()))?;
        let ok = r.status == stonescriptdb_shared::wire::JobResultStatus::Completed;
        job.lease
            .conn()
            .execute(
                "UPDATE jobs SET results = results || $2,
                        succeeded = succeeded + CASE WHEN $3 THEN 1 ELSE 0 END,
                        failed = failed + CASE WHEN $3 THEN 0 ELSE 1 END
                 WHERE id = $1",
                &[&job.id, &value, &ok],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// Record how the job ended and free its lease (and its slot).
    pub async fn finish_job(
        &self,
        job: RunningJob,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), MigratorError> {
        let done = job
            .lease
            .conn()
            .execute(
                "UPDATE jobs SET status = $2, error = $3, finished_at = now(), lease = NULL
                 WHERE id = $1",
                &[&job.id, &status.as_str(), &error],
            )
            .await
            .map_err(pg);
        job.lease.release().await;
        done.map(|_| ())
    }

    /// The job `id` (any platform's: the route hides other platforms'),
    /// a dead migrator's queued or running job marked `interrupted` first.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, MigratorError> {
        let conn = self.conn().await?;
        let select = format!("SELECT {} FROM jobs WHERE id = $1", columns());
        let Some(row) = conn.query_opt(&select, &[&id]).await.map_err(pg)? else {
            return Ok(None);
        };
        let job = job_row(&row)?;
        if job.status.ended() {
            return Ok(Some(job));
        }
        let lease: i32 = conn
            .query_one("SELECT coalesce(lease, 0) FROM jobs WHERE id = $1", &[&id])
            .await
            .map_err(pg)?
            .get(0);
        if !interrupt_if_dead(&conn, id, lease).await.map_err(pg)? {
            return Ok(Some(job));
        }
        let row = conn.query_opt(&select, &[&id]).await.map_err(pg)?;
        row.as_ref().map(job_row).transpose()
    }

    /// Every queued or running job whose migrator stopped, marked
    /// `interrupted` (at start); their ids.
    pub(super) async fn interrupt_dead_jobs(&self) -> Result<Vec<String>, MigratorError> {
        let conn = self.conn().await?;
        let open = conn
            .query(
                "SELECT id, coalesce(lease, 0) FROM jobs WHERE status IN ('queued', 'running')",
                &[],
            )
            .await
            .map_err(pg)?;
        let mut interrupted = Vec::new();
        for r in open {
            let (id, lease): (String, i32) = (r.get(0), r.get(1));
            if interrupt_if_dead(&conn, &id, lease).await.map_err(pg)? {
                interrupted.push(id);
            }
        }
        Ok(interrupted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::handle::select_list_len;

    #[test]
    fn a_job_row_is_read_where_it_is_selected() {
        // job_row reads indexes 0..=11
        assert_eq!(select_list_len(&columns()), 12);
    }
}
