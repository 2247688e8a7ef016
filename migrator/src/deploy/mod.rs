//! Deployment of a parsed schema into one database, in the order of
//! docs/SCHEMA.md: extensions → types → tables → migrations → functions →
//! seeders, one module per step. Each step reads what it needs of the
//! database inside the deployment's transaction (so it sees what the steps
//! before it did), asks its pure `plan` what to do, and applies that;
//! the rules live in the plans, with database-free tests. The files were
//! read once per upload (`crate::schema::Model`).
//!
//! Everything runs in ONE transaction under a per-database advisory lock, so
//! concurrent deployments of a database wait for each other and any failure
//! leaves the database exactly as it was; the error names the file, the
//! statement and PostgreSQL's SQLSTATE and message. Unchanged objects cost
//! reads only: an unchanged schema runs no DDL.

use std::collections::BTreeSet;
use std::time::Instant;

use slog::{info, Logger};
use stonescriptdb_shared::names::{quote_ident, AFTER_CALL_FUNCTION, AFTER_CALL_VERSION};
use stonescriptdb_shared::wire::{DeployStatus, DeploymentReport, PlanStep};
use tokio_postgres::{Client, Transaction};

use crate::error::{pg_message, MigratorError, StepFailure};
use crate::schema::Parsed;
use crate::sql::{SqlFile, Statement};
use crate::table_model::Class;

mod extensions;
mod functions;
mod migrations;
mod seeders;
mod tables;
mod types;
mod verify;

pub use extensions::preinstall;
pub use verify::verify;

/// `/register` seeds empty tables; `/migrate` verifies seeded rows exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Register,
    Migrate,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// Apply dataloss/incompatible `tables/` changes; accept edited migrations.
    pub force: bool,
    /// Run everything, report the plan, roll back.
    pub dry_run: bool,
}

/// Advisory lock key (two-int form) serializing deployments of one database.
const LOCK_CLASS: i32 = 0x5344_4757; // "SDGW"
const LOCK_OBJ: i32 = 1;

