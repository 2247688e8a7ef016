//! Deployment of a parsed schema into one database, in the order of
//! docs/SCHEMA.md:
//! extensions → types → tables → migrations → functions → seeders.
//!
//! Everything runs in ONE transaction under a per-database advisory lock, so
//! concurrent deployments of a database wait for each other and any failure
//! leaves the database exactly as it was; the error names the file, the
//! statement and PostgreSQL's SQLSTATE and message. Unchanged objects cost
//! reads only: an unchanged schema runs no DDL.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use slog::{info, warn, Logger};
use stonescriptdb_shared::names::{quote_ident, AFTER_CALL_FUNCTION, AFTER_CALL_VERSION};
use stonescriptdb_shared::wire::{
    DeployStatus, DeploymentReport, PlanStep, SchemaValidation, SeederResult,
};
use tokio_postgres::{Client, Transaction};

use crate::error::{pg_message, MigratorError, SchemaRefusal, StepFailure};
use crate::schema::{normalized_checksum, Parsed, SqlFile};
use crate::seed;
use crate::sql::{self, Statement, TableStmt, TypeDef};
use crate::tables::introspect;
use crate::tables::model::{Class, Model, QName, Sequence, Step as TableStep, Table};
use crate::tables::{align_names, diff};

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
const AFTER_CALL_DDL: &str = include_str!("after_call.sql");

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

/// Quote a string literal (standard_conforming_strings is on in every
/// supported PostgreSQL).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

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

/// Statements PostgreSQL refuses inside a transaction block.
pub fn needs_autocommit(stmt: &str) -> bool {
    let n = sql::normalize(stmt);
    let words: Vec<&str> = n
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        ["create", "index", "concurrently", ..]
        | ["create", "unique", "index", "concurrently", ..]
        | ["drop", "index", "concurrently", ..]
        | ["vacuum", ..]
        | ["alter", "system", ..]
        | ["create", "database", ..]
        | ["drop", "database", ..]
        | ["create", "tablespace", ..]
        | ["drop", "tablespace", ..] => true,
        ["reindex", rest @ ..] => rest.contains(&"concurrently"),
        _ => false,
    }
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
    async fn exec_file(&mut self, file: &SqlFile, what: &str) -> Result<u64, MigratorError> {
        let mut rows = 0;
        for (i, s) in file.statements.iter().enumerate() {
            if needs_autocommit(&s.text) {
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
    extensions(&mut run, schema).await?;
    types(&mut run, schema, opts).await?;
    let tables = match tables_before(&mut run, schema, opts).await {
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
    migrations(&mut run, schema, opts).await?;
    if let Some(state) = &tables {
        tables_after(&mut run, schema, state, opts).await?;
    }
    functions(&mut run, schema).await?;
    seeders(&mut run, schema, opts).await?;
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

/// Why an extension could not be installed.
enum ExtensionError {
    Unavailable,
    Failed(tokio_postgres::Error),
}

/// Install `ext` unless it is installed; `Ok(true)` when it was installed now.
async fn install_extension(
    c: &impl tokio_postgres::GenericClient,
    ext: &crate::schema::Extension,
) -> Result<bool, ExtensionError> {
    let installed = c
        .query(
            "SELECT 1 FROM pg_extension WHERE extname = $1",
            &[&ext.name],
        )
        .await
        .map_err(ExtensionError::Failed)?;
    if !installed.is_empty() {
        return Ok(false);
    }
    let available = c
        .query(
            "SELECT 1 FROM pg_available_extensions WHERE name = $1",
            &[&ext.name],
        )
        .await
        .map_err(ExtensionError::Failed)?;
    if available.is_empty() {
        return Err(ExtensionError::Unavailable);
    }
    let mut sql_text = String::new();
    if let Some(s) = &ext.schema {
        sql_text.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {};\n",
            quote_ident(s)
        ));
    }
    sql_text.push_str(&format!(
        "CREATE EXTENSION IF NOT EXISTS {}",
        quote_ident(&ext.name)
    ));
    if let Some(s) = &ext.schema {
        sql_text.push_str(&format!(" WITH SCHEMA {}", quote_ident(s)));
    }
    if let Some(v) = &ext.version {
        sql_text.push_str(&format!(" VERSION {}", quote_literal(v)));
    }
    c.batch_execute(&sql_text)
        .await
        .map_err(ExtensionError::Failed)?;
    Ok(true)
}

fn extension_failure(
    database: &str,
    ext: &crate::schema::Extension,
    e: ExtensionError,
) -> MigratorError {
    let (message, err) = match e {
        ExtensionError::Unavailable => (
            format!(
                "extension \"{}\" is not available on this PostgreSQL server (install the package that provides it)",
                ext.name
            ),
            None,
        ),
        ExtensionError::Failed(e) => (format!("installing extension \"{}\" failed", ext.name), Some(e)),
    };
    let db = err.as_ref().and_then(|e| e.as_db_error());
    let cause = err.as_ref().map(pg_message);
    MigratorError::Migration(Box::new(StepFailure {
        database: database.to_owned(),
        file: Some(ext.path.clone()),
        message: match &cause {
            Some(c) => format!("{message}: {}: {c}", ext.path),
            None => message,
        },
        sqlstate: db.map(|d| d.code().code().to_owned()),
        detail: db.and_then(|d| d.detail().map(str::to_owned)),
        hint: db.and_then(|d| d.hint().map(str::to_owned)),
        cause,
        ..StepFailure::default()
    }))
}

/// Install the schema's extensions over an admin connection, before a
/// deployment that runs as the platform's own (unprivileged) role. Returns
/// how many were installed.
pub async fn preinstall_extensions(
    admin_db: &Client,
    database: &str,
    schema: &Parsed,
) -> Result<u64, MigratorError> {
    let mut n = 0;
    for ext in &schema.extensions {
        if install_extension(admin_db, ext)
            .await
            .map_err(|e| extension_failure(database, ext, e))?
        {
            n += 1;
        }
    }
    Ok(n)
}

async fn extensions(run: &mut Run<'_>, schema: &Parsed) -> Result<(), MigratorError> {
    for ext in &schema.extensions {
        // A dry run runs as the platform's owner role, which may install
        // trusted extensions (inside its rolled-back transaction) but not
        // the others; those the real deployment installs with the admin role.
        let dry = run.plan.is_some();
        if dry {
            run.tx
                .batch_execute("SAVEPOINT sdg_extension")
                .await
                .map_err(|e| run.fail(None, None, "gateway bookkeeping failed".into(), Some(&e)))?;
        }
        let installed = match install_extension(&run.tx, ext).await {
            Err(ExtensionError::Failed(e))
                if dry
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                run.tx
                    .batch_execute("ROLLBACK TO SAVEPOINT sdg_extension")
                    .await
                    .map_err(|e| {
                        run.fail(None, None, "gateway bookkeeping failed".into(), Some(&e))
                    })?;
                run.note(
                    "extensions",
                    None,
                    &ext.path,
                    "installed by the gateway's admin role at deployment (a dry run has only the platform role's rights, so later steps that need it may fail here)",
                    &format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(&ext.name)),
                );
                continue;
            }
            other => other.map_err(|e| extension_failure(run.database, ext, e))?,
        };
        if !installed {
            continue;
        }
        run.report.extensions_installed += 1;
        run.changelog("extension", &ext.name, "installed", None)
            .await?;
        info!(run.log, "extension installed"; "database" => run.database, "extension" => &ext.name);
    }
    Ok(())
}

