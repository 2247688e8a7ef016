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

pub use extensions::{
    check as check_extensions, offers as extension_offers, preinstall,
    refused as extension_refused, uses as extension_uses,
};
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
    filename text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
    deferred_pending integer[] NOT NULL DEFAULT '{}');
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
    ADD COLUMN IF NOT EXISTS folder_checksum text;
ALTER TABLE _stonescriptdb_gateway_migrations
    ADD COLUMN IF NOT EXISTS deferred_pending integer[] NOT NULL DEFAULT '{}'";

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

/// A statement left for after the commit: the file, the statement's index
/// in it, the statement, and the migration it belongs to (tracked name).
type Deferred = (String, usize, Statement, String);

struct Run<'a> {
    tx: Transaction<'a>,
    /// The transaction's id, and the statement that reads it again: after
    /// every statement that holds uploaded text the executor checks that
    /// the transaction is still this one (the seal behind `sql::guard`).
    xid: i64,
    xid_now: tokio_postgres::Statement,
    database: &'a str,
    log: &'a Logger,
    report: DeploymentReport,
    /// Statements PostgreSQL refuses inside a transaction block, run after
    /// the commit.
    deferred: Vec<Deferred>,
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
        let mut f = StepFailure {
            file: file.map(str::to_owned),
            line: stmt.map(|(_, s)| s.line),
            statement: stmt.map(|(i, _)| i + 1),
            ..StepFailure::new(self.database, message, e)
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

    /// Send one statement that holds uploaded text (a statement of a
    /// schema file, or SQL the gateway built around uploaded parts) on its
    /// own, through the extended protocol, where PostgreSQL refuses a
    /// second statement; then check that the transaction is still this
    /// deployment's. `failed` words PostgreSQL's refusal of the statement.
    async fn send(
        &self,
        text: &str,
        failed: impl FnOnce(&tokio_postgres::Error) -> MigratorError,
    ) -> Result<u64, MigratorError> {
        self.send_raw(text).await?.map_err(|e| failed(&e))
    }

    /// [`Run::send`], handing PostgreSQL's refusal of the statement back as
    /// it is (the outer error: the transaction is no longer this one).
    async fn send_raw(
        &self,
        text: &str,
    ) -> Result<Result<u64, tokio_postgres::Error>, MigratorError> {
        let rows = match self.tx.execute(text, &[]).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(e)),
        };
        let xid: Option<i64> = self
            .tx
            .query_one(&self.xid_now, &[])
            .await
            .ok()
            .map(|r| r.get(0));
        if xid != Some(self.xid) {
            return Err(self.fail(
                None,
                None,
                format!(
                    "the deployment's transaction was ended by an uploaded statement ({}); the deployment is stopped",
                    text.chars().take(80).collect::<String>()
                ),
                None,
            ));
        }
        Ok(Ok(rows))
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
        self.send(&stmt.text, |e| {
            self.fail(
                Some(file),
                Some((index, stmt)),
                format!("{what} failed"),
                Some(e),
            )
        })
        .await
    }

    /// Say in the report that `file`'s whole-file wrapper was not run.
    fn note_wrapper(&mut self, file: &SqlFile) {
        if let Some((a, b)) = file.wrapper {
            self.report.notes.push(format!(
                "{}: its whole-file transaction wrapper (statements {} and {}) was not run; the deployment runs in one transaction of its own",
                file.path,
                a + 1,
                b + 1
            ));
        }
    }

    /// Run every statement of a migration (a whole-file wrapper aside);
    /// statements that cannot run inside a transaction block are kept for
    /// after the commit. Returns the 1-based indices of those.
    async fn exec_migration(
        &mut self,
        file: &SqlFile,
        name: &str,
        autocommit: &[bool],
    ) -> Result<Vec<i32>, MigratorError> {
        let mut deferred = Vec::new();
        self.note_wrapper(file);
        for (i, s) in file.runnable() {
            if autocommit.get(i).copied().unwrap_or(false) {
                self.deferred
                    .push((file.path.clone(), i, s.clone(), name.to_owned()));
                deferred.push(i as i32 + 1);
                continue;
            }
            self.exec(&file.path, i, s, "migration").await?;
        }
        Ok(deferred)
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
) -> Result<(DeploymentReport, Vec<Deferred>), MigratorError> {
    let unavailable = |e: tokio_postgres::Error| {
        MigratorError::DatabaseUnavailable(format!("{database}: {}", pg_message(&e)))
    };
    let tx = client.transaction().await.map_err(unavailable)?;
    let xid_now = tx
        .prepare("SELECT txid_current()")
        .await
        .map_err(unavailable)?;
    let xid: i64 = tx
        .query_one(&xid_now, &[])
        .await
        .map_err(unavailable)?
        .get(0);
    let mut run = Run {
        tx,
        xid,
        xid_now,
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
    run.report.notes.extend(schema.model.notes.iter().cloned());
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
        for (file, index, stmt, _) in &deferred {
            report.plan.push(PlanStep {
                phase: "after_commit".into(),
                class: None,
                object: format!("{file}#{}", index + 1),
                reason: "cannot run in a transaction block; runs after the commit (not run by a dry run)".into(),
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
    let (mut report, deferred) = transactional(client, database, schema, opts, log).await?;
    // Outside any transaction: the rest of the deployment is committed, so a
    // failure here is reported as such.
    for (file, index, stmt, migration) in deferred {
        // One statement, extended protocol, as the owner role; the
        // migration stays recorded with this statement pending until it
        // succeeds (a later deployment retries only what is pending).
        let done = match client.execute(stmt.text.as_str(), &[]).await {
            Ok(_) => {
                client
                    .execute(
                        "UPDATE _stonescriptdb_gateway_migrations
                         SET deferred_pending = array_remove(deferred_pending, $2) WHERE filename = $1",
                        &[&migration, &(index as i32 + 1)],
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            let message = format!(
                "{file} (statement {}, line {}): this statement cannot run in a transaction and ran after the rest of the deployment was committed; it failed, and the migration stays recorded with it pending (the next deployment runs it again): {}",
                index + 1,
                stmt.line,
                pg_message(&e)
            );
            return Err(MigratorError::Migration(Box::new(StepFailure {
                file: Some(file.clone()),
                line: Some(stmt.line),
                statement: Some(index + 1),
                ..StepFailure::new(database, message, Some(&e))
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
                    to_regclass('public._stonescriptdb_gateway_migrations') IS NOT NULL AND NOT EXISTS (
                      SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('public._stonescriptdb_gateway_migrations')
                         AND attname = 'deferred_pending' AND NOT attisdropped),
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
