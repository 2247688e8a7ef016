//! The one executor of a deployment. It owns the transaction (opened under
//! the per-database advisory lock, committed or — for a dry run — rolled
//! back at the end), runs [`Step`]s, records what they did (report
//! counters, the changelog, the tracking tables: [`Done`]), lists every
//! step it ran as the report's plan, and keeps the statements PostgreSQL
//! refuses in a transaction block for after the commit.
//!
//! It is the single place of the transaction's seal: every statement that
//! holds uploaded text (a schema file's, or SQL the gateway built around
//! uploaded parts) is sent on its own through the extended protocol, where
//! PostgreSQL refuses a second statement, and after each one the executor
//! checks that the transaction is still this deployment's (`sql::guard`
//! refuses transaction control before anything runs; this is what holds
//! whatever the reader missed).
//!
//! Step modules read the database through it (`internal`, `pairs`,
//! `trial`) in their `observe` phase; they never write.

use std::collections::BTreeSet;

use slog::{info, Logger};
use stonescriptdb_shared::names::{AFTER_CALL_FUNCTION, AFTER_CALL_VERSION};
use stonescriptdb_shared::wire::{DeployStatus, DeploymentReport};
use tokio_postgres::{Client, Transaction};

use crate::error::{pg_message, MigratorError, StepFailure};
use crate::step::{after_commit_name, after_commit_steps, At, Counter, Done, Refusal, Step};

/// Advisory lock key (two-int form) serializing deployments of one database.
pub const LOCK_CLASS: i32 = 0x5344_4757; // "SDGW"
pub const LOCK_OBJ: i32 = 1;

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
const AFTER_CALL_DDL: &str = include_str!("after_call.sql");

/// Columns added to the tracking tables after their first release
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

pub struct Run<'a> {
    tx: Transaction<'a>,
    /// The transaction's id, and the statement that reads it again (the seal).
    xid: i64,
    xid_now: tokio_postgres::Statement,
    pub database: &'a str,
    log: &'a Logger,
    pub report: DeploymentReport,
    /// Statements PostgreSQL refuses inside a transaction block, with the
    /// step they belong to, run after the commit.
    after_commit: Vec<Step>,
    /// Tables this deployment created from `tables/` (schema, name).
    pub created: BTreeSet<(String, String)>,
}

/// What a committed deployment leaves for after the commit.
pub struct Committed {
    pub report: DeploymentReport,
    after_commit: Vec<Step>,
}

