//! `tables/` (docs/SCHEMA.md): the declared model, diffed against the
//! database before the migrations (dataloss or incompatible changes refuse
//! the deployment unless `force`), missing tables created in REFERENCES
//! order, and after the migrations the rest reconciled and the declared
//! model recorded. The diff itself is `crate::tables::diff`, pure.

use std::collections::{BTreeSet, HashMap};

use stonescriptdb_shared::wire::{PlanStep, SchemaValidation};

use super::align::align_names;
use super::create_table::TableItem;
use super::model::{Change, Class, Model, QName, Step as TableStep, Table};
use super::reader::Declared;
use super::{diff, introspect, recorded};
use crate::error::{MigratorError, SchemaRefusal};
use crate::exec::Run;
use crate::sql::definition::identifiers;
use crate::sql::effects::Effect;
use crate::sql::SqlFile;
use crate::step::{At, Counter, Done, Options, Phase, Sql, Step};

/// What the tables phase is handed of the upload: the `tables/` files,
/// each file's CREATE TABLE as read, the declared model, and the folder's
/// checksum.
#[derive(Clone, Copy)]
pub struct Folder<'a> {
    pub files: &'a [SqlFile],
    pub items: &'a [TableItem],
    pub declared: &'a Declared,
    pub checksum: &'a str,
}

/// A `tables/` file and the table it creates.
struct TableFile<'a> {
    file: &'a SqlFile,
    key: (String, String),
    create_index: usize,
    references: Vec<(String, String)>,
    /// Per statement: a pg_dump-style `ALTER TABLE … ADD … FOREIGN KEY`.
    adds_fk: &'a [bool],
    /// Its CREATE TABLE without foreign keys, and those as alters.
    split: Option<&'a (String, Vec<String>)>,
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

/// The steps that create the declared tables that do not exist yet from
/// their `tables/` files (every statement of the file), referenced tables
/// first; REFERENCES cycles are broken by adding those foreign keys
/// afterwards, as pg_dump-style `ALTER TABLE … ADD … FOREIGN KEY`
/// statements are. A table a pending migration reshapes is created from the
/// declared model as that migration expects it (its foreign keys, indexes
/// and the rest follow after the migrations).
fn create_missing(
    folder: Folder<'_>,
    missing: &BTreeSet<QName>,
    reshaped: &[Table],
) -> Result<Vec<Step>, MigratorError> {
    let created = |key: (String, String), checksum: Option<String>| {
        let object = format!("{}.{}", key.0, key.1);
        [
            Done::Count(Counter::TablesCreated),
            Done::Created(key),
            Done::Changelog {
                kind: "table",
                object,
                action: "created".into(),
                checksum,
            },
        ]
    };
    let mut steps = Vec::new();
    for t in reshaped {
        let object = t.name.to_string();
        let mut step = Step::new(
            Phase::Tables,
            &object,
            "new table, as the pending migrations that change its columns expect it",
        )
        .class(Class::Safe)
        .sql(Sql::new(
            introspect::render_table(t),
            At::default(),
            format!("creating table {object} failed"),
        ));
        step.done
            .extend(created((t.name.schema.clone(), t.name.name.clone()), None));
        steps.push(step);
    }
    let reshaped: BTreeSet<&QName> = reshaped.iter().map(|t| &t.name).collect();
    let to_create: Vec<TableFile<'_>> = folder
        .items
        .iter()
        .filter(|t| {
            let q = QName::new(&t.key.0, &t.key.1);
            missing.contains(&q) && !reshaped.contains(&q)
        })
        .map(|t| TableFile {
            file: &folder.files[t.file],
            key: t.key.clone(),
            create_index: t.create,
            references: t.references.clone(),
            adds_fk: &t.adds_fk,
            split: t.split.as_ref(),
        })
        .collect();
    let (order, cyclic) = creation_order(&to_create);
    let mut later = Step::new(
        Phase::Tables,
        "foreign keys",
        "foreign keys of the new tables, once every table they reference exists",
    );
    for &i in order.iter().chain(cyclic.iter()) {
        let t = &to_create[i];
        let path = &t.file.path;
        let mut step = Step::new(Phase::Tables, path, "creating a table");
        for (si, stmt) in t.file.statements.iter().enumerate() {
            if let (true, Some((create, alters))) =
                (si == t.create_index && cyclic.contains(&i), t.split)
            {
                // in a REFERENCES cycle: created without its foreign keys
                // (split once at upload), which follow once every table exists
                let at = At::statement(path, si, stmt.line);
                step = step.sql(Sql::new(
                    create.clone(),
                    at.clone(),
                    "creating a table failed",
                ));
                for a in alters {
                    later = later.sql(Sql::new(
                        a.clone(),
                        at.clone(),
                        "adding a foreign key failed",
                    ));
                }
            } else if t.adds_fk.get(si).copied().unwrap_or(false) {
                // pg_dump style `ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY`:
                // the referenced table may be created later in this loop.
                later = later.sql(Sql::of_file(path, si, stmt, "adding a foreign key"));
            } else {
                step = step.sql(Sql::of_file(path, si, stmt, "creating a table"));
            }
        }
        step.done
            .extend(created(t.key.clone(), Some(t.file.checksum.clone())));
        steps.push(step);
    }
    steps.push(later);
    Ok(steps)
}