fn type_name(def: &TypeDef) -> (Option<String>, String, &'static str) {
    match def {
        TypeDef::Enum { schema, name, .. } => (schema.clone(), name.clone(), "enum"),
        TypeDef::Composite { schema, name } => (schema.clone(), name.clone(), "composite"),
        TypeDef::Domain { schema, name } => (schema.clone(), name.clone(), "domain"),
        TypeDef::Other { schema, name } => (schema.clone(), name.clone(), "other"),
    }
}

async fn types(run: &mut Run<'_>, schema: &Parsed, opts: Options) -> Result<(), MigratorError> {
    if schema.types.is_empty() {
        return Ok(());
    }
    let tracked: HashMap<String, String> = run
        .pairs("SELECT name, checksum FROM _stonescriptdb_gateway_types")
        .await?;
    for file in &schema.types {
        for (i, stmt) in file.statements.iter().enumerate() {
            let def = sql::parse_type(&stmt.text).map_err(|e| {
                MigratorError::BadRequest(format!(
                    "{} line {}: {}",
                    file.path, stmt.line, e.message
                ))
            })?;
            let (tschema, tname, kind) = type_name(&def);
            let key = format!("{}.{}", tschema.as_deref().unwrap_or("public"), tname);
            let checksum = normalized_checksum(&stmt.text);
            if tracked.get(&key) == Some(&checksum) {
                continue;
            }
            let existing = run
                .internal(
                    "SELECT t.typtype::text, ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
                     FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typname = $2",
                    &[&tschema.as_deref().unwrap_or("public"), &tname],
                )
                .await?;
            match (existing.first(), &def) {
                (None, _) => {
                    run.exec(&file.path, i, stmt, "creating a type").await?;
                    run.report.types_deployed += 1;
                    run.changelog("type", &key, "created", Some(&checksum))
                        .await?;
                }
                (Some(row), TypeDef::Enum { labels, .. }) => {
                    let have: Vec<String> = row.get(1);
                    let removed: Vec<&String> =
                        have.iter().filter(|l| !labels.contains(l)).collect();
                    if !removed.is_empty() && !opts.force {
                        return Err(run.fail(
                            Some(&file.path),
                            Some((i, stmt)),
                            format!(
                                "enum {key} would lose value(s) {removed:?}; PostgreSQL cannot remove enum values: write a migration that replaces the type"
                            ),
                            None,
                        ));
                    }
                    let mut added = 0;
                    for (pos, label) in labels.iter().enumerate() {
                        if have.contains(label) {
                            continue;
                        }
                        let mut alter = format!(
                            "ALTER TYPE {} ADD VALUE IF NOT EXISTS {}",
                            qualified(&tschema, &tname),
                            quote_literal(label)
                        );
                        if let Some(prev) = pos.checked_sub(1).and_then(|p| labels.get(p)) {
                            alter.push_str(&format!(" AFTER {}", quote_literal(prev)));
                        }
                        run.tx.batch_execute(&alter).await.map_err(|e| {
                            run.fail(
                                Some(&file.path),
                                Some((i, stmt)),
                                format!("adding value {label:?} to enum {key} failed"),
                                Some(&e),
                            )
                        })?;
                        added += 1;
                    }
                    if added > 0 {
                        run.report.types_deployed += 1;
                        run.changelog("type", &key, "values_added", Some(&checksum))
                            .await?;
                    }
                }
                (Some(_), _) => {
                    if tracked.contains_key(&key) && !opts.force {
                        return Err(run.fail(
                            Some(&file.path),
                            Some((i, stmt)),
                            format!(
                                "{kind} type {key} changed since it was deployed; PostgreSQL cannot replace it in place: alter it in a migration (ALTER TYPE / ALTER DOMAIN) and deploy with force=true"
                            ),
                            None,
                        ));
                    }
                }
            }
            run.internal(
                "INSERT INTO _stonescriptdb_gateway_types (name, kind, checksum) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, checksum = excluded.checksum, deployed_at = now()",
                &[&key, &kind, &checksum],
            )
            .await?;
        }
    }
    Ok(())
}

/// A `tables/` file and the table it creates.
struct TableFile<'a> {
    file: &'a SqlFile,
    key: (String, String),
    create_index: usize,
    references: Vec<(String, String)>,
}

fn table_key(schema: &Option<String>, name: &str) -> (String, String) {
    (
        schema.clone().unwrap_or_else(|| "public".into()),
        name.to_owned(),
    )
}

/// Order missing tables so referenced ones come first (Kahn's algorithm, ties
/// by file name). Returns the order and the tables left in REFERENCES cycles.
fn creation_order(files: &[TableFile<'_>]) -> (Vec<usize>, Vec<usize>) {
    let index: HashMap<&(String, String), usize> =
        files.iter().enumerate().map(|(i, f)| (&f.key, i)).collect();
    let mut deps: Vec<BTreeSet<usize>> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            f.references
                .iter()
                .filter_map(|r| index.get(r).copied())
                .filter(|&d| d != i)
                .collect()
        })
        .collect();
    let mut order = Vec::new();
    let mut done = vec![false; files.len()];
    loop {
        let ready: Vec<usize> = (0..files.len())
            .filter(|&i| !done[i] && deps[i].is_empty())
            .collect();
        if ready.is_empty() {
            break;
        }
        for i in ready {
            done[i] = true;
            order.push(i);
            for d in deps.iter_mut() {
                d.remove(&i);
            }
        }
    }
    let cyclic = (0..files.len()).filter(|&i| !done[i]).collect();
    (order, cyclic)
}

/// `ALTER TABLE ... ADD ... REFERENCES ...` (a foreign key added after the
/// table, as pg_dump writes them).
fn adds_foreign_key(stmt: &str) -> bool {
    let n = sql::normalize(stmt);
    n.starts_with("alter table") && n.contains(" add ") && n.contains("references")
}