const TRACKING_DDL: &str = "
CREATE TABLE IF NOT EXISTS _stonescriptdb_gateway_migrations (
    filename text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS _stonescriptdb_gateway_types (
    name text PRIMARY KEY, kind text NOT NULL, checksum text NOT NULL, deployed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS _stonescriptdb_gateway_tables (
    name text PRIMARY KEY, file text NOT NULL, checksum text NOT NULL, deployed_at timestamptz NOT NULL DEFAULT now(),
    declared jsonb, folder_checksum text);
CREATE TABLE IF NOT EXISTS _stonescriptdb_gateway_functions (
    signature text PRIMARY KEY, name text NOT NULL, file text NOT NULL, checksum text NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS _stonescriptdb_gateway_changelog (
    id bigserial PRIMARY KEY, changed_at timestamptz NOT NULL DEFAULT now(), kind text NOT NULL,
    object text NOT NULL, action text NOT NULL, checksum text);";

/// The router's cleanup after every `/call` (`names::AFTER_CALL_FUNCTION`,
/// replaced when its version comment differs from `names::AFTER_CALL_VERSION`):
/// one function evaluated at the end of the call statement instead of a reset
/// statement after it. Owned by the role that deploys; never part of
/// `functions/`, not callable through `/call`.
const AFTER_CALL_DDL: &str = include_str!("../after_call.sql");

/// Columns added to `_stonescriptdb_gateway_tables` after its first release
/// (databases deployed before keep working; the columns are added once).
const TRACKING_UPGRADE: &str = "
ALTER TABLE _stonescriptdb_gateway_tables ADD COLUMN IF NOT EXISTS declared jsonb,
    ADD COLUMN IF NOT EXISTS folder_checksum text";

const TRACKING_TABLES: [&str; 5] = [
    "_stonescriptdb_gateway_migrations",
    "_stonescriptdb_gateway_types",
    "_stonescriptdb_gateway_tables",
    "_stonescriptdb_gateway_functions",
    "_stonescriptdb_gateway_changelog",
];

fn qualified(schema: &Option<String>, name: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(schema.as_deref().unwrap_or("public")),
        quote_ident(name)
    )
}

struct Run<'a> {
    tx: Transaction<'a>,
    database: &'a str,
    log: &'a Logger,
    report: DeploymentReport,
    /// Statements PostgreSQL refuses inside a transaction block, run after
    /// the commit: (file, statement index, statement).
    deferred: Vec<(String, usize, Statement)>,
    /// Dry run: every statement run, grouped per object (None otherwise).
    plan: Option<std::sync::Mutex<Vec<PlanStep>>>,
    /// Tables this deployment created from `tables/` (schema, name).
    created: BTreeSet<(String, String)>,
}

impl Run<'_> {
    fn fail(
        &self,
        file: Option<&str>,
        stmt: Option<(usize, &Statement)>,
        message: String,
        e: Option<&tokio_postgres::Error>,
    ) -> MigratorError {
        let db = e.and_then(|e| e.as_db_error());
        let mut f = StepFailure {
            database: self.database.to_owned(),
            file: file.map(str::to_owned),
            line: stmt.map(|(_, s)| s.line),
            statement: stmt.map(|(i, _)| i + 1),
            message,
            sqlstate: db.map(|d| d.code().code().to_owned()),
            detail: db.and_then(|d| d.detail().map(str::to_owned)),
            hint: db.and_then(|d| d.hint().map(str::to_owned)),
            cause: e.map(pg_message),
        };
        if let (Some(file), Some(cause)) = (&f.file, &f.cause) {
            let at = match (f.statement, f.line) {
                (Some(n), Some(l)) => format!(" (statement {n}, line {l})"),
                _ => String::new(),
            };
            f.message = format!("{}: {file}{at}: {cause}", f.message);
        }
        MigratorError::Migration(Box::new(f))
    }

    /// Dry run: remember a statement about to run (consecutive statements
    /// about the same object form one step).
    fn note(&self, phase: &str, class: Option<Class>, object: &str, reason: &str, sql_text: &str) {
        let Some(plan) = &self.plan else {
            return;
        };
        let Ok(mut plan) = plan.lock() else {
            return;
        };
        let class = class.map(|c| c.as_str().to_owned());
        match plan.last_mut() {
            Some(last) if last.phase == phase && last.object == object && last.reason == reason => {
                last.sql.push(sql_text.to_owned());
            }
            _ => plan.push(PlanStep {
                phase: phase.to_owned(),
                class,
                object: object.to_owned(),
                reason: reason.to_owned(),
                sql: vec![sql_text.to_owned()],
            }),
        }
    }

    /// Run one statement of a schema file.
    async fn exec(
        &self,
        file: &str,
        index: usize,
        stmt: &Statement,
        what: &str,
    ) -> Result<u64, MigratorError> {
        let phase = file.split('/').next().unwrap_or(file);
        self.note(phase, None, file, what, &stmt.text);
        self.tx.execute(stmt.text.as_str(), &[]).await.map_err(|e| {
            self.fail(
                Some(file),
                Some((index, stmt)),
                format!("{what} failed"),
                Some(&e),
            )
        })
    }

    /// Run every statement of a file; statements that cannot run inside a
    /// transaction block are kept for after the commit.
    async fn exec_file(
        &mut self,
        file: &SqlFile,
        autocommit: &[bool],
        what: &str,
    ) -> Result<u64, MigratorError> {
        let mut rows = 0;
        for (i, s) in file.statements.iter().enumerate() {
            if autocommit.get(i).copied().unwrap_or(false) {
                self.deferred.push((file.path.clone(), i, s.clone()));
                continue;
            }
            rows += self.exec(&file.path, i, s, what).await?;
        }
        Ok(rows)
    }

    /// Gateway-internal SQL (tracking tables, catalog reads).
    async fn internal(
        &self,
        sql_text: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, MigratorError> {
        self.tx
            .query(sql_text, params)
            .await
            .map_err(|e| self.fail(None, None, "gateway bookkeeping failed".into(), Some(&e)))
    }

    /// A two-column text query as a map (tracked name → checksum).
    async fn pairs<C: FromIterator<(String, String)>>(
        &self,
        sql_text: &str,
    ) -> Result<C, MigratorError> {
        Ok(self
            .internal(sql_text, &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    async fn changelog(
        &self,
        kind: &str,
        object: &str,
        action: &str,
        checksum: Option<&str>,
    ) -> Result<(), MigratorError> {
        self.internal(
            "INSERT INTO _stonescriptdb_gateway_changelog (kind, object, action, checksum) VALUES ($1, $2, $3, $4)",
            &[&kind, &object, &action, &checksum],
        )
        .await
        .map(|_| ())
    }
}

/// Every transactional step, committed at the end; returns the report and the
/// statements left for after the commit.
async fn transactional(
    client: &mut Client,
    database: &str,
    schema: &Parsed,
    opts: Options,
    log: &Logger,
) -> Result<(DeploymentReport, Vec<(String, usize, Statement)>), MigratorError> {
    let tx = client.transaction().await.map_err(|e| {
        MigratorError::DatabaseUnavailable(format!("{database}: {}", pg_message(&e)))
    })?;
    let mut run = Run {
        tx,
        database,
        log,
        report: DeploymentReport {
            database: database.to_owned(),
            status: DeployStatus::Unchanged,
            ..DeploymentReport::default()
        },
        deferred: Vec::new(),
        plan: opts.dry_run.then(|| std::sync::Mutex::new(Vec::new())),
        created: BTreeSet::new(),
    };
    run.internal(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &LOCK_OBJ],
    )
    .await?;
    ensure_tracking(&run).await?;
    extensions::apply(&mut run, schema).await?;
    types::apply(&mut run, schema, opts).await?;
    let tables = match tables::tables_before(&mut run, schema, opts).await {
        // Dry run of a deployment that would be refused: the table plan only.
        Err(MigratorError::SchemaValidation(refusal)) if opts.dry_run => {
            let _ = run.tx.rollback().await;
            let mut report = run.report;
            report.status = DeployStatus::Blocked;
            report.plan = refusal.plan;
            return Ok((report, Vec::new()));
        }
        other => other?,
    };
    migrations::apply(&mut run, schema, opts).await?;
    if let Some(state) = &tables {
        tables::tables_after(&mut run, schema, state, opts).await?;
    }
    functions::apply(&mut run, schema).await?;
    seeders::apply(&mut run, schema, opts).await?;
    let Run {
        tx,
        mut report,
        deferred,
        plan,
        ..
    } = run;
    if let Some(plan) = plan {
        tx.rollback().await.map_err(|e| {
            MigratorError::DatabaseUnavailable(format!(
                "{database}: rollback failed: {}",
                pg_message(&e)
            ))
        })?;
        report.plan = plan.into_inner().unwrap_or_default();
        for (file, index, stmt) in &deferred {
            report.plan.push(PlanStep {
                phase: "after_commit".into(),
                class: None,
                object: format!("{file}#{}", index + 1),
                reason: "cannot run in a transaction block; runs after the commit".into(),
                sql: vec![stmt.text.clone()],
            });
        }
        return Ok((report, Vec::new()));
    }
    tx.commit().await.map_err(|e| {
        MigratorError::DatabaseUnavailable(format!("{database}: commit failed: {}", pg_message(&e)))
    })?;
    Ok((report, deferred))
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
    let (mut report, deferred) = transactional(client, database, schema, opts, log).await?;
    // Outside any transaction: the rest of the deployment is committed, so a
    // failure here is reported as such.
    for (file, index, stmt) in deferred {
        if let Err(e) = client.batch_execute(&stmt.text).await {
            let db = e.as_db_error();
            return Err(MigratorError::Migration(Box::new(StepFailure {
                database: database.to_owned(),
                file: Some(file.clone()),
                line: Some(stmt.line),
                statement: Some(index + 1),
                message: format!(
                    "{file} (statement {}, line {}): this statement cannot run in a transaction and ran after the rest of the deployment was committed; it failed: {}",
                    index + 1,
                    stmt.line,
                    pg_message(&e)
                ),
                sqlstate: db.map(|d| d.code().code().to_owned()),
                detail: db.and_then(|d| d.detail().map(str::to_owned)),
                hint: db.and_then(|d| d.hint().map(str::to_owned)),
                cause: Some(pg_message(&e)),
            })));
        }
        info!(log, "statement run outside the transaction"; "database" => database, "file" => &file, "statement" => index + 1);
        report
            .deferred_statements
            .push(format!("{file}#{}", index + 1));
    }
    if opts.dry_run {
        if report.status != DeployStatus::Blocked {
            report.status = DeployStatus::DryRun;
        }
        report.execution_time_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
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

async fn ensure_tracking(run: &Run<'_>) -> Result<(), MigratorError> {
    let names: Vec<&str> = TRACKING_TABLES.to_vec();
    let rows = run
        .internal(
            "SELECT (SELECT count(*) FROM unnest($1::text[]) t WHERE to_regclass('public.' || quote_ident(t)) IS NULL),
                    to_regclass('public._stonescriptdb_gateway_tables') IS NOT NULL AND NOT EXISTS (
                      SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('public._stonescriptdb_gateway_tables')
                         AND attname = 'declared' AND NOT attisdropped),
                    coalesce(obj_description(to_regprocedure($2), 'pg_proc') <> $3, true)",
            &[&names, &AFTER_CALL_FUNCTION, &AFTER_CALL_VERSION],
        )
        .await?;
    let missing: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
    let upgrade: bool = rows
        .first()
        .and_then(|r| r.get::<_, Option<bool>>(1))
        .unwrap_or(false);
    let after_call_outdated: bool = rows.first().is_some_and(|r| r.get(2));
    for (needed, ddl, what) in [
        (
            missing > 0,
            TRACKING_DDL,
            "creating the gateway's tracking tables",
        ),
        (
            after_call_outdated,
            AFTER_CALL_DDL,
            "creating the gateway's after-call function",
        ),
        (
            upgrade,
            TRACKING_UPGRADE,
            "upgrading the gateway's tracking tables",
        ),
    ] {
        if needed {
            run.tx
                .batch_execute(ddl)
                .await
                .map_err(|e| run.fail(None, None, format!("{what} failed"), Some(&e)))?;
        }
    }
    Ok(())
}
