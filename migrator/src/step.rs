//! The currency of a deployment: a [`Step`] is one typed value — phase,
//! object, change class, the SQL text that runs and why — that every step
//! module's pure `plan` returns, with what the executor records once its
//! SQL succeeded ([`Done`]). Nothing here touches a database: the executor
//! (`exec.rs`) runs steps; a dry run runs the same steps and rolls back,
//! and the plan either reports is these steps ([`Step::plan_step`]).
//!
//! The deployment's options live here too, so step modules need nothing
//! from the module above them.

use stonescriptdb_shared::names::quote_ident;
use stonescriptdb_shared::wire::{AllowClass, Kept, PlanStep};

use crate::sql::Statement;
use stonescriptdb_shared::wire::ChangeClass as Class;

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
    /// Apply the dataloss/incompatible `tables/` changes of these classes
    /// (the v2 migrate routes' `allow`); the rest still needs `force`.
    pub allow: Allowed,
    /// Run everything, report the plan, roll back.
    pub dry_run: bool,
    /// The schema deployed is an older version than the one the database
    /// runs (see [`is_rollback`]): migrations run forward only, so those
    /// recorded in the database are skipped whatever their checksum, and
    /// what cannot be undone in place — migrations applied since, enum
    /// values added since, composite types and domains changed since, types
    /// the older version does not declare — stays and is listed in the
    /// report's `kept` ([`Done::Kept`]). Types, `tables/` (data-losing
    /// changes still need `force` or `allow`), functions and seeders are
    /// deployed as for any version. Turn it on with [`Options::rolling_back`].
    pub rollback: bool,
}

impl Options {
    /// A migration's options: `force`, the `allow`ed classes, `dry_run`.
    pub fn migrate(force: bool, allow: &[AllowClass], dry_run: bool) -> Options {
        Options {
            mode: Mode::Migrate,
            force,
            allow: allow.iter().collect(),
            dry_run,
            rollback: false,
        }
    }

    /// The same options, deploying an older version than the database's
    /// when `rollback` ([`Options::rollback`]).
    pub fn rolling_back(self, rollback: bool) -> Options {
        Options { rollback, ..self }
    }

    /// Whether a dataloss or incompatible table change of `class` (None: a
    /// change no class covers) goes through: under `force`, or when its
    /// class is allowed.
    pub fn lets_through(&self, class: Option<AllowClass>) -> bool {
        self.force || class.is_some_and(|c| self.allow.contains(c))
    }
}

/// Deploying version `target` into a database that records `deployed` is a
/// rollback when the target is older.
pub fn is_rollback(deployed: Option<i32>, target: i32) -> bool {
    deployed.is_some_and(|d| target < d)
}

/// A set of [`AllowClass`]es, small and `Copy` like the rest of [`Options`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed(u8);

impl Allowed {
    /// No class: only `force` lets a non-safe change through.
    pub const NONE: Allowed = Allowed(0);

    fn bit(class: AllowClass) -> u8 {
        let at = AllowClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        1 << at
    }

    pub fn contains(self, class: AllowClass) -> bool {
        self.0 & Self::bit(class) != 0
    }
}

impl<'a> FromIterator<&'a AllowClass> for Allowed {
    fn from_iter<I: IntoIterator<Item = &'a AllowClass>>(classes: I) -> Allowed {
        Allowed(classes.into_iter().fold(0, |set, c| set | Self::bit(*c)))
    }
}

pub use stonescriptdb_shared::wire::Phase;

/// Where a statement came from, for the error that names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct At {
    /// The schema file (None for SQL the gateway built from the model).
    pub file: Option<String>,
    /// The statement's 0-based index in its file and its first line.
    pub statement: Option<(usize, usize)>,
}

impl At {
    pub fn file(path: &str) -> At {
        At {
            file: Some(path.to_owned()),
            statement: None,
        }
    }

    pub fn statement(path: &str, index: usize, line: usize) -> At {
        At {
            file: Some(path.to_owned()),
            statement: Some((index, line)),
        }
    }
}

/// A statement PostgreSQL refuses inside a transaction block, run after the
/// commit: the migration it belongs to (its tracked name) and its 1-based
/// number there, which stays pending in the tracking row until it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterCommit {
    pub migration: String,
    pub number: i32,
}

/// One statement of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub at: At,
    /// The error's message when PostgreSQL refuses it (its own message
    /// follows).
    pub failure: String,
    /// Run after the commit instead of inside the transaction.
    pub after_commit: Option<AfterCommit>,
    /// The rows it affects count as seeded into this table (`seeders/`).
    pub tally: Option<String>,
}