/// Step `n` of a `tables/` plan of `total` steps as a deployment step,
/// naming `file` when it fails; counted and recorded in the changelog.
fn table_step(step: &TableStep, (n, total): (usize, usize), file: Option<&str>) -> Step {
    let mut out = Step::new(Phase::Tables, &step.object, &step.reason)
        .class(step.class)
        .allow(step.allow_class());
    for (i, text) in step.sql.iter().enumerate() {
        out = out.sql(Sql::new(
            text.clone(),
            At {
                file: file.map(str::to_owned),
                statement: None,
            },
            format!(
                "making the database match tables/ failed at \"{}\" (step {} of {total}, statement {}: {text})",
                step.reason,
                n + 1,
                i + 1
            ),
        ));
    }
    out.done(Done::Count(Counter::TablesAltered))
        .done(Done::Changelog {
            kind: "table",
            object: step.object.clone(),
            action: step.class.as_str().into(),
            checksum: None,
        })
}

/// What `tables/` does before the pending migrations (docs/SCHEMA.md, step
/// 2), given what they make themselves ([`Effect`]s): pure.
#[derive(Debug, Default)]
pub struct Before {
    /// The plan as the refusal before the migrations judges it: what a
    /// pending migration creates, adds or renames itself is listed as its
    /// (safe) change or not at all (an old column it renames is not a
    /// drop), a new NOT NULL column without a default on an existing table
    /// counted as added nullable.
    pub checked: Vec<TableStep>,
    /// New sequences to create now, before the missing tables (those that
    /// come with a table created from its file are left to that file).
    pub sequences: Vec<TableStep>,
    /// New columns of existing tables to add now, after the missing tables
    /// (a NOT NULL one without a default added nullable).
    pub columns: Vec<TableStep>,
    /// Missing tables to create now.
    pub missing: BTreeSet<QName>,
    /// Columns added nullable now (`table.column`, as step objects name
    /// them), tightened after the migrations.
    pub tighten: BTreeSet<String>,
    /// Missing tables a pending migration changes the columns of: created
    /// from the declared model as the migration expects them (without the
    /// columns it adds, renamed ones under their old name).
    pub reshaped: Vec<Table>,
}

