//! `/v2/migrate-all` jobs (docs/API.md, "Asynchronous migration"): every
//! tenant database of a stored schema migrated in the background, the
//! client polling the job. A job is a [`fleet::Run`] whose outcomes are
//! written to the control catalog as they come (`catalog/jobs.rs`), each
//! database migrated by `/v2/migrate`'s own step ([`v2::migrate_one`]). One
//! job runs per platform and schema (409 with its `job_id`); a job whose
//! migrator died is `interrupted`, which frees its slot.

use std::sync::Arc;

use slog::{info, warn};
use stonescriptdb_shared::catalog::DbKind;
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::{
    DeploymentReport, JobResult, JobResultStatus, JobStatus, MigrateAllJob, MigrateAllRequest,
    MigrateAllStarted,
};

use crate::catalog::{Database, JobRow, JobStart, RunningJob};
use crate::deploy::Options;
use crate::error::{bad_name, MigratorError};
use crate::fleet;
use crate::state::{json, Answer, Req, State};
use crate::v2;

/// `POST /v2/migrate-all` → 202 `{job_id, status, total_databases}`; 204
/// when the schema has no tenant database; 409 `job_already_running` with
/// the running job's id.
pub async fn start(state: &Arc<State>, r: &mut Req) -> Result<Answer, MigratorError> {
    let req: MigrateAllRequest = r.json("v2 migrate-all")?;
    names::validate_platform(&req.platform).map_err(bad_name)?;
    names::validate_schema_name(&req.schema_name).map_err(bad_name)?;
    r.grant.may(&req.platform)?;
    let platform = Arc::new(v2::v2_platform(state, &req.platform).await?);
    let target = v2::target(state, &req.platform, &req.schema_name, req.version).await?;
    let databases = tenant_databases(state, &req).await?;
    if databases.is_empty() {
        return Ok((204, Vec::new()));
    }
    let total = databases.len();
    let job = match state
        .catalog()?
        .start_job(&req.platform, &req.schema_name, total, &r.caller.token_name)
        .await?
    {
        JobStart::Running(id) => return Err(MigratorError::JobRunning(id)),
        JobStart::Started(job) => *job,
    };
    let job_id = job.id.clone();
    info!(state.log, "migrate-all job started"; "job" => &job_id, "platform" => &req.platform,
          "schema" => &req.schema_name, "databases" => total);
    let run = fleet::Run {
        databases,
        canary: false,
        stop_on_error: false,
        concurrency: state.migrate_concurrency,
    };
    let step = v2::migrate_step(state, platform, target, deploy_options(&req), &r.caller);
    let outcomes = fleet::start(state.clone(), run, step);
    tokio::spawn(record(state.clone(), job, outcomes));
    Ok(json(
        202,
        &MigrateAllStarted {
            job_id,
            status: JobStatus::Queued,
            total_databases: total as u64,
        },
    ))
}

/// How each database of a job is deployed: `force` and the `allow`ed
/// classes as asked (as `/v2/migrate` takes them), never a dry run.
/// Verification is reported and never fails a database, so
/// `skip_verification` changes nothing here either.
fn deploy_options(req: &MigrateAllRequest) -> Options {
    Options::migrate(req.force, &req.allow, false)
}

/// The databases a job goes through: every one of the schema but its own
/// database `{platform}_{schema_name}`.
async fn tenant_databases(
    state: &State,
    req: &MigrateAllRequest,
) -> Result<Vec<Database>, MigratorError> {
    let own = names::uuid_database_name(&req.platform, &req.schema_name, None).map_err(bad_name)?;
    let all = state
        .catalog()?
        .databases(&req.platform, &[DbKind::V2], Some(&req.schema_name))
        .await?;
    Ok(all.into_iter().filter(|d| d.name != own).collect())
}

/// Write a job's outcomes to the catalog as they come, then how it ended.
/// A result the catalog cannot take ends the job `failed` (its databases
/// still finish: the run is the fleet's).
async fn record(
    state: Arc<State>,
    job: RunningJob,
    mut outcomes: tokio::sync::mpsc::Receiver<fleet::Finished>,
) {
    let catalog = match state.catalog() {
        Ok(c) => c,
        Err(e) => {
            warn!(state.log, "migrate-all job lost its catalog"; "job" => &job.id, "error" => e.to_wire().1.message);
            return;
        }
    };
    let said = |e: MigratorError| e.to_wire().1.message;
    let mut lost = catalog.job_running(&job).await.err().map(said);
    let (mut succeeded, mut failed) = (0u64, 0u64);
    while let Some(finished) = outcomes.recv().await {
        let (report, _) = finished.into_report();
        let result = job_result(report);
        match result.status {
            JobResultStatus::Completed => succeeded += 1,
            _ => failed += 1,
        }
        if lost.is_none() {
            lost = catalog.job_result(&job, &result).await.err().map(said);
        }
    }
    let (status, error) = match &lost {
        Some(e) => (
            JobStatus::Failed,
            Some(format!("the job's results could not be recorded: {e}")),
        ),
        None => (
            JobStatus::of_counts(succeeded, failed),
            (failed > 0).then(|| {
                format!(
                    "{failed} of {} databases were not migrated (each is as it was)",
                    succeeded + failed
                )
            }),
        ),
    };
    let id = job.id.clone();
    match catalog.finish_job(job, status, error.as_deref()).await {
        Ok(()) => {
            info!(state.log, "migrate-all job ended"; "job" => &id, "status" => status.as_str(),
                        "succeeded" => succeeded, "failed" => failed)
        }
        Err(e) => {
            warn!(state.log, "migrate-all job's end not recorded"; "job" => &id, "error" => said(e))
        }
    }
}