/// Create the declared tables that do not exist yet from their `tables/`
/// files (every statement of the file), referenced tables first; REFERENCES
/// cycles are broken by adding those foreign keys afterwards.
async fn create_missing(
    run: &mut Run<'_>,
    schema: &Parsed,
    missing: &BTreeSet<QName>,
) -> Result<(), MigratorError> {
    let mut to_create = Vec::new();
    for file in &schema.tables {
        let found = file.statements.iter().enumerate().find_map(|(i, s)| {
            match sql::classify_table_stmt(&s.text) {
                TableStmt::CreateTable {
                    schema,
                    name,
                    references,
                } => Some((i, table_key(&schema, &name), references)),
                TableStmt::Other => None,
            }
        });
        let Some((create_index, key, references)) = found else {
            return Err(MigratorError::BadRequest(format!(
                "{}: no CREATE TABLE statement",
                file.path
            )));
        };
        if !missing.contains(&QName::new(&key.0, &key.1)) {
            continue;
        }
        to_create.push(TableFile {
            file,
            key,
            create_index,
            references: references.iter().map(|(s, n)| table_key(s, n)).collect(),
        });
    }
    let (order, cyclic) = creation_order(&to_create);
    let deferred: Vec<(Option<String>, String)> = cyclic
        .iter()
        .map(|&i| (Some(to_create[i].key.0.clone()), to_create[i].key.1.clone()))
        .collect();
    let mut later = Vec::new();
    for &i in order.iter().chain(cyclic.iter()) {
        let t = &to_create[i];
        for (si, stmt) in t.file.statements.iter().enumerate() {
            if si == t.create_index && cyclic.contains(&i) {
                let (create, alters) =
                    sql::split_foreign_keys(&stmt.text, &deferred).map_err(|e| {
                        MigratorError::BadRequest(format!(
                            "{} line {}: {}",
                            t.file.path, stmt.line, e.message
                        ))
                    })?;
                let rewritten = Statement {
                    text: create,
                    line: stmt.line,
                };
                run.exec(&t.file.path, si, &rewritten, "creating a table")
                    .await?;
                later.extend(alters.into_iter().map(|a| {
                    (
                        t.file.path.clone(),
                        si,
                        Statement {
                            text: a,
                            line: stmt.line,
                        },
                    )
                }));
            } else if adds_foreign_key(&stmt.text) {
                // pg_dump style `ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY`:
                // the referenced table may be created later in this loop.
                later.push((t.file.path.clone(), si, stmt.clone()));
            } else {
                run.exec(&t.file.path, si, stmt, "creating a table").await?;
            }
        }
        run.report.tables_created += 1;
        run.created.insert(t.key.clone());
        let key = format!("{}.{}", t.key.0, t.key.1);
        run.changelog("table", &key, "created", Some(&t.file.checksum))
            .await?;
        info!(run.log, "table created"; "database" => run.database, "table" => &key, "file" => &t.file.path);
    }
    for (path, si, stmt) in &later {
        run.exec(path, *si, stmt, "adding a foreign key").await?;
    }
    Ok(())
}

/// Name of a sequence's row in `_stonescriptdb_gateway_tables`.
const SEQUENCE_ROW: &str = "sequence:";

/// What `tables/` declares, as PostgreSQL spells it, and what it declared at
/// the last successful deployment.
struct TableState {
    desired: Model,
    previous: Model,
    /// The recorded model already equals `desired` (same `tables/`).
    recorded: bool,
    folder_checksum: String,
}

/// A stand-in for a table recorded before declared models were kept: only
/// its name is known.
fn name_only(name: QName) -> Table {
    Table {
        name,
        ..Table::default()
    }
}

/// The declared model recorded by earlier deployments, and the `tables/`
/// folder checksum each row was recorded with.
async fn recorded(run: &Run<'_>) -> Result<(Model, Vec<Option<String>>), MigratorError> {
    let rows = run
        .internal(
            "SELECT name, declared::text, folder_checksum FROM _stonescriptdb_gateway_tables",
            &[],
        )
        .await?;
    Ok(declared_model(&rows))
}

/// Rows `(name, declared::text, folder_checksum)` of
/// `_stonescriptdb_gateway_tables` as the declared model, and per row the
/// folder checksum it was recorded with (None for rows without a model).
/// Tables recorded before models were kept are known by name only.
fn declared_model(rows: &[tokio_postgres::Row]) -> (Model, Vec<Option<String>>) {
    let mut model = Model::default();
    let mut sums = Vec::new();
    for r in rows {
        let name: String = r.get(0);
        let declared: Option<String> = r.get(1);
        sums.push(if declared.is_some() { r.get(2) } else { None });
        if name.starts_with(SEQUENCE_ROW) {
            if let Some(s) = declared.and_then(|d| serde_json::from_str::<Sequence>(&d).ok()) {
                model.sequences.insert(s.name.clone(), s);
            }
            continue;
        }
        let table = match declared.and_then(|d| serde_json::from_str::<Table>(&d).ok()) {
            Some(t) => t,
            None => {
                let (sc, n) = name.split_once('.').unwrap_or(("public", name.as_str()));
                name_only(QName::new(sc, n))
            }
        };
        model.tables.insert(table.name.clone(), table);
    }
    (model, sums)
}

fn folder_checksum(schema: &Parsed) -> String {
    let all: String = schema
        .tables
        .iter()
        .map(|f| format!("{}\n{}\n", f.path, f.checksum))
        .collect();
    crate::schema::sha256_hex(all.as_bytes())
}

/// Read the tables and sequences of `desired` and `previous` from the
/// database, as seen from `search_path = public`.
async fn observe(run: &Run<'_>, desired: &Model, previous: &Model) -> Result<Model, MigratorError> {
    let tables: BTreeSet<QName> = desired
        .tables
        .keys()
        .chain(previous.tables.keys())
        .cloned()
        .collect();
    let sequences: BTreeSet<QName> = desired
        .sequences
        .keys()
        .chain(previous.sequences.keys())
        .cloned()
        .collect();
    introspect::observe(&run.tx, desired, &tables, &sequences)
        .await
        .map_err(|e| {
            run.fail(
                None,
                None,
                "reading the tables from the catalog failed".into(),
                Some(&e),
            )
        })
}

/// The steps from `observed` to `desired` (names aligned to the database's,
/// see [`align_names`]), and the aligned desired model.
fn table_plan(desired: &Model, observed: &Model, previous: &Model) -> (Model, Vec<TableStep>) {
    let desired = align_names(desired, observed);
    let steps = diff::diff(&desired, observed, previous);
    (desired, steps)
}