/// Plan what runs before the pending migrations. `plan` is the diff from
/// `observed` to `desired`; `files` says which file declares each table and
/// sequence.
pub fn before_migrations(
    plan: &[TableStep],
    desired: &Model,
    observed: &Model,
    effects: &[Effect],
    files: &Declared,
) -> Before {
    let q = |(s, n): &(String, String)| QName::new(s, n);
    let mut made_tables: BTreeSet<QName> = BTreeSet::new();
    let mut made_sequences: BTreeSet<QName> = BTreeSet::new();
    let mut made_columns: BTreeSet<String> = BTreeSet::new();
    let mut renamed_away: BTreeSet<String> = BTreeSet::new();
    let mut renamed_tables: BTreeSet<QName> = BTreeSet::new();
    let mut column_changes: Vec<(QName, Option<String>, String)> = Vec::new();
    for e in effects {
        match e {
            Effect::CreatesTable(t) => {
                made_tables.insert(q(t));
            }
            Effect::CreatesSequence(s) => {
                made_sequences.insert(q(s));
            }
            Effect::AddsColumn(t, c) => {
                made_columns.insert(format!("{}.{c}", q(t)));
                column_changes.push((q(t), None, c.clone()));
            }
            Effect::RenamesColumn(t, from, to) => {
                made_columns.insert(format!("{}.{to}", q(t)));
                renamed_away.insert(format!("{}.{from}", q(t)));
                column_changes.push((q(t), Some(from.clone()), to.clone()));
            }
            Effect::RenamesTable(from, to) => {
                made_tables.insert(q(to));
                renamed_tables.insert(q(from));
            }
        }
    }
    let mut out = Before::default();
    // a column a pending migration adds, declared NOT NULL: the migration
    // adds and fills it, its NOT NULL follows after the migrations
    for (t, from, c) in &column_changes {
        let declared_not_null = desired
            .tables
            .get(t)
            .and_then(|table| table.column(c))
            .is_some_and(|col| col.not_null);
        if from.is_none() && declared_not_null {
            out.tighten.insert(format!("{t}.{c}"));
        }
    }
    for (name, table) in &desired.tables {
        if observed.tables.contains_key(name) || made_tables.contains(name) {
            continue;
        }
        out.missing.insert(name.clone());
        let changes: Vec<&(QName, Option<String>, String)> = column_changes
            .iter()
            .filter(|(t, _, _)| t == name)
            .collect();
        if changes.is_empty() {
            continue;
        }
        let mut t = table.clone();
        let mut gone: BTreeSet<String> = BTreeSet::new();
        t.columns
            .retain_mut(|c| match changes.iter().find(|(_, _, to)| *to == c.name) {
                Some((_, Some(from), _)) => {
                    gone.insert(c.name.clone());
                    c.name = from.clone();
                    true
                }
                Some((_, None, _)) => {
                    gone.insert(c.name.clone());
                    false
                }
                None => true,
            });
        // constraints naming a column the migration makes come after it
        let names_gone = |definition: &str| !identifiers(definition).is_disjoint(&gone);
        t.constraints.retain(|k| !names_gone(&k.definition));
        t.indexes.clear();
        out.reshaped.push(t);
    }
    // a table created from its file brings its own sequences: those its
    // file declares, and a serial column's
    let from_file =
        |t: &QName| out.missing.contains(t) && !out.reshaped.iter().any(|r| &r.name == t);
    let files_of_missing: BTreeSet<&String> = files
        .files
        .iter()
        .filter(|(q, _)| from_file(q))
        .map(|(_, f)| f)
        .collect();
    let comes_with_its_table = |object: &str| {
        let Some((q, seq)) = desired
            .sequences
            .iter()
            .find(|(q, _)| q.to_string() == object)
        else {
            return false;
        };
        seq.owned_by.as_ref().is_some_and(|(t, _)| from_file(t))
            || files
                .sequence_files
                .get(q)
                .is_some_and(|f| files_of_missing.contains(f))
    };
    let named = |set: &BTreeSet<QName>, object: &str| set.iter().any(|t| t.to_string() == object);
    for step in plan {
        let made_by_migration = match step.change {
            Change::AddColumn => made_columns.contains(&step.object),
            Change::DropColumn => renamed_away.contains(&step.object),
            Change::DropTable => named(&renamed_tables, &step.object),
            Change::CreateTable => named(&made_tables, &step.object),
            Change::CreateSequence => named(&made_sequences, &step.object),
            _ => false,
        };
        if made_by_migration {
            // still a change tables/ asks for, which the migration makes;
            // a drop it makes by renaming loses nothing
            if step.class == Class::Safe {
                let mut step = step.clone();
                step.reason.push_str(" (a pending migration makes it)");
                out.checked.push(step);
            }
            continue;
        }
        let mut step = step.clone();
        if step.change == Change::AddColumn {
            // a column of an existing table: added now, nullable if it
            // has nothing to fill the existing rows with
            let column = desired.tables.iter().find_map(|(t, table)| {
                let c = table
                    .columns
                    .iter()
                    .find(|c| format!("{t}.{}", c.name) == step.object)?;
                let had = observed.tables.get(t)?;
                had.column(&c.name).is_none().then_some((t, c))
            });
            if let Some((t, c)) = column {
                if step.class != Class::Safe && c.not_null {
                    let nullable = super::model::Column {
                        not_null: false,
                        ..c.clone()
                    };
                    step.class = Class::Safe;
                    step.reason = format!(
                        "{}: new NOT NULL column without a default: added nullable before the migrations, NOT NULL set after them (a migration fills it)",
                        step.object
                    );
                    step.sql = vec![format!(
                        "ALTER TABLE {} ADD COLUMN {}",
                        t.sql(),
                        crate::tables::diff::column_def(&nullable)
                    )];
                    out.tighten.insert(step.object.clone());
                }
                out.columns.push(step.clone());
            }
        } else if step.change == Change::CreateSequence && !comes_with_its_table(&step.object) {
            out.sequences.push(step.clone());
        }
        out.checked.push(step);
    }
    out
}

/// What `tables/` declares, as PostgreSQL spells it, and what it declared at
/// the last successful deployment.
pub struct TableState {
    desired: Model,
    previous: Model,
    /// The recorded model already equals `desired` (same `tables/`).
    recorded: bool,
    folder_checksum: String,
    /// Columns added nullable before the migrations, to tighten after them.
    tighten: BTreeSet<String>,
}

/// The `tables/` file of a step's object (`table`, `table.part` or a
/// sequence, as `QName` displays them).
fn file_of<'a>(declared: &'a Declared, object: &str) -> Option<&'a str> {
    declared
        .files
        .iter()
        .chain(declared.sequence_files.iter())
        .find(|(q, _)| {
            let q = q.to_string();
            object == q || object.starts_with(&format!("{q}."))
        })
        .map(|(_, p)| p.as_str())
}

/// Read what steps 4 and 5 need: the database as the migrations left it.
pub async fn observe_after(run: &Run<'_>, state: &TableState) -> Result<Model, MigratorError> {
    observe_model(run, &state.desired, &state.previous).await
}