/// One database's report in the job's words.
fn job_result(report: DeploymentReport) -> JobResult {
    let error = report.error.map(|e| match e.cause {
        Some(cause) if !e.message.contains(&cause) => format!("{}: {cause}", e.message),
        _ => e.message,
    });
    JobResult {
        status: JobResultStatus::of(report.status),
        migrations_applied: report.migrations_applied,
        functions_updated: report.functions_updated
            + report.functions_created
            + report.functions_dropped,
        error,
        database: report.database,
    }
}

/// `GET /v2/migrate-all/{job_id}`: the job; another platform's job is
/// answered 404 like a missing one.
pub async fn poll(state: &Arc<State>, r: &mut Req) -> Result<Answer, MigratorError> {
    let id = r.params.first().cloned().unwrap_or_default();
    let job = match state.catalog()?.job(&id).await? {
        Some(job) if r.grant.may(&job.platform).is_ok() => job,
        _ => return Err(MigratorError::JobNotFound(id)),
    };
    Ok(json(200, &wire(job)))
}

fn wire(job: JobRow) -> MigrateAllJob {
    let count = |n: i32| u64::try_from(n).unwrap_or(0);
    MigrateAllJob {
        job_id: job.id,
        platform: job.platform,
        schema_name: job.schema_name,
        status: job.status,
        total_databases: count(job.total),
        succeeded: count(job.succeeded),
        failed: count(job.failed),
        results: job.results,
        execution_time_ms: u64::try_from(job.execution_time_ms).unwrap_or(0),
        error: job.error,
        created_at: job.created_at,
        finished_at: job.finished_at,
    }
}

#[cfg(test)]
mod tests {
    use stonescriptdb_shared::error::{ErrorBody, ErrorCode};
    use stonescriptdb_shared::wire::DeployStatus;

    use super::*;

    fn report(status: DeployStatus) -> DeploymentReport {
        DeploymentReport {
            database: "p_s_a".into(),
            status,
            migrations_applied: 2,
            functions_created: 1,
            functions_updated: 3,
            ..DeploymentReport::default()
        }
    }

    #[test]
    fn a_report_becomes_a_result_in_the_clients_words() {
        let r = job_result(report(DeployStatus::Updated));
        assert_eq!(r.status, JobResultStatus::Completed);
        assert_eq!((r.migrations_applied, r.functions_updated), (2, 4));
        assert_eq!(r.error, None);
        let mut failed = report(DeployStatus::Failed);
        let mut body = ErrorBody::new(ErrorCode::MigrationFailed, "migrations/002.pssql failed");
        body.cause = Some("column \"note\" already exists".into());
        failed.error = Some(body);
        let r = job_result(failed);
        assert_eq!(r.status, JobResultStatus::Failed);
        assert_eq!(
            r.error.as_deref(),
            Some("migrations/002.pssql failed: column \"note\" already exists")
        );
        let r = job_result(report(DeployStatus::NotAttempted));
        assert_eq!(r.status, JobResultStatus::Skipped);
    }

    #[test]
    fn a_job_deploys_for_real_with_force_and_the_allowed_classes_as_asked() {
        let req: MigrateAllRequest =
            serde_json::from_str(r#"{"platform":"p","schema_name":"s","force":true}"#).unwrap();
        let o = deploy_options(&req);
        assert!(o.force && !o.dry_run);
        assert!(matches!(o.mode, crate::deploy::Mode::Migrate));
        let req: MigrateAllRequest =
            serde_json::from_str(r#"{"platform":"p","schema_name":"s","allow":["drop_column"]}"#)
                .unwrap();
        let o = deploy_options(&req);
        assert!(o.lets_through(Some(stonescriptdb_shared::wire::AllowClass::DropColumn)));
        assert!(!o.lets_through(Some(stonescriptdb_shared::wire::AllowClass::DropTable)));
        assert!(!o.lets_through(None));
    }
}