fn validation(plan: &[TableStep]) -> SchemaValidation {
    let mut v = SchemaValidation::default();
    for s in plan {
        let list = match s.class {
            Class::Safe => &mut v.safe_changes,
            Class::Dataloss => &mut v.dataloss_changes,
            Class::Incompatible => &mut v.incompatible_changes,
        };
        list.push(s.reason.clone());
    }
    v
}

fn plan_steps(plan: &[TableStep]) -> Vec<PlanStep> {
    plan.iter()
        .map(|s| PlanStep {
            phase: "tables".into(),
            class: Some(s.class.as_str().into()),
            object: s.object.clone(),
            reason: s.reason.clone(),
            sql: s.sql.clone(),
        })
        .collect()
}

/// Steps 1 and 2 of a deployment's `tables/` handling (docs/SCHEMA.md): diff `tables/` against the database before the
/// migrations (dataloss or incompatible changes refuse the deployment unless
/// forced), then create the declared tables that do not exist yet. None when
/// the schema has no `tables/` folder (nothing is managed declaratively).
async fn tables_before(
    run: &mut Run<'_>,
    schema: &Parsed,
    opts: Options,
) -> Result<Option<TableState>, MigratorError> {
    let Some(declared) = &schema.declared else {
        return Ok(None);
    };
    let (previous, sums) = recorded(run).await?;
    let folder_checksum = folder_checksum(schema);
    let same_names = previous.tables.keys().eq(declared.model.tables.keys())
        && previous
            .sequences
            .keys()
            .eq(declared.model.sequences.keys());
    let recorded = same_names
        && !sums.is_empty()
        && sums
            .iter()
            .all(|s| s.as_deref() == Some(folder_checksum.as_str()));
    let desired = if recorded {
        previous.clone()
    } else {
        introspect::desired(&run.tx, &declared.model)
            .await
            .map_err(|e| {
                let file = declared
                    .files
                    .iter()
                    .find(|(q, _)| q.to_string() == e.object)
                    .map(|(_, f)| f.as_str());
                run.fail(
                    file.or(Some("tables/")),
                    None,
                    format!("the declaration of {} is not valid", e.object),
                    Some(&e.error),
                )
            })?
    };
    let observed = observe(run, &desired, &previous).await?;
    let (desired, plan) = table_plan(&desired, &observed, &previous);
    run.report.schema_validation = validation(&plan);
    let refused = plan.iter().any(|s| s.class != Class::Safe);
    if refused && !opts.force {
        return Err(MigratorError::SchemaValidation(Box::new(SchemaRefusal {
            database: run.database.to_owned(),
            validation: run.report.schema_validation.clone(),
            plan: plan_steps(&plan),
            after_migrations: false,
        })));
    }
    let missing: BTreeSet<QName> = desired
        .tables
        .keys()
        .filter(|q| !observed.tables.contains_key(*q))
        .cloned()
        .collect();
    create_missing(run, schema, &missing).await?;
    Ok(Some(TableState {
        desired,
        previous,
        recorded,
        folder_checksum,
    }))
}

/// Steps 4 and 5 of a deployment's `tables/` handling (docs/SCHEMA.md): after the migrations, apply what still differs
/// from `tables/` (safe steps always, the rest only when forced), check that
/// nothing differs any more, and record the declared model.
async fn tables_after(
    run: &mut Run<'_>,
    schema: &Parsed,
    state: &TableState,
    opts: Options,
) -> Result<(), MigratorError> {
    let observed = observe(run, &state.desired, &state.previous).await?;
    let (desired, plan) = table_plan(&state.desired, &observed, &state.previous);
    if !opts.force && plan.iter().any(|s| s.class != Class::Safe) {
        let mut v = validation(&plan);
        v.safe_changes.clear();
        return Err(MigratorError::SchemaValidation(Box::new(SchemaRefusal {
            database: run.database.to_owned(),
            validation: v,
            plan: plan_steps(&plan),
            after_migrations: true,
        })));
    }
    let files = schema.declared.as_ref().map(|d| &d.files);
    for (n, step) in plan.iter().enumerate() {
        // `object` is `table` or `table.part`, the table as `QName` displays it.
        let file = files.and_then(|f| {
            f.iter()
                .find(|(q, _)| {
                    let q = q.to_string();
                    step.object == q || step.object.starts_with(&format!("{q}."))
                })
                .map(|(_, p)| p.clone())
        });
        for (i, text) in step.sql.iter().enumerate() {
            run.note("tables", Some(step.class), &step.object, &step.reason, text);
            run.tx.batch_execute(text).await.map_err(|e| {
                let mut err = run.fail(
                    None,
                    None,
                    format!(
                        "making the database match tables/ failed at \"{}\" (step {} of {}, statement {}: {text})",
                        step.reason,
                        n + 1,
                        plan.len(),
                        i + 1
                    ),
                    Some(&e),
                );
                if let (MigratorError::Migration(f), Some(file)) = (&mut err, &file) {
                    f.file = Some(file.clone());
                }
                err
            })?;
        }
        run.report.tables_altered += 1;
        run.changelog("table", &step.object, step.class.as_str(), None)
            .await?;
        info!(run.log, "table changed"; "database" => run.database, "object" => &step.object,
              "class" => step.class.as_str(), "reason" => &step.reason);
    }
    if !plan.is_empty() {
        let after = observe(run, &desired, &state.previous).await?;
        let (_, left) = table_plan(&desired, &after, &state.previous);
        if !left.is_empty() {
            let reasons: Vec<&str> = left.iter().map(|s| s.reason.as_str()).collect();
            warn!(run.log, "tables still differ from tables/ after reconciliation";
                  "database" => run.database, "left" => reasons.join("; "));
        }
    }
    if !(state.recorded && plan.is_empty() && desired == state.desired) {
        record(run, schema, state, &desired).await?;
    }
    Ok(())
}