/// Read the tables and sequences of `desired` and `previous` from the
/// database, as seen from `search_path = public`.
async fn observe_model(
    run: &Run<'_>,
    desired: &Model,
    previous: &Model,
) -> Result<Model, MigratorError> {
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
    introspect::observe(run.tx(), desired, &tables, &sequences)
        .await
        .map_err(|e| {
            run.fail(
                &At::default(),
                "reading the tables from the catalog failed",
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

/// The plan's changes by class, each dataloss or incompatible one naming
/// what lets it through: `(allow: drop_column)`, or `(force only)`.
fn validation(plan: &[TableStep]) -> SchemaValidation {
    let mut v = SchemaValidation::default();
    for s in plan {
        let list = match s.class {
            Class::Safe => {
                v.safe_changes.push(s.reason.clone());
                continue;
            }
            Class::Dataloss => &mut v.dataloss_changes,
            Class::Incompatible => &mut v.incompatible_changes,
        };
        list.push(match s.allow_class() {
            Some(class) => format!("{} (allow: {class})", s.reason),
            None => format!("{} (force only)", s.reason),
        });
    }
    v
}

/// Whether `opts` refuses a step of the plan: a dataloss or incompatible
/// change neither `force` nor its `allow` class lets through.
fn blocked(step: &TableStep, opts: &Options) -> bool {
    step.class != Class::Safe && !opts.lets_through(step.allow_class())
}

fn plan_steps(plan: &[TableStep]) -> Vec<PlanStep> {
    plan.iter()
        .map(|s| PlanStep {
            phase: Phase::Tables,
            class: Some(s.class),
            object: s.object.clone(),
            reason: s.reason.clone(),
            sql: s.sql.clone(),
            allow: s.allow_class(),
        })
        .collect()
}

/// What the step reads before the migrations: the declared model recorded
/// by earlier deployments, the declared model as PostgreSQL spells it (the
/// recorded one when `tables/` did not change), the database's tables and
/// the migrations already applied.
pub struct SeenBefore {
    previous: Model,
    recorded: bool,
    desired: Model,
    observed: Model,
}

/// Read what steps 1 and 2 need (None without a `tables/` folder: nothing
/// is managed declaratively).
pub async fn observe_before(
    run: &Run<'_>,
    folder: Folder<'_>,
) -> Result<SeenBefore, MigratorError> {
    let declared = folder.declared;
    let rows = run
        .internal(
            "SELECT name, declared::text, folder_checksum FROM _stonescriptdb_gateway_tables",
            &[],
        )
        .await?;
    let (previous, sums) = recorded::declared_model(&rows);
    let folder_checksum = folder.checksum;
    let same_names = previous.tables.keys().eq(declared.model.tables.keys())
        && previous
            .sequences
            .keys()
            .eq(declared.model.sequences.keys());
    let recorded = same_names
        && !sums.is_empty()
        && sums.iter().all(|s| s.as_deref() == Some(folder_checksum));
    let desired = if recorded {
        previous.clone()
    } else {
        introspect::desired(run.tx(), &declared.model)
            .await
            .map_err(|e| {
                let file = declared
                    .files
                    .iter()
                    .find(|(q, _)| q.to_string() == e.object)
                    .map(|(_, f)| f.clone());
                run.fail(
                    &At {
                        file: file.or(Some("tables/".into())),
                        statement: None,
                    },
                    &format!("the declaration of {} is not valid", e.object),
                    Some(&e.error),
                )
            })?
    };
    let observed = observe_model(run, &desired, &previous).await?;
    Ok(SeenBefore {
        previous,
        recorded,
        desired,
        observed,
    })
}

/// Steps 1 and 2 of a deployment's `tables/` handling (docs/SCHEMA.md):
/// diff `tables/` against the database before the migrations (dataloss or
/// incompatible changes refuse the deployment unless forced or their class
/// allowed), then create
/// the new sequences, the declared tables that do not exist yet and the
/// new columns of existing ones. Returns the steps, the validation the
/// report carries, and what the steps after the migrations need.
/// `effects`: what the pending migrations make themselves.
pub fn plan_before(
    database: &str,
    folder: Folder<'_>,
    seen: SeenBefore,
    effects: &[Effect],
    opts: Options,
) -> Result<(Vec<Step>, SchemaValidation, TableState), MigratorError> {
    let declared = folder.declared;
    let (desired, plan) = table_plan(&seen.desired, &seen.observed, &seen.previous);
    let before = before_migrations(&plan, &desired, &seen.observed, effects, declared);
    let validation = validation(&before.checked);
    if before.checked.iter().any(|s| blocked(s, &opts)) {
        return Err(MigratorError::SchemaValidation(Box::new(SchemaRefusal {
            database: database.to_owned(),
            validation,
            plan: plan_steps(&before.checked),
            after_migrations: false,
        })));
    }
    // new sequences (those in the file of a table created from its file
    // come with it), the missing tables, then new columns of existing ones
    let total = before.sequences.len() + before.columns.len();
    let mut steps: Vec<Step> = before
        .sequences
        .iter()
        .enumerate()
        .map(|(n, step)| table_step(step, (n, total), file_of(declared, &step.object)))
        .collect();
    steps.extend(create_missing(folder, &before.missing, &before.reshaped)?);
    steps.extend(before.columns.iter().enumerate().map(|(n, step)| {
        let n = n + before.sequences.len();
        table_step(step, (n, total), file_of(declared, &step.object))
    }));
    let state = TableState {
        desired,
        previous: seen.previous,
        recorded: seen.recorded,
        folder_checksum: folder.checksum.to_owned(),
        tighten: before.tighten,
    };
    Ok((steps, validation, state))
}

/// Steps 4 and 5 of a deployment's `tables/` handling (docs/SCHEMA.md),
/// from the database as the migrations left it (`observed`): apply what
/// still differs from `tables/` (safe steps always, the rest only when
/// forced or their class allowed) and record the declared model.
pub fn plan_after(
    database: &str,
    folder: Folder<'_>,
    state: &TableState,
    observed: &Model,
    opts: Options,
) -> Result<(Vec<Step>, Model), MigratorError> {
    let (desired, mut plan) = table_plan(&state.desired, observed, &state.previous);
    // columns added nullable before the migrations get their NOT NULL now;
    // PostgreSQL refuses it if a migration left a row without a value
    for step in plan.iter_mut() {
        if step.change == Change::SetNotNull && state.tighten.contains(&step.object) {
            step.class = Class::Safe;
            step.reason = format!(
                "{}: SET NOT NULL (added nullable before the migrations; they must have filled it)",
                step.object
            );
        }
    }
    if plan.iter().any(|s| blocked(s, &opts)) {
        let mut v = validation(&plan);
        v.safe_changes.clear();
        return Err(MigratorError::SchemaValidation(Box::new(SchemaRefusal {
            database: database.to_owned(),
            validation: v,
            plan: plan_steps(&plan),
            after_migrations: true,
        })));
    }
    let mut steps: Vec<Step> = plan
        .iter()
        .enumerate()
        .map(|(n, step)| {
            let file = file_of(folder.declared, &step.object);
            table_step(step, (n, plan.len()), file)
        })
        .collect();
    if !(state.recorded && plan.is_empty() && desired == state.desired) {
        steps.push(record(folder, state, &desired));
    }
    Ok((steps, desired))
}

/// After reconciling: what still differs from `tables/` (a warning, not a
/// failure: verification reports what is missing).
pub async fn leftover(
    run: &Run<'_>,
    state: &TableState,
    desired: &Model,
) -> Result<Vec<String>, MigratorError> {
    let after = observe_model(run, desired, &state.previous).await?;
    let (_, left) = table_plan(desired, &after, &state.previous);
    Ok(left.into_iter().map(|s| s.reason).collect())
}

/// The step that records the declared model (one row per table and per
/// sequence), dropping rows of objects no longer declared.
fn record(folder: Folder<'_>, state: &TableState, desired: &Model) -> Step {
    let files = Some(&folder.declared.files);
    let sums: HashMap<&str, &str> = folder
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.checksum.as_str()))
        .collect();
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for (q, t) in &desired.tables {
        let key = format!("{}.{}", q.schema, q.name);
        let file = files.and_then(|f| f.get(q)).cloned().unwrap_or_default();
        let sum = sums.get(file.as_str()).copied().unwrap_or("").to_owned();
        let json = serde_json::to_string(t).unwrap_or_default();
        rows.push((key, file, sum, json));
    }
    for (q, s) in &desired.sequences {
        let key = format!("{}{}.{}", recorded::SEQUENCE_ROW, q.schema, q.name);
        let json = serde_json::to_string(s).unwrap_or_default();
        rows.push((key, String::new(), String::new(), json));
    }
    Step::new(Phase::Tables, "tables/", "the declared model recorded").done(Done::TrackTables {
        rows,
        folder_checksum: state.folder_checksum.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stonescriptdb_shared::wire::AllowClass;

    fn tf(name: &str, refs: &[&str]) -> (String, Vec<(String, String)>) {
        (
            name.into(),
            refs.iter()
                .map(|r| ("public".to_string(), r.to_string()))
                .collect(),
        )
    }

    /// An upload of `tables/` files, read as the gateway reads one.
    fn upload(files: &[(&str, &str)]) -> crate::schema::Parsed {
        let schema = crate::archive::Schema {
            tables: files
                .iter()
                .map(|(n, c)| crate::archive::SchemaFile {
                    name: n.to_string(),
                    content: c.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        crate::schema::parse(&schema).unwrap()
    }

    #[test]
    fn tables_in_a_cycle_are_created_without_their_foreign_keys_which_follow() {
        let parsed = upload(&[
            (
                "a.sql",
                "CREATE TABLE a (id int PRIMARY KEY, b_id int REFERENCES b (id))",
            ),
            (
                "b.sql",
                "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id))",
            ),
            (
                "c.sql",
                "CREATE TABLE c (id int PRIMARY KEY, a_id int REFERENCES a (id))",
            ),
        ]);
        let folder = Folder {
            files: &parsed.tables,
            items: &parsed.model.tables,
            declared: parsed.declared.as_ref().unwrap(),
            checksum: "x",
        };
        let missing = ["a", "b", "c"].iter().map(|n| QName::public(n)).collect();
        // (split at upload; that no SQL is read again per database is
        // asserted end to end, where the process's count is not shared
        // with other tests: tests/tests/v2.rs)
        let steps = create_missing(folder, &missing, &[]).unwrap();
        let sql: Vec<Vec<&str>> = steps
            .iter()
            .map(|s| s.sql.iter().map(|q| q.text.as_str()).collect())
            .collect();
        assert_eq!(
            sql,
            [
                vec!["CREATE TABLE a (id int PRIMARY KEY, b_id int)"],
                vec!["CREATE TABLE b (id int PRIMARY KEY, a_id int)"],
                // (waits on the cycle, so it is created the same way)
                vec!["CREATE TABLE c (id int PRIMARY KEY, a_id int)"],
                vec![
                    "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b (id)",
                    "ALTER TABLE b ADD FOREIGN KEY (a_id) REFERENCES a (id)",
                    "ALTER TABLE c ADD FOREIGN KEY (a_id) REFERENCES a (id)",
                ],
            ]
        );
        assert!(steps[0].done.contains(&Done::Count(Counter::TablesCreated)));
        assert_eq!(steps[3].sql[0].at, At::statement("tables/a.sql", 0, 1));
    }

    #[test]
    fn creation_order_follows_references_and_finds_cycles() {
        let file = SqlFile {
            path: "tables/x.sql".into(),
            statements: vec![],
            checksum: String::new(),
            wrapper: None,
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
                adds_fk: &[],
                split: None,
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

    fn read(text: &str) -> Declared {
        let file = SqlFile {
            path: "tables/t.sql".into(),
            statements: crate::sql::split_statements(text).unwrap(),
            checksum: String::new(),
            wrapper: None,
        };
        crate::tables::reader::read_tables(&[file]).unwrap()
    }

    fn declared(text: &str) -> Model {
        read(text).model
    }

    #[test]
    fn an_unchanged_table_plans_nothing() {
        let m = declared("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL);");
        let (_, plan) = table_plan(&m, &m, &m);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(validation(&plan), SchemaValidation::default());
    }

    #[test]
    fn changes_are_classified_into_the_validation_and_the_plan() {
        let observed = declared("CREATE TABLE t (id int PRIMARY KEY, old text, n int);");
        let desired = declared("CREATE TABLE t (id int PRIMARY KEY, n int, added text);");
        let (_, plan) = table_plan(&desired, &observed, &observed);
        let v = validation(&plan);
        assert!(v.safe_changes.iter().any(|c| c.contains("added")), "{v:?}");
        assert!(
            v.dataloss_changes.iter().any(|c| c.contains("old")),
            "{v:?}"
        );
        let steps = plan_steps(&plan);
        assert_eq!(steps.len(), plan.len());
        assert!(steps
            .iter()
            .all(|s| s.phase == Phase::Tables && !s.sql.is_empty()));
        let classes: Vec<_> = steps.iter().filter_map(|s| s.class).collect();
        assert!(classes.contains(&Class::Safe) && classes.contains(&Class::Dataloss));
        // a type change PostgreSQL cannot cast implicitly is incompatible
        let desired = declared("CREATE TABLE t (id int PRIMARY KEY, old int[], n int);");
        let (_, plan) = table_plan(&desired, &observed, &observed);
        assert!(
            !validation(&plan).incompatible_changes.is_empty(),
            "{plan:?}"
        );
    }

    fn options(force: bool, allow: &[AllowClass]) -> Options {
        Options::migrate(force, allow, false)
    }

    /// A database whose `t` loses `old`, narrows `n`, tightens `k`, drops
    /// its identity on `i`, and whose table `gone` is no longer declared.
    fn every_class() -> (Model, Model) {
        let observed = declared(
            "CREATE TABLE t (id int PRIMARY KEY, old text, n bigint, k text, i int GENERATED ALWAYS AS IDENTITY);
             CREATE TABLE gone (id int);",
        );
        let desired =
            declared("CREATE TABLE t (id int PRIMARY KEY, n int, k text NOT NULL, i int);");
        (observed, desired)
    }

    #[test]
    fn each_table_change_names_the_allow_class_that_lets_it_through() {
        let (observed, desired) = every_class();
        let (_, plan) = table_plan(&desired, &observed, &observed);
        let class_of = |object: &str| {
            let step = plan
                .iter()
                .find(|s| s.object == object && s.class != Class::Safe);
            step.map(|s| s.allow_class())
        };
        assert_eq!(
            class_of("t.old"),
            Some(Some(AllowClass::DropColumn)),
            "{plan:?}"
        );
        assert_eq!(
            class_of("gone"),
            Some(Some(AllowClass::DropTable)),
            "{plan:?}"
        );
        assert_eq!(
            class_of("t.k"),
            Some(Some(AllowClass::SetNotNull)),
            "{plan:?}"
        );
        let n = plan
            .iter()
            .find(|s| s.object == "t.n" && s.class != Class::Safe);
        assert_eq!(
            n.map(|s| s.allow_class()),
            Some(Some(AllowClass::ModifyColumnType))
        );
        // identity removal: no class covers it, only force
        assert_eq!(class_of("t.i"), Some(None), "{plan:?}");
        // a safe step names no class
        assert!(plan
            .iter()
            .filter(|s| s.class == Class::Safe)
            .all(|s| s.allow_class().is_none()));
        // the validation and the plan say it too
        let v = validation(&plan);
        assert!(
            v.dataloss_changes
                .iter()
                .any(|c| c.starts_with("t.old") && c.ends_with("(allow: drop_column)")),
            "{v:?}"
        );
        assert!(
            v.dataloss_changes
                .iter()
                .any(|c| c.starts_with("t.i") && c.ends_with("(force only)")),
            "{v:?}"
        );
        assert!(
            v.safe_changes.iter().all(|c| !c.contains("(allow:")),
            "{v:?}"
        );
        let steps = plan_steps(&plan);
        assert!(steps
            .iter()
            .any(|s| s.object == "t.old" && s.allow == Some(AllowClass::DropColumn)));
        // a new NOT NULL column without a default on an existing table
        let desired = declared("CREATE TABLE t (id int PRIMARY KEY, old text, n bigint, k text, i int GENERATED ALWAYS AS IDENTITY, req text NOT NULL);");
        let (_, plan) = table_plan(&desired, &observed, &observed);
        let req = plan.iter().find(|s| s.object == "t.req").unwrap();
        assert_eq!(req.allow_class(), Some(AllowClass::AddNotNullColumn));
    }

    #[test]
    fn a_step_is_refused_unless_forced_or_its_class_allowed() {
        let (observed, desired) = every_class();
        let (_, plan) = table_plan(&desired, &observed, &observed);
        let refused = |opts: Options| -> Vec<&str> {
            plan.iter()
                .filter(|s| blocked(s, &opts))
                .map(|s| s.object.as_str())
                .collect()
        };
        assert_eq!(refused(options(true, &[])), Vec::<&str>::new());
        let none = refused(options(false, &[]));
        for o in ["t.old", "t.n", "t.k", "t.i", "gone"] {
            assert!(none.contains(&o), "{o} {none:?}");
        }
        let drop = refused(options(false, &[AllowClass::DropColumn]));
        assert!(
            !drop.contains(&"t.old") && drop.contains(&"t.n"),
            "{drop:?}"
        );
        let all = refused(options(false, AllowClass::ALL));
        assert_eq!(all, ["t.i"], "identity needs force whatever is allowed");
        assert!(plan
            .iter()
            .filter(|s| s.class == Class::Safe)
            .all(|s| !blocked(s, &options(false, &[]))));
    }

    #[test]
    fn after_the_migrations_allow_lets_its_classes_through_and_refuses_the_rest() {
        let observed = declared("CREATE TABLE t (id int PRIMARY KEY, old text, n bigint);");
        let desired = declared("CREATE TABLE t (id int PRIMARY KEY, n int);");
        let declared_files = read("CREATE TABLE t (id int PRIMARY KEY, n int);");
        let folder = Folder {
            files: &[],
            items: &[],
            declared: &declared_files,
            checksum: "sum",
        };
        let state = TableState {
            desired: desired.clone(),
            previous: observed.clone(),
            recorded: false,
            folder_checksum: "sum".into(),
            tighten: BTreeSet::new(),
        };
        let opts = options(false, &[AllowClass::DropColumn]);
        let Err(MigratorError::SchemaValidation(refusal)) =
            plan_after("db", folder, &state, &observed, opts)
        else {
            panic!("the type change is not allowed");
        };
        let v = &refusal.validation;
        assert!(
            v.dataloss_changes
                .iter()
                .any(|c| c.starts_with("t.n") && c.ends_with("(allow: modify_column_type)")),
            "{v:?}"
        );
        assert!(
            v.dataloss_changes
                .iter()
                .any(|c| c.ends_with("(allow: drop_column)")),
            "{v:?}"
        );
        assert!(refusal
            .plan
            .iter()
            .any(|s| s.allow == Some(AllowClass::ModifyColumnType)));
        let opts = options(
            false,
            &[AllowClass::DropColumn, AllowClass::ModifyColumnType],
        );
        let (steps, _) = plan_after("db", folder, &state, &observed, opts).unwrap();
        let allows: Vec<_> = steps.iter().filter_map(|s| s.allow).collect();
        assert!(
            allows.contains(&AllowClass::DropColumn)
                && allows.contains(&AllowClass::ModifyColumnType),
            "{steps:?}"
        );
        let listed: Vec<_> = steps
            .iter()
            .filter_map(|s| s.plan_step())
            .filter_map(|p| p.allow)
            .collect();
        assert!(listed.contains(&AllowClass::DropColumn), "{listed:?}");
    }

    #[test]
    fn a_constraint_the_database_names_otherwise_is_not_renamed() {
        // the file leaves the primary key unnamed; the database calls it t_pk
        let observed = declared("CREATE TABLE t (id int, CONSTRAINT t_pk PRIMARY KEY (id));");
        let desired = declared("CREATE TABLE t (id int PRIMARY KEY);");
        let (aligned, plan) = table_plan(&desired, &observed, &observed);
        assert!(plan.is_empty(), "{plan:?}");
        assert!(aligned
            .tables
            .values()
            .next()
            .unwrap()
            .constraints
            .iter()
            .any(|c| c.name == "t_pk"));
    }

    fn before(desired: &str, observed: &str, migrations: &[&str]) -> Before {
        // (an empty database: a table nobody declares)
        let observed = if observed.is_empty() {
            "CREATE TABLE zz_unrelated (x int);"
        } else {
            observed
        };
        let files = read(desired);
        let observed = declared(observed);
        let (desired, plan) = table_plan(&files.model, &observed, &observed);
        let effects: Vec<Effect> = migrations
            .iter()
            .flat_map(|m| crate::sql::effects::effects(m))
            .collect();
        before_migrations(&plan, &desired, &observed, &effects, &files)
    }

    fn sql(steps: &[TableStep]) -> Vec<String> {
        steps.iter().flat_map(|s| s.sql.clone()).collect()
    }

    #[test]
    fn a_declared_column_is_added_before_the_migration_that_fills_it() {
        let b = before(
            "CREATE TABLE orgs (id int PRIMARY KEY, slug text NOT NULL);",
            "CREATE TABLE orgs (id int PRIMARY KEY);",
            &["UPDATE orgs SET slug = 'org-' || id"],
        );
        // added nullable now, tightened after the migrations: not data loss
        assert_eq!(
            sql(&b.columns),
            ["ALTER TABLE public.orgs ADD COLUMN slug text"]
        );
        assert!(
            b.checked.iter().all(|s| s.class == Class::Safe),
            "{:?}",
            b.checked
        );
        assert_eq!(b.tighten, ["orgs.slug".to_string()].into());
        // a nullable or defaulted column is added as declared
        let b = before(
            "CREATE TABLE orgs (id int PRIMARY KEY, note text, n int DEFAULT 0 NOT NULL);",
            "CREATE TABLE orgs (id int PRIMARY KEY);",
            &[],
        );
        assert_eq!(
            sql(&b.columns),
            [
                "ALTER TABLE public.orgs ADD COLUMN note text",
                "ALTER TABLE public.orgs ADD COLUMN n integer DEFAULT 0 NOT NULL"
            ]
        );
        assert!(b.tighten.is_empty());
    }

    #[test]
    fn what_a_pending_migration_makes_itself_is_left_to_it() {
        // it adds the column itself
        let b = before(
            "CREATE TABLE orgs (id int PRIMARY KEY, slug text NOT NULL);",
            "CREATE TABLE orgs (id int PRIMARY KEY);",
            &["ALTER TABLE orgs ADD COLUMN slug text; UPDATE orgs SET slug = 'x'"],
        );
        assert!(b.columns.is_empty(), "{b:?}");
        assert!(
            b.checked
                .iter()
                .all(|s| s.class == Class::Safe
                    && s.reason.ends_with("(a pending migration makes it)")),
            "{b:?}"
        );
        assert_eq!(b.tighten, ["orgs.slug".to_string()].into());
        // it renames the old column: no drop, no add
        let b = before(
            "CREATE TABLE users (id int PRIMARY KEY, full_name text);",
            "CREATE TABLE users (id int PRIMARY KEY, name text);",
            &["ALTER TABLE users RENAME COLUMN name TO full_name"],
        );
        assert!(b.columns.is_empty(), "{b:?}");
        assert!(b.checked.iter().all(|s| s.class == Class::Safe), "{b:?}");
        // without the migration the same change is a drop (refused) and an add
        let b = before(
            "CREATE TABLE users (id int PRIMARY KEY, full_name text);",
            "CREATE TABLE users (id int PRIMARY KEY, name text);",
            &[],
        );
        assert!(b.checked.iter().any(|s| s.class == Class::Dataloss));
        // a table or a sequence it creates
        let b = before(
            "CREATE TABLE a (id int); CREATE SEQUENCE s;",
            "",
            &["CREATE TABLE a (id int)", "CREATE SEQUENCE s"],
        );
        assert!(
            b.missing.is_empty() && b.columns.is_empty() && b.sequences.is_empty(),
            "{b:?}"
        );
        let b = before("CREATE TABLE a (id int); CREATE SEQUENCE s;", "", &[]);
        assert_eq!(b.missing, [QName::new("public", "a")].into());
        // the sequence is declared in the missing table's file: it comes with it
        assert!(b.sequences.is_empty(), "{b:?}");
        // beside a table that exists, it is created before the migrations
        let b = before(
            "CREATE TABLE a (id int); CREATE SEQUENCE s;",
            "CREATE TABLE a (id int);",
            &[],
        );
        assert_eq!(b.sequences.len(), 1, "{b:?}");
        assert!(
            sql(&b.sequences)[0].starts_with("CREATE SEQUENCE public.s "),
            "{b:?}"
        );
    }

    #[test]
    fn a_new_table_a_migration_reshapes_is_created_as_the_migration_expects_it() {
        let b = before(
            "CREATE TABLE orgs (id int PRIMARY KEY, slug text UNIQUE, full_name text);",
            "",
            &[
                "ALTER TABLE orgs ADD COLUMN slug text",
                "ALTER TABLE orgs RENAME COLUMN name TO full_name",
            ],
        );
        assert_eq!(b.reshaped.len(), 1);
        let t = &b.reshaped[0];
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cols, ["id", "name"]);
        // the unique key on slug comes after the migration; the primary key stays
        let defs: Vec<&str> = t
            .constraints
            .iter()
            .map(|c| c.definition.as_str())
            .collect();
        assert_eq!(defs, ["PRIMARY KEY (id)"]);
    }
}