impl Sql {
    pub fn new(text: impl Into<String>, at: At, failure: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            at,
            failure: failure.into(),
            after_commit: None,
            tally: None,
        }
    }

    /// Statement `index` of the schema file `path`; `what` it does names
    /// its failure ("{what} failed").
    pub fn of_file(path: &str, index: usize, stmt: &Statement, what: &str) -> Sql {
        Sql::new(
            stmt.text.clone(),
            At::statement(path, index, stmt.line),
            format!("{what} failed"),
        )
    }
}

/// Which counter of the report a step adds one to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    ExtensionsInstalled,
    TypesDeployed,
    TablesCreated,
    TablesAltered,
    MigrationsApplied,
    MigrationsSkipped,
    FunctionsUnchanged,
    FunctionsDropped,
}

/// What the executor records once a step's SQL succeeded: the report's
/// counters, the changelog and the tracking tables, each typed so the
/// executor holds the only SQL that writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Count(Counter),
    /// Adds more than one.
    Add(Counter, u64),
    /// A row of `_stonescriptdb_gateway_changelog`.
    Changelog {
        kind: &'static str,
        object: String,
        action: String,
        checksum: Option<String>,
    },
    /// A note for the report.
    Note(String),
    /// Something a rollback leaves in the database, for the report.
    Kept(Kept),
    /// A table this deployment created from `tables/` (seeders of it run whole).
    Created((String, String)),
    /// A type's tracking row.
    TrackType {
        key: String,
        kind: stonescriptdb_shared::catalog::TypeKind,
        checksum: String,
    },
    /// A migration applied; `pending`: its statements left for after the commit.
    TrackMigration {
        name: String,
        checksum: String,
        pending: Vec<i32>,
    },
    /// An applied migration's new text accepted under `force`.
    AcceptMigration {
        name: String,
        checksum: String,
    },
    /// A routine created or replaced: resolve its signature (`lookup`), track
    /// it, count it and record it in the changelog as created or updated.
    TrackFunction {
        lookup: String,
        name: String,
        file: String,
        checksum: String,
        existed: bool,
    },
    /// A tracked routine that is gone.
    ForgetFunction(String),
    /// The declared model of `tables/`: one row per table and sequence
    /// `(name, file, checksum, declared json)`, rows of other names deleted.
    TrackTables {
        rows: Vec<(String, String, String, String)>,
        folder_checksum: String,
    },
}

/// One step of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub phase: Phase,
    pub object: String,
    /// For table changes: safe, dataloss or incompatible.
    pub class: Option<Class>,
    /// For a table change `allow` can let through: its class.
    pub allow: Option<AllowClass>,
    pub reason: String,
    pub sql: Vec<Sql>,
    /// Recorded once every statement ran.
    pub done: Vec<Done>,
    /// Not run by this deployment's transaction: the gateway's admin role
    /// installs it before a real deployment; a dry run (the platform role's
    /// rights only) lists it.
    pub by_admin: bool,
}

impl Step {
    pub fn new(phase: Phase, object: impl Into<String>, reason: impl Into<String>) -> Step {
        Step {
            phase,
            object: object.into(),
            class: None,
            allow: None,
            reason: reason.into(),
            sql: Vec::new(),
            done: Vec::new(),
            by_admin: false,
        }
    }

    pub fn sql(mut self, sql: Sql) -> Step {
        self.sql.push(sql);
        self
    }

    pub fn done(mut self, done: Done) -> Step {
        self.done.push(done);
        self
    }

    pub fn class(mut self, class: Class) -> Step {
        self.class = Some(class);
        self
    }

    pub fn allow(mut self, allow: Option<AllowClass>) -> Step {
        self.allow = allow;
        self
    }

    /// The step as the report lists it: the statements it runs inside the
    /// transaction (those after the commit are listed on their own, see
    /// [`after_commit_steps`]). None for a step that runs no SQL.
    pub fn plan_step(&self) -> Option<PlanStep> {
        let sql: Vec<String> = self
            .sql
            .iter()
            .filter(|s| s.after_commit.is_none())
            .map(|s| s.text.clone())
            .collect();
        (!sql.is_empty()).then(|| PlanStep {
            phase: self.phase,
            class: self.class,
            object: self.object.clone(),
            reason: self.reason.clone(),
            sql,
            allow: self.allow,
        })
    }
}