/// Record the declared model (one row per table and per sequence), dropping
/// rows of objects no longer declared.
async fn record(
    run: &Run<'_>,
    schema: &Parsed,
    state: &TableState,
    desired: &Model,
) -> Result<(), MigratorError> {
    let files = schema.declared.as_ref().map(|d| &d.files);
    let sums: HashMap<&str, &str> = schema
        .tables
        .iter()
        .map(|f| (f.path.as_str(), f.checksum.as_str()))
        .collect();
    let mut names = Vec::new();
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for (q, t) in &desired.tables {
        let key = format!("{}.{}", q.schema, q.name);
        let file = files.and_then(|f| f.get(q)).cloned().unwrap_or_default();
        let sum = sums.get(file.as_str()).copied().unwrap_or("").to_owned();
        let json = serde_json::to_string(t).unwrap_or_default();
        rows.push((key, file, sum, json));
    }
    for (q, s) in &desired.sequences {
        let key = format!("{SEQUENCE_ROW}{}.{}", q.schema, q.name);
        let json = serde_json::to_string(s).unwrap_or_default();
        rows.push((key, String::new(), String::new(), json));
    }
    for (key, file, sum, json) in &rows {
        names.push(key.clone());
        run.internal(
            "INSERT INTO _stonescriptdb_gateway_tables (name, file, checksum, declared, folder_checksum)
             VALUES ($1, $2, $3, $4::text::jsonb, $5)
             ON CONFLICT (name) DO UPDATE SET file = excluded.file, checksum = excluded.checksum,
               declared = excluded.declared, folder_checksum = excluded.folder_checksum, deployed_at = now()",
            &[key, file, sum, json, &state.folder_checksum],
        )
        .await?;
    }
    run.internal(
        "DELETE FROM _stonescriptdb_gateway_tables WHERE NOT (name = ANY($1))",
        &[&names],
    )
    .await?;
    Ok(())
}

async fn migrations(
    run: &mut Run<'_>,
    schema: &Parsed,
    opts: Options,
) -> Result<(), MigratorError> {
    if schema.migrations.is_empty() {
        return Ok(());
    }
    let applied: HashMap<String, String> = run
        .pairs("SELECT filename, checksum FROM _stonescriptdb_gateway_migrations")
        .await?;
    for file in &schema.migrations {
        let name = file.path.trim_start_matches("migrations/");
        match applied.get(name) {
            Some(sum) if *sum == file.checksum => run.report.migrations_skipped += 1,
            Some(_) if !opts.force => {
                return Err(run.fail(
                    Some(&file.path),
                    None,
                    format!(
                        "migration {name} was already applied and has been edited since (checksum differs); restore it, or deploy with force=true to accept the new text without running it again"
                    ),
                    None,
                ))
            }
            Some(_) => {
                run.internal(
                    "UPDATE _stonescriptdb_gateway_migrations SET checksum = $2 WHERE filename = $1",
                    &[&name, &file.checksum],
                )
                .await?;
                run.changelog("migration", name, "checksum_accepted", Some(&file.checksum)).await?;
                run.report.migrations_skipped += 1;
            }
            None => {
                // (a failed migration is not recorded: the whole transaction rolls back)
                run.exec_file(file, "migration").await?;
                run.internal(
                    "INSERT INTO _stonescriptdb_gateway_migrations (filename, checksum) VALUES ($1, $2)",
                    &[&name, &file.checksum],
                )
                .await?;
                run.changelog("migration", name, "applied", Some(&file.checksum)).await?;
                run.report.migrations_applied += 1;
                info!(run.log, "migration applied"; "database" => run.database, "file" => &file.path);
            }
        }
    }
    Ok(())
}

/// `CREATE FUNCTION` → `CREATE OR REPLACE FUNCTION` (same for procedures).
fn or_replace(stmt: &str) -> String {
    let trimmed = stmt.trim_start();
    let lower = trimmed.get(..30).unwrap_or(trimmed).to_ascii_lowercase();
    if lower.starts_with("create or replace") {
        return trimmed.to_owned();
    }
    match trimmed.get(..6) {
        Some(kw) if kw.eq_ignore_ascii_case("create") => {
            format!("CREATE OR REPLACE{}", &trimmed[6..])
        }
        _ => trimmed.to_owned(),
    }
}

struct Desired<'a> {
    file: &'a SqlFile,
    index: usize,
    stmt: &'a Statement,
    routine: sql::Routine,
    checksum: String,
    lookup: String,
}

