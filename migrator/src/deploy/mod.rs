//! Deployment of a parsed schema into one database, in the order of
//! docs/SCHEMA.md: extensions → types → tables → migrations → functions →
//! seeders, one module per phase. Each phase module has an `observe` (reads,
//! inside the deployment's transaction, so it sees what the phases before
//! it did) and a pure `plan` that turns what was read into typed steps
//! (`step.rs`: phase, object, class, SQL text, why, and what to record);
//! one executor (`exec.rs`) runs them. The rules live in the plans, with
//! database-free tests; the files were read once per upload
//! (`crate::schema::Model`). This file is the order of the phases.
//!
//! Everything runs in ONE transaction under a per-database advisory lock, so
//! concurrent deployments of a database wait for each other and any failure
//! leaves the database exactly as it was; the error names the file, the
//! statement and PostgreSQL's SQLSTATE and message. A dry run executes the
//! same steps and rolls back; the plan either reports is the list of steps.
//! Unchanged objects cost reads only: an unchanged schema runs no DDL.

use std::time::Instant;

use slog::{warn, Logger};
use stonescriptdb_shared::wire::{DeployStatus, DeploymentReport};
use tokio_postgres::Client;

use crate::error::{pg_message, MigratorError};
use crate::schema::Parsed;

mod extensions;
mod functions;
mod migrations;
mod types;
mod verify;

pub use crate::step::{Mode, Options};
pub use extensions::{
    check as check_extensions, offers as extension_offers, preinstall,
    refused as extension_refused, uses as extension_uses,
};
pub use migrations::refusal as migration_refusal;
pub use verify::verify;

use crate::exec::{Committed, Run};
use crate::seed::step as seeders;
use crate::tables::step as tables;

/// Every transactional phase, each observed, planned and executed in turn
/// (a phase observes the database as the phases before it left it);
/// committed at the end, or rolled back for a dry run.
async fn transactional(
    client: &mut Client,
    database: &str,
    schema: &Parsed,
    opts: Options,
    log: &Logger,
) -> Result<Outcome, MigratorError> {
    let mut run = Run::begin(client, database, log).await?;
    run.report.notes.extend(schema.model.notes.iter().cloned());

    let seen = extensions::observe(&run, schema).await?;
    let steps = extensions::plan(schema, &seen, opts.dry_run).map_err(|r| run.refused(r))?;
    run.execute(&steps).await?;

    let seen = types::observe(&run, schema, opts).await?;
    let steps = types::plan(schema, &seen, opts).map_err(|r| run.refused(r))?;
    run.execute(&steps).await?;

    // (read before the tables phase: what the pending migrations make
    // themselves, tables/ leaves to them)
    let applied = migrations::observe(&run, schema, opts).await?;
    let folder = schema.declared.as_ref().map(|declared| tables::Folder {
        files: &schema.tables,
        items: &schema.model.tables,
        declared,
        checksum: &schema.model.tables_checksum,
    });
    let mut tables = None;
    if let Some(folder) = folder {
        let seen = tables::observe_before(&run, folder).await?;
        let effects = migrations::pending_effects(schema, &applied);
        match tables::plan_before(database, folder, seen, &effects, opts) {
            Ok((steps, validation, state)) => {
                run.report.schema_validation = validation;
                run.execute(&steps).await?;
                tables = Some((folder, state));
            }
            // Dry run of a deployment that would be refused: the table plan only.
            Err(MigratorError::SchemaValidation(refusal)) if opts.dry_run => {
                let mut report = run.roll_back().await?;
                report.status = DeployStatus::Blocked;
                report.schema_validation = refusal.validation;
                report.plan = refusal.plan;
                return Ok(Outcome::RolledBack(report));
            }
            Err(e) => return Err(e),
        }
    }

    let steps = migrations::plan(schema, &applied, opts).map_err(|r| run.refused(r))?;
    run.execute(&steps).await?;

    if let Some((folder, state)) = &tables {
        let observed = tables::observe_after(&run, state).await?;
        let (steps, desired) = tables::plan_after(database, *folder, state, &observed, opts)?;
        run.execute(&steps).await?;
        if steps.iter().any(|s| !s.sql.is_empty()) {
            let left = tables::leftover(&run, state, &desired).await?;
            if !left.is_empty() {
                warn!(log, "tables still differ from tables/ after reconciliation";
                      "database" => database, "left" => left.join("; "));
            }
        }
    }

    let seen = functions::observe(&run, schema).await?;
    run.execute(&functions::plan(schema, &seen)).await?;

    let files = seeders::Seeders {
        files: &schema.seeders,
        inserts: &schema.model.inserts,
    };
    let seen = seeders::observe(&run, files, opts).await?;
    let steps = seeders::plan(files, &seen, opts).map_err(|r| run.refused(r))?;
    let rows = run.execute(&steps).await?;
    let seeded = seeders::report(files, &seen, &steps, &rows);
    run.report.seeders.extend(seeded);

    if opts.dry_run {
        return Ok(Outcome::RolledBack(run.roll_back().await?));
    }
    Ok(Outcome::Committed(run.commit().await?))
}

enum Outcome {
    RolledBack(DeploymentReport),
    Committed(Committed),
}

/// What a deployment into the database `client` is connected to (as the
/// platform's role) checks before it runs anything, extensions included:
/// a pending migration with a statement `sql::guard` refuses, and an
/// extension the platform may not have (`allowed`: `EXTENSIONS_ALLOWED`),
/// are 400. Read-only; the deployment's transaction checks the
/// migrations again under its lock.
pub async fn precheck(
    client: &Client,
    schema: &Parsed,
    allowed: &[String],
) -> Result<(), MigratorError> {
    let applied = migrations::recorded(client).await.map_err(|e| {
        MigratorError::DatabaseUnavailable(format!(
            "reading the applied migrations failed: {}",
            pg_message(&e)
        ))
    })?;
    let pending = migrations::refusal(schema, &applied)?;
    extensions::check(client, &extensions::uses(schema, &pending), allowed).await
}

/// Deploy `schema` into the database `client` is connected to.
pub async fn deploy(
    client: &mut Client,
    database: &str,
    schema: &Parsed,
    opts: Options,
    log: &Logger,
) -> Result<DeploymentReport, MigratorError> {
    let started = Instant::now();
    let mut report = match transactional(client, database, schema, opts, log).await? {
        Outcome::RolledBack(mut report) => {
            if report.status != DeployStatus::Blocked {
                report.status = DeployStatus::DryRun;
            }
            report.execution_time_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        // Outside any transaction: the rest of the deployment is committed,
        // so a failure here is reported as such.
        Outcome::Committed(committed) => committed.after_commit(client, log).await?,
    };
    let r = &report;
    let changed = r.tables_altered
        + r.extensions_installed
        + r.types_deployed
        + r.tables_created
        + r.migrations_applied
        + r.functions_created
        + r.functions_updated
        + r.functions_dropped
        + r.seeders.iter().map(|s| s.inserted).sum::<u64>();
    if changed > 0 {
        report.status = DeployStatus::Updated;
    }
    report.execution_time_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}