/// The statements of `steps` that run after the commit, as the report lists
/// them (`file#statement`), each its own entry.
pub fn after_commit_steps<'a>(
    steps: impl IntoIterator<Item = &'a Step>,
    dry_run: bool,
) -> Vec<PlanStep> {
    let reason = if dry_run {
        "cannot run in a transaction block; runs after the commit (not run by a dry run)"
    } else {
        "cannot run in a transaction block; ran after the commit"
    };
    steps
        .into_iter()
        .flat_map(|s| &s.sql)
        .filter(|s| s.after_commit.is_some())
        .map(|s| PlanStep {
            phase: Phase::AfterCommit,
            class: None,
            object: after_commit_name(s),
            reason: reason.into(),
            sql: vec![s.text.clone()],
            allow: None,
        })
        .collect()
}

/// `file#statement` of a statement run after the commit.
pub fn after_commit_name(s: &Sql) -> String {
    match (&s.at.file, s.at.statement) {
        (Some(f), Some((i, _))) => format!("{f}#{}", i + 1),
        (Some(f), None) => f.clone(),
        _ => String::new(),
    }
}

/// The report's note on a file's whole-file `BEGIN;` … `COMMIT;` wrapper
/// (statements `a` and `b`), which a deployment does not run.
pub fn wrapper_note(path: &str, a: usize, b: usize) -> String {
    format!(
        "{path}: its whole-file transaction wrapper (statements {} and {}) was not run; the deployment runs in one transaction of its own",
        a + 1,
        b + 1
    )
}

/// `schema.name`, quoted (public when no schema is given).
pub fn qualified(schema: &Option<String>, name: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(schema.as_deref().unwrap_or("public")),
        quote_ident(name)
    )
}

/// A plan's refusal of the deployment: where and why (no PostgreSQL error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub at: At,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_lists_its_in_transaction_statements_and_the_rest_after_the_commit() {
        let mut late = Sql::new(
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            At::statement("migrations/001.sql", 1, 3),
            "migration failed",
        );
        late.after_commit = Some(AfterCommit {
            migration: "001.sql".into(),
            number: 2,
        });
        let step = Step::new(Phase::Migrations, "migrations/001.sql", "pending migration")
            .sql(Sql::new(
                "CREATE TABLE t (a int)",
                At::statement("migrations/001.sql", 0, 1),
                "migration failed",
            ))
            .sql(late);
        let listed = step.plan_step().unwrap();
        assert_eq!(listed.phase, Phase::Migrations);
        assert_eq!(listed.sql, ["CREATE TABLE t (a int)"]);
        let after = after_commit_steps([&step], true);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].object, "migrations/001.sql#2");
        assert_eq!(after[0].phase, Phase::AfterCommit);
        assert!(after[0].reason.contains("not run by a dry run"));
    }

    #[test]
    fn force_lets_every_change_through_allow_only_its_classes() {
        let opts = |force: bool, allow: &[AllowClass]| Options {
            mode: Mode::Migrate,
            force,
            allow: allow.iter().collect(),
            dry_run: false,
            rollback: false,
        };
        let drop = opts(false, &[AllowClass::DropColumn]);
        assert!(drop.lets_through(Some(AllowClass::DropColumn)));
        assert!(!drop.lets_through(Some(AllowClass::ModifyColumnType)));
        assert!(
            !drop.lets_through(None),
            "a change no class covers needs force"
        );
        let all = opts(false, AllowClass::ALL);
        assert!(AllowClass::ALL.iter().all(|c| all.lets_through(Some(*c))));
        assert!(!all.lets_through(None));
        let forced = opts(true, &[]);
        assert!(forced.lets_through(None) && forced.lets_through(Some(AllowClass::DropTable)));
        assert!(!opts(false, &[]).lets_through(Some(AllowClass::SetNotNull)));
        assert_eq!(Allowed::NONE, [].iter().collect());
    }

    #[test]
    fn only_an_older_version_than_the_deployed_one_is_a_rollback() {
        assert!(is_rollback(Some(3), 2));
        assert!(!is_rollback(Some(3), 3));
        assert!(!is_rollback(Some(3), 4));
        assert!(!is_rollback(None, 1), "a database of no recorded version");
        let o = Options::migrate(false, &[], true).rolling_back(true);
        assert!(o.rollback && o.dry_run && !o.force);
        assert!(!Options::migrate(true, &[], false).rollback);
    }

    #[test]
    fn a_step_without_sql_is_not_listed() {
        let step =
            Step::new(Phase::Functions, "f", "forget").done(Done::ForgetFunction("f()".into()));
        assert_eq!(step.plan_step(), None);
    }
}