async fn functions(run: &mut Run<'_>, schema: &Parsed) -> Result<(), MigratorError> {
    let tracked: BTreeMap<String, String> = run
        .pairs("SELECT signature, checksum FROM _stonescriptdb_gateway_functions")
        .await?;
    let mut desired = Vec::new();
    for file in &schema.functions {
        for (index, stmt) in file.statements.iter().enumerate() {
            if !crate::schema::is_routine(&stmt.text) {
                continue;
            }
            let routine = sql::parse_routine(&stmt.text).map_err(|e| {
                MigratorError::BadRequest(format!(
                    "{} line {}: {}",
                    file.path, stmt.line, e.message
                ))
            })?;
            let lookup = format!(
                "{}({})",
                qualified(&routine.schema, &routine.name),
                routine.arg_types.join(", ")
            );
            desired.push(Desired {
                file,
                index,
                checksum: normalized_checksum(&stmt.text),
                stmt,
                routine,
                lookup,
            });
        }
    }
    // Which tracked signatures still exist as deployed (a function dropped by
    // hand must be recreated even if its checksum matches). The signatures of
    // the database's own functions are rendered once and hashed: rendering
    // every pg_proc row per tracked signature cost ~50 ms per database.
    let sigs: Vec<String> = tracked.keys().cloned().collect();
    let live: HashSet<String> = run
        .internal(
            "SELECT s FROM unnest($1::text[]) s WHERE s IN (
                SELECT p.oid::regprocedure::text FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))",
            &[&sigs],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let by_checksum: HashMap<&str, &str> = tracked
        .iter()
        .filter(|(s, _)| live.contains(*s))
        .map(|(s, c)| (c.as_str(), s.as_str()))
        .collect();
    let mut keep: HashSet<String> = HashSet::new();
    let mut changed: Vec<&Desired<'_>> = Vec::new();
    for d in &desired {
        match by_checksum.get(d.checksum.as_str()) {
            Some(sig) => {
                keep.insert((*sig).to_owned());
                run.report.functions_unchanged += 1;
            }
            None => changed.push(d),
        }
    }
    let obsolete_exist = tracked
        .keys()
        .any(|s| !keep.contains(s) && live.contains(s));
    if changed.is_empty() && !obsolete_exist {
        // drop tracking rows of functions someone dropped by hand
        let gone: Vec<&String> = tracked
            .keys()
            .filter(|s| !live.contains(*s) && !keep.contains(*s))
            .collect();
        for s in gone {
            run.internal(
                "DELETE FROM _stonescriptdb_gateway_functions WHERE signature = $1",
                &[s],
            )
            .await?;
        }
        return Ok(());
    }
    // Bodies are validated when called, not when created: functions may call
    // each other in any file order (as pg_dump restores them).
    run.internal("SET LOCAL check_function_bodies = off", &[])
        .await?;
    let before: HashSet<u32> = run
        .internal(
            "SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Signatures the changed functions already have (a body change keeps its
    // signature and is replaced in place, not dropped). A type in the
    // signature that does not exist yet means the function is new.
    let mut current: HashSet<String> = HashSet::new();
    for d in &changed {
        run.tx
            .batch_execute("SAVEPOINT sdg_lookup")
            .await
            .map_err(|e| run.fail(None, None, "savepoint failed".into(), Some(&e)))?;
        match run
            .tx
            .query("SELECT to_regprocedure($1)::text", &[&d.lookup])
            .await
        {
            Ok(rows) => {
                if let Some(sig) = rows.first().and_then(|r| r.get::<_, Option<String>>(0)) {
                    current.insert(sig);
                }
                run.tx.batch_execute("RELEASE SAVEPOINT sdg_lookup").await
            }
            Err(_) => {
                run.tx
                    .batch_execute("ROLLBACK TO SAVEPOINT sdg_lookup; RELEASE SAVEPOINT sdg_lookup")
                    .await
            }
        }
        .map_err(|e| run.fail(None, None, "savepoint failed".into(), Some(&e)))?;
    }
    // Drop what is no longer declared first, so a signature change is DROP + CREATE.
    for (sig, _) in tracked.iter().filter(|(s, _)| !keep.contains(*s)) {
        if !live.contains(sig) {
            run.internal(
                "DELETE FROM _stonescriptdb_gateway_functions WHERE signature = $1",
                &[sig],
            )
            .await?;
            continue;
        }
        if current.contains(sig) {
            continue;
        }
        let drop = format!("DROP ROUTINE IF EXISTS {sig}");
        run.note("functions", None, sig, "no longer in functions/", &drop);
        run.tx.batch_execute(&drop).await.map_err(|e| {
            run.fail(
                None,
                None,
                format!("dropping function {sig} (no longer in functions/) failed"),
                Some(&e),
            )
        })?;
        run.internal(
            "DELETE FROM _stonescriptdb_gateway_functions WHERE signature = $1",
            &[sig],
        )
        .await?;
        run.report.functions_dropped += 1;
        run.changelog("function", sig, "dropped", None).await?;
    }
    for d in &changed {
        let text = or_replace(&d.stmt.text);
        run.note("functions", None, &d.lookup, "new or changed", &text);
        let sp = run.tx.batch_execute("SAVEPOINT sdg_fn").await;
        sp.map_err(|e| run.fail(None, None, "savepoint failed".into(), Some(&e)))?;
        if let Err(e) = run.tx.batch_execute(&text).await {
            let code = e.code().map(|c| c.code().to_owned());
            // return type or parameter names changed: DROP + CREATE
            if code.as_deref() == Some("42P13") {
                run.tx
                    .batch_execute("ROLLBACK TO SAVEPOINT sdg_fn")
                    .await
                    .map_err(|e| {
                        run.fail(None, None, "rollback to savepoint failed".into(), Some(&e))
                    })?;
                let drop = format!("DROP ROUTINE {}", d.lookup);
                run.tx.batch_execute(&drop).await.map_err(|e| {
                    run.fail(
                        Some(&d.file.path),
                        Some((d.index, d.stmt)),
                        format!("replacing {} failed", d.lookup),
                        Some(&e),
                    )
                })?;
                run.tx.batch_execute(&text).await.map_err(|e| {
                    run.fail(
                        Some(&d.file.path),
                        Some((d.index, d.stmt)),
                        "creating a function failed".into(),
                        Some(&e),
                    )
                })?;
            } else {
                return Err(run.fail(
                    Some(&d.file.path),
                    Some((d.index, d.stmt)),
                    "creating a function failed".into(),
                    Some(&e),
                ));
            }
        }
        run.tx
            .batch_execute("RELEASE SAVEPOINT sdg_fn")
            .await
            .map_err(|e| run.fail(None, None, "release savepoint failed".into(), Some(&e)))?;
        let rows = run
            .tx
            .query(
                "SELECT p::oid, p::text FROM to_regprocedure($1) p",
                &[&d.lookup],
            )
            .await
            .map_err(|e| {
                run.fail(
                    Some(&d.file.path),
                    Some((d.index, d.stmt)),
                    "resolving the function's signature failed".into(),
                    Some(&e),
                )
            })?;
        let (oid, sig): (Option<u32>, Option<String>) = rows
            .first()
            .map(|r| (r.get(0), r.get(1)))
            .unwrap_or((None, None));
        let (Some(oid), Some(sig)) = (oid, sig) else {
            return Err(run.fail(
                Some(&d.file.path),
                Some((d.index, d.stmt)),
                format!(
                    "function {} was created but cannot be found by its signature",
                    d.lookup
                ),
                None,
            ));
        };
        // same identity as before (also when replaced by DROP + CREATE)
        let existed = before.contains(&oid) || current.contains(&sig);
        if existed {
            run.report.functions_updated += 1;
        } else {
            run.report.functions_created += 1;
        }
        let name = format!(
            "{}.{}",
            d.routine.schema.as_deref().unwrap_or("public"),
            d.routine.name
        );
        run.internal(
            "INSERT INTO _stonescriptdb_gateway_functions (signature, name, file, checksum) VALUES ($1, $2, $3, $4)
             ON CONFLICT (signature) DO UPDATE SET name = excluded.name, file = excluded.file,
                 checksum = excluded.checksum, deployed_at = now()",
            &[&sig, &name, &d.file.path, &d.checksum],
        )
        .await?;
        run.changelog(
            "function",
            &sig,
            if existed { "updated" } else { "created" },
            Some(&d.checksum),
        )
        .await?;
        info!(run.log, "function deployed"; "database" => run.database, "function" => &sig, "file" => &d.file.path);
    }
    // Non-routine statements of changed files (COMMENT ON, GRANT, ...).
    let changed_files: BTreeSet<&str> = changed.iter().map(|d| d.file.path.as_str()).collect();
    for file in schema
        .functions
        .iter()
        .filter(|f| changed_files.contains(f.path.as_str()))
    {
        for (i, s) in file.statements.iter().enumerate() {
            if !crate::schema::is_routine(&s.text) {
                run.exec(&file.path, i, s, "function file statement")
                    .await?;
            }
        }
    }
    Ok(())
}

/// The checksum each seeder file had when the gateway last seeded or
/// checked it (from the changelog), by path.
async fn seeder_checksums(run: &Run<'_>) -> Result<HashMap<String, String>, MigratorError> {
    run.pairs(
        "SELECT DISTINCT ON (object) object, checksum FROM _stonescriptdb_gateway_changelog
         WHERE kind = 'seeder' AND checksum IS NOT NULL ORDER BY object, id DESC",
    )
    .await
}