impl<'a> Run<'a> {
    /// Open the deployment's transaction on `client`, take the database's
    /// lock, and make sure the tracking tables and the after-call function
    /// are current.
    pub async fn begin(
        client: &'a mut Client,
        database: &'a str,
        log: &'a Logger,
    ) -> Result<Run<'a>, MigratorError> {
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
        let run = Run {
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
            after_commit: Vec::new(),
            created: BTreeSet::new(),
        };
        run.internal(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_OBJ],
        )
        .await?;
        run.ensure_tracking().await?;
        Ok(run)
    }

    /// The deployment's transaction, for reads of the observe phase.
    pub fn tx(&self) -> &Transaction<'a> {
        &self.tx
    }

    /// The error of a statement at `at` that failed ([`failure`]).
    pub fn fail(&self, at: &At, message: &str, e: Option<&tokio_postgres::Error>) -> MigratorError {
        failure(self.database, at, message, e)
    }

    /// A plan's refusal as the deployment's error.
    pub fn refused(&self, r: Refusal) -> MigratorError {
        self.fail(&r.at, &r.message, None)
    }

    /// Send one statement that holds uploaded text on its own and check that
    /// the transaction is still this deployment's. The inner error is
    /// PostgreSQL's refusal of the statement; the outer one says the
    /// transaction is no longer this one.
    async fn send(&self, text: &str) -> Result<Result<u64, tokio_postgres::Error>, MigratorError> {
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
                &At::default(),
                &format!(
                    "the deployment's transaction was ended by an uploaded statement ({}); the deployment is stopped",
                    text.chars().take(80).collect::<String>()
                ),
                None,
            ));
        }
        Ok(Ok(rows))
    }

    /// Observe what PostgreSQL would say to `text` without keeping it: run
    /// it (sealed like any uploaded statement) inside a savepoint that is
    /// rolled back. Returns PostgreSQL's refusal, if any.
    pub async fn trial(&self, text: &str) -> Result<Option<tokio_postgres::Error>, MigratorError> {
        self.savepoint("SAVEPOINT sdg_trial").await?;
        let refused = self.send(text).await?.err();
        self.savepoint("ROLLBACK TO SAVEPOINT sdg_trial; RELEASE SAVEPOINT sdg_trial")
            .await?;
        Ok(refused)
    }

    /// A read that may fail without failing the deployment (a name that
    /// does not resolve yet): None when PostgreSQL refused it.
    pub async fn try_read(
        &self,
        sql_text: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Vec<tokio_postgres::Row>>, MigratorError> {
        self.savepoint("SAVEPOINT sdg_read").await?;
        match self.tx.query(sql_text, params).await {
            Ok(rows) => {
                self.savepoint("RELEASE SAVEPOINT sdg_read").await?;
                Ok(Some(rows))
            }
            Err(_) => {
                self.savepoint("ROLLBACK TO SAVEPOINT sdg_read; RELEASE SAVEPOINT sdg_read")
                    .await?;
                Ok(None)
            }
        }
    }

    async fn savepoint(&self, text: &str) -> Result<(), MigratorError> {
        self.tx
            .batch_execute(text)
            .await
            .map_err(|e| self.fail(&At::default(), "savepoint failed", Some(&e)))
    }

    /// Gateway-internal SQL (tracking tables, catalog reads).
    pub async fn internal(
        &self,
        sql_text: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, MigratorError> {
        self.tx
            .query(sql_text, params)
            .await
            .map_err(|e| self.fail(&At::default(), "gateway bookkeeping failed", Some(&e)))
    }

    /// A two-column text query as a map (tracked name → checksum).
    pub async fn pairs<C: FromIterator<(String, String)>>(
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

    /// Run `steps` in order, each statement sealed, and record what each
    /// did; statements for after the commit are kept. Returns, per step,
    /// the rows each of its statements run in the transaction affected.
    pub async fn execute(&mut self, steps: &[Step]) -> Result<Vec<Vec<u64>>, MigratorError> {
        let mut affected = Vec::with_capacity(steps.len());
        for step in steps {
            if step.by_admin {
                // only a dry run plans it: a real deployment's admin role
                // installed it before the transaction
                self.report.plan.extend(step.plan_step());
                affected.push(Vec::new());
                continue;
            }
            let mut rows = Vec::with_capacity(step.sql.len());
            for sql in step.sql.iter().filter(|s| s.after_commit.is_none()) {
                rows.push(
                    self.send(&sql.text)
                        .await?
                        .map_err(|e| self.fail(&sql.at, &sql.failure, Some(&e)))?,
                );
            }
            self.report.plan.extend(step.plan_step());
            for done in &step.done {
                self.record(done).await?;
            }
            if !step.sql.is_empty() {
                info!(self.log, "deployment step"; "database" => self.database,
                      "phase" => step.phase.as_str(), "object" => &step.object, "reason" => &step.reason);
            }
            if step.sql.iter().any(|s| s.after_commit.is_some()) {
                self.after_commit.push(step.clone());
            }
            affected.push(rows);
        }
        Ok(affected)
    }

    async fn record(&mut self, done: &Done) -> Result<(), MigratorError> {
        match done {
            Done::Count(c) => self.count(*c, 1),
            Done::Add(c, n) => self.count(*c, *n),
            Done::Changelog {
                kind,
                object,
                action,
                checksum,
            } => {
                self.changelog(kind, object, action, checksum.as_deref())
                    .await?
            }
            Done::Note(n) => self.report.notes.push(n.clone()),
            Done::Kept(k) => self.report.kept.push(k.clone()),
            Done::Created(key) => {
                self.created.insert(key.clone());
            }
            Done::TrackType {
                key,
                kind,
                checksum,
            } => {
                self.internal(
                    "INSERT INTO _stonescriptdb_gateway_types (name, kind, checksum) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, checksum = excluded.checksum, deployed_at = now()",
                    &[key, &kind.as_str(), checksum],
                )
                .await?;
            }
            Done::TrackMigration {
                name,
                checksum,
                pending,
            } => {
                self.internal(
                    "INSERT INTO _stonescriptdb_gateway_migrations (filename, checksum, deferred_pending) VALUES ($1, $2, $3)",
                    &[name, checksum, pending],
                )
                .await?;
            }
            Done::AcceptMigration { name, checksum } => {
                self.internal(
                    "UPDATE _stonescriptdb_gateway_migrations SET checksum = $2 WHERE filename = $1",
                    &[name, checksum],
                )
                .await?;
            }
            Done::TrackFunction {
                lookup,
                name,
                file,
                checksum,
                existed,
            } => {
                self.track_function(lookup, name, file, checksum, *existed)
                    .await?
            }
            Done::ForgetFunction(sig) => {
                self.internal(
                    "DELETE FROM _stonescriptdb_gateway_functions WHERE signature = $1",
                    &[sig],
                )
                .await?;
            }
            Done::TrackTables {
                rows,
                folder_checksum,
            } => {
                let mut names = Vec::with_capacity(rows.len());
                for (key, file, sum, json) in rows {
                    names.push(key.as_str());
                    self.internal(
                        "INSERT INTO _stonescriptdb_gateway_tables (name, file, checksum, declared, folder_checksum)
                         VALUES ($1, $2, $3, $4::text::jsonb, $5)
                         ON CONFLICT (name) DO UPDATE SET file = excluded.file, checksum = excluded.checksum,
                           declared = excluded.declared, folder_checksum = excluded.folder_checksum, deployed_at = now()",
                        &[key, file, sum, json, folder_checksum],
                    )
                    .await?;
                }
                self.internal(
                    "DELETE FROM _stonescriptdb_gateway_tables WHERE NOT (name = ANY($1))",
                    &[&names],
                )
                .await?;
            }
        }
        Ok(())
    }

    fn count(&mut self, c: Counter, n: u64) {
        let r = &mut self.report;
        *match c {
            Counter::ExtensionsInstalled => &mut r.extensions_installed,
            Counter::TypesDeployed => &mut r.types_deployed,
            Counter::TablesCreated => &mut r.tables_created,
            Counter::TablesAltered => &mut r.tables_altered,
            Counter::MigrationsApplied => &mut r.migrations_applied,
            Counter::MigrationsSkipped => &mut r.migrations_skipped,
            Counter::FunctionsUnchanged => &mut r.functions_unchanged,
            Counter::FunctionsDropped => &mut r.functions_dropped,
        } += n;
    }

    /// Track a routine just created or replaced under the signature
    /// PostgreSQL gives it, and count it.
    async fn track_function(
        &mut self,
        lookup: &str,
        name: &str,
        file: &str,
        checksum: &str,
        existed: bool,
    ) -> Result<(), MigratorError> {
        let at = At::file(file);
        let rows = self
            .tx
            .query("SELECT p::text FROM to_regprocedure($1) p", &[&lookup])
            .await
            .map_err(|e| self.fail(&at, "resolving the function's signature failed", Some(&e)))?;
        let Some(sig) = rows.first().and_then(|r| r.get::<_, Option<String>>(0)) else {
            return Err(self.fail(
                &at,
                &format!("function {lookup} was created but cannot be found by its signature"),
                None,
            ));
        };
        if existed {
            self.report.functions_updated += 1;
        } else {
            self.report.functions_created += 1;
        }
        self.internal(
            "INSERT INTO _stonescriptdb_gateway_functions (signature, name, file, checksum) VALUES ($1, $2, $3, $4)
             ON CONFLICT (signature) DO UPDATE SET name = excluded.name, file = excluded.file,
                 checksum = excluded.checksum, deployed_at = now()",
            &[&sig, &name, &file, &checksum],
        )
        .await?;
        let action = if existed { "updated" } else { "created" };
        self.changelog("function", &sig, action, Some(checksum))
            .await
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

    /// A dry run: roll everything back and report the plan, the statements
    /// for after the commit listed as not run.
    pub async fn roll_back(self) -> Result<DeploymentReport, MigratorError> {
        let database = self.database;
        self.tx.rollback().await.map_err(|e| {
            MigratorError::DatabaseUnavailable(format!(
                "{database}: rollback failed: {}",
                pg_message(&e)
            ))
        })?;
        let mut report = self.report;
        report
            .plan
            .extend(after_commit_steps(&self.after_commit, true));
        Ok(report)
    }

    /// Commit the deployment; what runs after the commit follows with
    /// [`Committed::after_commit`].
    pub async fn commit(self) -> Result<Committed, MigratorError> {
        let database = self.database;
        self.tx.commit().await.map_err(|e| {
            MigratorError::DatabaseUnavailable(format!(
                "{database}: commit failed: {}",
                pg_message(&e)
            ))
        })?;
        Ok(Committed {
            report: self.report,
            after_commit: self.after_commit,
        })
    }

    async fn ensure_tracking(&self) -> Result<(), MigratorError> {
        let names: Vec<&str> = TRACKING_TABLES.to_vec();
        let rows = self
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
                "creating the gateway's tracking tables failed",
            ),
            (
                after_call_outdated,
                AFTER_CALL_DDL,
                "creating the gateway's after-call function failed",
            ),
            (
                upgrade,
                TRACKING_UPGRADE,
                "upgrading the gateway's tracking tables failed",
            ),
        ] {
            if needed {
                self.tx
                    .batch_execute(ddl)
                    .await
                    .map_err(|e| self.fail(&At::default(), what, Some(&e)))?;
            }
        }
        Ok(())
    }
}

/// The error of a deployment step in `database` that failed at `at`:
/// `message`, and — when `e` is PostgreSQL's error — its SQLSTATE, detail,
/// hint and message, the message also said after the file and statement.
/// The one place a step's failure is built.
pub fn failure(
    database: &str,
    at: &At,
    message: &str,
    e: Option<&tokio_postgres::Error>,
) -> MigratorError {
    let mut f = StepFailure {
        file: at.file.clone(),
        line: at.statement.map(|(_, line)| line),
        statement: at.statement.map(|(i, _)| i + 1),
        ..StepFailure::new(database, message.to_owned(), e)
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

impl Committed {
    /// Run, outside any transaction and as the deployment's role, the
    /// statements PostgreSQL refuses in a transaction block. Each stays
    /// pending in its migration's tracking row until it succeeded (a later
    /// deployment retries only what is pending); a failure is reported as
    /// happening after the commit.
    pub async fn after_commit(
        mut self,
        client: &Client,
        log: &Logger,
    ) -> Result<DeploymentReport, MigratorError> {
        let database = self.report.database.clone();
        for sql in self.after_commit.iter().flat_map(|s| &s.sql) {
            let Some(late) = &sql.after_commit else {
                continue;
            };
            let done = match client.execute(sql.text.as_str(), &[]).await {
                Ok(_) => {
                    client
                        .execute(
                            "UPDATE _stonescriptdb_gateway_migrations
                             SET deferred_pending = array_remove(deferred_pending, $2) WHERE filename = $1",
                            &[&late.migration, &late.number],
                        )
                        .await
                }
                Err(e) => Err(e),
            };
            let name = after_commit_name(sql);
            if let Err(e) = done {
                return Err(failure(
                    &database,
                    &sql.at,
                    "this statement cannot run in a transaction and ran after the rest of the deployment was committed; it failed, and the migration stays recorded with it pending (the next deployment runs it again)",
                    Some(&e),
                ));
            }
            info!(log, "statement run outside the transaction"; "database" => &database, "statement" => &name);
            self.report.deferred_statements.push(name);
        }
        self.report
            .plan
            .extend(after_commit_steps(&self.after_commit, false));
        Ok(self.report)
    }
}