/// Per-table results of one seeder file, in the order tables first appear.
fn seeder_results(
    file: &SqlFile,
    checks: &[(usize, seed::Check)],
    inserted: &HashMap<String, u64>,
) -> Vec<SeederResult> {
    let mut out: Vec<SeederResult> = Vec::new();
    for (_, c) in checks {
        let r = match out.iter_mut().position(|r| r.table == c.table) {
            Some(i) => &mut out[i],
            None => {
                out.push(SeederResult {
                    table: c.table.clone(),
                    file: file.path.clone(),
                    matched_on: c.matched.as_str().into(),
                    ..SeederResult::default()
                });
                out.last_mut().expect("just pushed")
            }
        };
        r.present += c.present;
        r.missing += c.missing;
        if c.matched == seed::Match::Count {
            r.matched_on = "count".into();
        }
        for k in &c.missing_rows {
            if r.missing_rows.len() < 20 {
                r.missing_rows.push(k.clone());
            }
        }
    }
    for r in &mut out {
        let ins = inserted.get(&r.table).copied().unwrap_or(0);
        r.inserted = ins;
        r.missing = r.missing.saturating_sub(ins);
        r.present += ins;
        r.skipped = r.present.saturating_sub(ins);
    }
    out
}

/// `seeders/` (docs/SCHEMA.md, "Seeders"): `/register` runs a seeder when its tables are
/// empty; `/migrate` runs it whole for a table created in this deployment,
/// inserts the missing rows of a new or changed seeder, and verifies an
/// unchanged one row by row — a missing row fails the deployment naming
/// table and key, unless `force`, which inserts it again.
async fn seeders(run: &mut Run<'_>, schema: &Parsed, opts: Options) -> Result<(), MigratorError> {
    if schema.seeders.is_empty() {
        return Ok(());
    }
    let recorded = seeder_checksums(run).await?;
    for file in &schema.seeders {
        let inserts: Vec<(usize, sql::Insert)> = file
            .statements
            .iter()
            .enumerate()
            .filter_map(|(i, s)| sql::parse_insert(&s.text).map(|ins| (i, ins)))
            .collect();
        let created_here = inserts
            .iter()
            .any(|(_, ins)| run.created.contains(&table_key(&ins.schema, &ins.table)));
        let mut empty = true;
        for (_, ins) in &inserts {
            let rows = run
                .internal(
                    &format!(
                        "SELECT NOT EXISTS (SELECT 1 FROM {})",
                        qualified(&ins.schema, &ins.table)
                    ),
                    &[],
                )
                .await?;
            empty &= rows.first().is_some_and(|r| r.get::<_, bool>(0));
        }
        let whole = match opts.mode {
            Mode::Register => empty,
            Mode::Migrate => created_here,
        };
        let mut inserted: HashMap<String, u64> = HashMap::new();
        if whole {
            for (i, s) in file.statements.iter().enumerate() {
                let rows = run.exec(&file.path, i, s, "seeder").await?;
                if let Some(ins) = sql::parse_insert(&s.text) {
                    *inserted.entry(seed::label(&ins)).or_default() += rows;
                }
            }
            for (table, rows) in &inserted {
                run.report.seeders.push(SeederResult {
                    table: table.clone(),
                    file: file.path.clone(),
                    inserted: *rows,
                    present: *rows,
                    ..SeederResult::default()
                });
            }
            if recorded.get(&file.path) != Some(&file.checksum) {
                run.changelog("seeder", &file.path, "seeded", Some(&file.checksum))
                    .await?;
            }
            continue;
        }
        let mut checks = Vec::new();
        for (i, ins) in &inserts {
            let c = seed::check(&run.tx, ins).await.map_err(|e| {
                run.fail(
                    Some(&file.path),
                    Some((*i, &file.statements[*i])),
                    "seeder check failed".into(),
                    Some(&e),
                )
            })?;
            checks.push((*i, c));
        }
        let missing: u64 = checks.iter().map(|(_, c)| c.missing).sum();
        let state = match recorded.get(&file.path) {
            None => "new",
            Some(c) if *c != file.checksum => "changed",
            Some(_) => "unchanged",
        };
        let insert =
            opts.mode == Mode::Migrate && missing > 0 && (state != "unchanged" || opts.force);
        if opts.mode == Mode::Migrate && state == "unchanged" && !opts.force {
            if let Some((i, c)) = checks
                .iter()
                .find(|(_, c)| c.missing > 0 && c.matched != seed::Match::Count)
            {
                let total: u64 = checks
                    .iter()
                    .filter(|(_, x)| x.table == c.table)
                    .map(|(_, x)| x.rows)
                    .sum();
                let lost: u64 = checks
                    .iter()
                    .filter(|(_, x)| x.table == c.table)
                    .map(|(_, x)| x.missing)
                    .sum();
                return Err(run.fail(
                    Some(&file.path),
                    Some((*i, &file.statements[*i])),
                    format!(
                        "seeded rows missing from {}: {lost} of {total} ({}); deploy with force=true to insert them again",
                        c.table,
                        c.missing_rows.join(", ")
                    ),
                    None,
                ));
            }
        }
        if insert {
            for (i, c) in &checks {
                let rows = c.insert_missing(&run.tx).await.map_err(|e| {
                    run.fail(
                        Some(&file.path),
                        Some((*i, &file.statements[*i])),
                        format!("inserting the missing seeded rows of {} failed", c.table),
                        Some(&e),
                    )
                })?;
                run.note(
                    "seeders",
                    None,
                    &file.path,
                    "insert missing seeded rows",
                    &format!("-- {rows} row(s) into {}", c.table),
                );
                *inserted.entry(c.table.clone()).or_default() += rows;
            }
            // What else the file does (setval after explicit ids…) follows
            // the rows it seeds.
            if inserted.values().any(|r| *r > 0) {
                for (i, s) in file.statements.iter().enumerate() {
                    if sql::parse_insert(&s.text).is_none() {
                        run.exec(&file.path, i, s, "seeder").await?;
                    }
                }
            }
        }
        run.report
            .seeders
            .extend(seeder_results(file, &checks, &inserted));
        if opts.mode == Mode::Migrate && recorded.get(&file.path) != Some(&file.checksum) {
            run.changelog(
                "seeder",
                &file.path,
                if insert { "inserted" } else { "verified" },
                Some(&file.checksum),
            )
            .await?;
        }
    }
    Ok(())
}

/// Does every declared table match its recorded declared model (no diff
/// left)? True when the schema has no `tables/`.
async fn tables_as_declared(
    client: &mut Client,
    schema: &Parsed,
) -> Result<bool, tokio_postgres::Error> {
    if schema.declared.is_none() {
        return Ok(true);
    }
    let rows = client
        .query(
            "SELECT name, declared::text, folder_checksum FROM _stonescriptdb_gateway_tables WHERE declared IS NOT NULL",
            &[],
        )
        .await?;
    let (declared, _) = declared_model(&rows);
    let tables: BTreeSet<QName> = declared.tables.keys().cloned().collect();
    let sequences: BTreeSet<QName> = declared.sequences.keys().cloned().collect();
    let tx = client.transaction().await?;
    let observed = introspect::observe(&tx, &declared, &tables, &sequences).await?;
    tx.rollback().await?;
    Ok(diff::diff(&declared, &observed, &declared).is_empty())
}

/// Check, in the database itself, that everything the schema declares is
/// there: extensions installed, types and tables present, seeded rows present.
pub async fn verify(
    client: &mut Client,
    schema: &Parsed,
) -> Result<(stonescriptdb_shared::wire::Verification, Vec<SeederResult>), MigratorError> {
    let q = |e: tokio_postgres::Error| {
        MigratorError::DatabaseUnavailable(format!("verification failed: {}", pg_message(&e)))
    };
    // How many of `names` the database lacks, `missing` being the test per name `n`.
    async fn count_missing(
        client: &Client,
        names: &[String],
        missing: &str,
    ) -> Result<i64, tokio_postgres::Error> {
        let sql_text = format!("SELECT count(*) FROM unnest($1::text[]) n WHERE {missing}");
        Ok(client.query_one(&sql_text, &[&names]).await?.get(0))
    }
    let exts: Vec<String> = schema.extensions.iter().map(|e| e.name.clone()).collect();
    let types: Vec<String> = schema
        .types
        .iter()
        .flat_map(|f| &f.statements)
        .filter_map(|s| sql::parse_type(&s.text).ok())
        .map(|def| {
            let (sch, name, _) = type_name(&def);
            qualified(&sch, &name)
        })
        .collect();
    let tables: Vec<String> = schema
        .tables
        .iter()
        .flat_map(|f| &f.statements)
        .filter_map(|s| match sql::classify_table_stmt(&s.text) {
            TableStmt::CreateTable {
                schema: sch, name, ..
            } => Some(qualified(&sch, &name)),
            TableStmt::Other => None,
        })
        .collect();
    let missing_ext = count_missing(
        client,
        &exts,
        "NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = n)",
    )
    .await
    .map_err(q)?;
    let missing_types = count_missing(client, &types, "to_regtype(n) IS NULL")
        .await
        .map_err(q)?;
    let missing_tables = count_missing(client, &tables, "to_regclass(n) IS NULL")
        .await
        .map_err(q)?;
    let tables_match = tables_as_declared(&mut *client, schema).await.map_err(q)?;
    // Seeded rows, row by row, in a transaction that is rolled back.
    let mut seeders = Vec::new();
    let mut seeders_failed = false;
    if !schema.seeders.is_empty() {
        let tx = client.transaction().await.map_err(q)?;
        for file in &schema.seeders {
            let mut checks = Vec::new();
            for (i, s) in file.statements.iter().enumerate() {
                if let Some(ins) = sql::parse_insert(&s.text) {
                    // a seeder that cannot even be evaluated is not verified
                    match seed::check(&tx, &ins).await {
                        Ok(c) => checks.push((i, c)),
                        Err(_) => seeders_failed = true,
                    }
                }
                if seeders_failed {
                    break;
                }
            }
            seeders.extend(seeder_results(file, &checks, &HashMap::new()));
            if seeders_failed {
                break;
            }
        }
        let _ = tx.rollback().await;
    }
    let seeders_ok = !seeders_failed && seeders.iter().all(|s| s.missing == 0);
    let v = stonescriptdb_shared::wire::Verification {
        passed: false,
        extensions_verified: missing_ext == 0,
        types_verified: missing_types == 0,
        tables_verified: missing_tables == 0 && tables_match,
        seeders_verified: seeders_ok,
    };
    Ok((
        stonescriptdb_shared::wire::Verification {
            passed: v.extensions_verified
                && v.types_verified
                && v.tables_verified
                && v.seeders_verified,
            ..v
        },
        seeders,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_need_autocommit() {
        for s in [
            "CREATE INDEX CONCURRENTLY idx ON t (a)",
            "create unique index concurrently if not exists i on t(a)",
            "DROP INDEX CONCURRENTLY idx",
            "REINDEX TABLE CONCURRENTLY t",
            "VACUUM ANALYZE t",
            "ALTER SYSTEM SET work_mem = '8MB'",
        ] {
            assert!(needs_autocommit(s), "{s}");
        }
        for s in [
            "CREATE INDEX idx ON t (a)",
            "REINDEX TABLE t",
            "ALTER TABLE t ADD COLUMN concurrently int",
            "SELECT 'vacuum'",
        ] {
            assert!(!needs_autocommit(s), "{s}");
        }
    }

    #[test]
    fn or_replace_rewrites_plain_create() {
        assert_eq!(
            or_replace("CREATE FUNCTION f() RETURNS int"),
            "CREATE OR REPLACE FUNCTION f() RETURNS int"
        );
        assert_eq!(
            or_replace("create procedure p()"),
            "CREATE OR REPLACE procedure p()"
        );
        assert_eq!(
            or_replace("CREATE OR REPLACE FUNCTION f()"),
            "CREATE OR REPLACE FUNCTION f()"
        );
    }

    fn tf(name: &str, refs: &[&str]) -> (String, Vec<(String, String)>) {
        (
            name.into(),
            refs.iter()
                .map(|r| ("public".to_string(), r.to_string()))
                .collect(),
        )
    }

    #[test]
    fn creation_order_follows_references_and_finds_cycles() {
        let file = SqlFile {
            path: "tables/x.sql".into(),
            statements: vec![],
            checksum: String::new(),
        };
        let specs = [
            tf("orders", &["users", "products"]),
            tf("users", &["users"]),
            tf("products", &[]),
            tf("a", &["b"]),
            tf("b", &["a"]),
        ];
        let files: Vec<TableFile<'_>> = specs
            .iter()
            .map(|(n, refs)| TableFile {
                file: &file,
                key: ("public".into(), n.clone()),
                create_index: 0,
                references: refs.clone(),
            })
            .collect();
        let (order, cyclic) = creation_order(&files);
        let pos = |n: &str| order.iter().position(|&i| files[i].key.1 == n).unwrap();
        assert!(pos("users") < pos("orders"));
        assert!(pos("products") < pos("orders"));
        let mut cyc: Vec<&str> = cyclic.iter().map(|&i| files[i].key.1.as_str()).collect();
        cyc.sort();
        assert_eq!(cyc, ["a", "b"]);
    }
}
