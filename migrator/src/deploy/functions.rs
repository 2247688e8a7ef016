//! `functions/`: each routine is tracked by its signature (PostgreSQL's own
//! `regprocedure` text) and a checksum over its normalized text. The plan
//! ([`plan`], pure) sorts the declared routines into unchanged and changed,
//! and the tracked ones no longer declared into those to drop (they still
//! exist) and those to forget (someone dropped them by hand). Applying it:
//! changed routines are created with `CREATE OR REPLACE` (DROP + CREATE when
//! PostgreSQL refuses that: return type or parameter names changed), with
//! `check_function_bodies = off` so routines may call each other in any file
//! order. Routines created by migrations are never tracked, so never dropped.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::MigratorError;
use crate::exec::Run;
use crate::schema::{Parsed, RoutineItem};
use crate::sql::function_file::or_replace;
use crate::step::{wrapper_note, At, Counter, Done, Phase, Sql, Step};

/// The declared routines sorted against the tracked ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sorted {
    /// Declared routines whose tracked, existing twin has the same checksum.
    pub unchanged: usize,
    /// Indices (into the declared routines) of those to create or replace.
    pub changed: Vec<usize>,
    /// Tracked signatures still declared (unchanged).
    pub keep: BTreeSet<String>,
    /// Tracked, no longer declared (or declared differently), and existing:
    /// drop them, unless a changed routine replaces one in place.
    pub drop: Vec<String>,
    /// Tracked, not kept, and gone from the database: forget them.
    pub forget: Vec<String>,
}

impl Sorted {
    /// Nothing to create, replace or drop (only tracking rows to forget).
    pub fn is_quiet(&self) -> bool {
        self.changed.is_empty() && self.drop.is_empty()
    }
}

/// `tracked`: signature → checksum; `live`: the tracked signatures that
/// exist in the database.
pub fn sort(
    declared: &[RoutineItem],
    tracked: &BTreeMap<String, String>,
    live: &HashSet<String>,
) -> Sorted {
    let by_checksum: BTreeMap<&str, &str> = tracked
        .iter()
        .filter(|(s, _)| live.contains(*s))
        .map(|(s, c)| (c.as_str(), s.as_str()))
        .collect();
    let mut p = Sorted::default();
    for (i, d) in declared.iter().enumerate() {
        match by_checksum.get(d.checksum.as_str()) {
            Some(sig) => {
                p.keep.insert((*sig).to_owned());
                p.unchanged += 1;
            }
            None => p.changed.push(i),
        }
    }
    for sig in tracked.keys().filter(|s| !p.keep.contains(*s)) {
        if live.contains(sig) {
            p.drop.push(sig.clone());
        } else {
            p.forget.push(sig.clone());
        }
    }
    p
}

/// The order to create the changed routines in: those whose bodies
/// PostgreSQL checks only later (`check_function_bodies = off`) first, in
/// file order; then the `BEGIN ATOMIC` ones, which PostgreSQL checks at
/// creation, each after the declared routines its body names (read at
/// upload: `RoutineItem::mentions`). A cycle keeps file order.
pub fn creation_order(declared: &[RoutineItem], changed: &[usize]) -> Vec<usize> {
    let bare = |d: &RoutineItem| d.name.rsplit('.').next().unwrap_or("").to_owned();
    let mut out: Vec<usize> = changed
        .iter()
        .copied()
        .filter(|&i| !declared[i].atomic)
        .collect();
    let mut atomic: Vec<usize> = changed
        .iter()
        .copied()
        .filter(|&i| declared[i].atomic)
        .collect();
    // what each atomic routine names among the other atomic ones
    let needs: BTreeMap<usize, BTreeSet<usize>> = atomic
        .iter()
        .map(|&i| {
            let deps = atomic
                .iter()
                .copied()
                .filter(|&j| j != i && declared[i].mentions.contains(&bare(&declared[j])))
                .collect();
            (i, deps)
        })
        .collect();
    while !atomic.is_empty() {
        let ready = atomic
            .iter()
            .position(|i| needs[i].iter().all(|d| !atomic.contains(d)))
            .unwrap_or(0);
        out.push(atomic.remove(ready));
    }
    out
}

/// What the step reads of the database.
#[derive(Debug, Default)]
pub struct Seen {
    pub sorted: Sorted,
    /// Per changed routine (index into the declared ones): the signature
    /// it already has in the database (a body change keeps it, and is
    /// replaced in place, not dropped).
    pub current: BTreeMap<usize, String>,
    /// Changed routines PostgreSQL refuses to replace in place (return
    /// type or parameter names changed, SQLSTATE 42P13): DROP + CREATE.
    pub needs_drop: BTreeSet<usize>,
    /// The transaction's `search_path`, restored after the body checks.
    pub search_path: String,
}

/// Read the tracked routines, which of them still exist, and for each
/// changed one its current signature and — asked of PostgreSQL by trying
/// the statement in a savepoint that is rolled back — whether it can be
/// replaced in place.
pub async fn observe(run: &Run<'_>, schema: &Parsed) -> Result<Seen, MigratorError> {
    // Without a functions/ folder the archive says nothing about functions:
    // they stay as they are (like tables without tables/).
    if !schema.functions_folder {
        return Ok(Seen::default());
    }
    let declared = &schema.model.routines;
    let tracked: BTreeMap<String, String> = run
        .pairs("SELECT signature, checksum FROM _stonescriptdb_gateway_functions")
        .await?;
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
    let sorted = sort(declared, &tracked, &live);
    let mut seen = Seen {
        sorted,
        ..Seen::default()
    };
    if seen.sorted.is_quiet() {
        return Ok(seen);
    }
    // (a type in the signature that does not exist yet: the routine is new)
    for &i in &seen.sorted.changed {
        let rows = run
            .try_read("SELECT to_regprocedure($1)::text", &[&declared[i].lookup])
            .await?;
        if let Some(sig) = rows
            .as_ref()
            .and_then(|r| r.first())
            .and_then(|r| r.get::<_, Option<String>>(0))
        {
            seen.current.insert(i, sig);
        }
    }
    seen.search_path = run
        .internal(
            "SELECT current_setting('search_path'), set_config('check_function_bodies', 'off', true)",
            &[],
        )
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_else(|| "public".into());
    for &i in seen.current.keys() {
        let d = &declared[i];
        let text = or_replace(&schema.functions[d.file].statements[d.stmt].text);
        if let Some(e) = run.trial(&text).await? {
            if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_FUNCTION_DEFINITION) {
                seen.needs_drop.insert(i);
            }
        }
    }
    run.internal(
        "SELECT set_config('check_function_bodies', 'on', true)",
        &[],
    )
    .await?;
    Ok(seen)
}

/// The steps of `functions/`: forget what is gone, drop what is no longer
/// declared (unless a changed routine replaces it in place), create or
/// replace the changed routines in [`creation_order`] (DROP + CREATE where
/// PostgreSQL refuses a replacement), re-run the other statements of the
/// changed files, then check the bodies ([`body_checks`]).
pub fn plan(schema: &Parsed, seen: &Seen) -> Vec<Step> {
    let declared = &schema.model.routines;
    let sorted = &seen.sorted;
    let mut steps = vec![
        Step::new(Phase::Functions, "functions/", "unchanged").done(Done::Add(
            Counter::FunctionsUnchanged,
            sorted.unchanged as u64,
        )),
    ];
    steps.extend(sorted.forget.iter().map(|sig| {
        Step::new(
            Phase::Functions,
            sig,
            "dropped by hand: its tracking row is forgotten",
        )
        .done(Done::ForgetFunction(sig.clone()))
    }));
    if sorted.is_quiet() {
        return steps;
    }
    // Bodies are validated when called, not when created: functions may call
    // each other in any file order (as pg_dump restores them).
    steps.push(
        Step::new(
            Phase::Functions,
            "check_function_bodies",
            "routines may call each other in any file order; their bodies are checked once all exist",
        )
        .sql(Sql::new(
            "SET LOCAL check_function_bodies = off",
            At::default(),
            "turning off check_function_bodies failed",
        )),
    );
    // Drop what is no longer declared first, so a signature change is DROP + CREATE.
    let replaced: BTreeSet<&String> = seen.current.values().collect();
    for sig in sorted.drop.iter().filter(|s| !replaced.contains(s)) {
        steps.push(
            Step::new(Phase::Functions, sig, "no longer in functions/")
                .sql(Sql::new(
                    format!("DROP ROUTINE IF EXISTS {sig}"),
                    At::default(),
                    format!("dropping function {sig} (no longer in functions/) failed"),
                ))
                .done(Done::ForgetFunction(sig.clone()))
                .done(Done::Count(Counter::FunctionsDropped))
                .done(Done::Changelog {
                    kind: "function",
                    object: sig.clone(),
                    action: "dropped".into(),
                    checksum: None,
                }),
        );
    }
    for i in creation_order(declared, &sorted.changed) {
        let d = &declared[i];
        let file = &schema.functions[d.file];
        let stmt = &file.statements[d.stmt];
        let at = At::statement(&file.path, d.stmt, stmt.line);
        let mut step = Step::new(Phase::Functions, &d.lookup, "new or changed");
        if seen.needs_drop.contains(&i) {
            step.reason = "changed so that PostgreSQL cannot replace it in place (return type or parameter names): dropped and created again".into();
            step = step.sql(Sql::new(
                format!("DROP ROUTINE {}", d.lookup),
                at.clone(),
                format!("replacing {} failed", d.lookup),
            ));
        }
        steps.push(
            step.sql(Sql::new(
                or_replace(&stmt.text),
                at,
                "creating a function failed",
            ))
            .done(Done::TrackFunction {
                lookup: d.lookup.clone(),
                name: d.name.clone(),
                file: file.path.clone(),
                checksum: d.checksum.clone(),
                existed: seen.current.contains_key(&i),
            }),
        );
    }
    // Non-routine statements of changed files (COMMENT ON, GRANT, a trigger
    // re-created in place, ...).
    let changed_files: BTreeSet<usize> = sorted.changed.iter().map(|&i| declared[i].file).collect();
    for &fi in &changed_files {
        let file = &schema.functions[fi];
        let others: Vec<Sql> = schema
            .model
            .function_other
            .iter()
            .filter(|(f, _)| *f == fi)
            .map(|&(_, si)| {
                let stmt = &file.statements[si];
                Sql::new(
                    or_replace(&stmt.text),
                    At::statement(&file.path, si, stmt.line),
                    "function file statement failed",
                )
            })
            .collect();
        let mut step = Step::new(Phase::Functions, &file.path, "function file statement");
        step.sql = others;
        if let Some((a, b)) = file.wrapper {
            step = step.done(Done::Note(wrapper_note(&file.path, a, b)));
        }
        steps.push(step);
    }
    steps.extend(body_checks(schema, &sorted.changed, &seen.search_path));
    steps
}

/// Every routine this deployment created or replaced, once all of them
/// exist, created again with `check_function_bodies` on under `/call`'s
/// `search_path`: SQL bodies are analysed whole, PL/pgSQL ones for syntax.
/// A failure names the file, line and PostgreSQL's message; nothing is
/// deployed. `BEGIN ATOMIC` bodies were checked at creation; a file with
/// `-- stonescriptdb: no-body-check` is not checked.
fn body_checks(schema: &Parsed, changed: &[usize], search_path: &str) -> Option<Step> {
    let declared = &schema.model.routines;
    let checked: Vec<&RoutineItem> = changed
        .iter()
        .map(|&i| &declared[i])
        .filter(|d| d.body_check && !d.atomic)
        .collect();
    if checked.is_empty() {
        return None;
    }
    let setting = |sql: String| Sql::new(sql, At::default(), "setting up the body check failed");
    let mut step = Step::new(
        Phase::Functions,
        "function bodies",
        "checked once every routine exists, under /call's search_path",
    )
    .sql(setting(
        "SELECT set_config('check_function_bodies', 'on', true), set_config('search_path', 'public', true)".into(),
    ));
    for d in checked {
        let file = &schema.functions[d.file];
        let stmt = &file.statements[d.stmt];
        step = step.sql(Sql::new(
            or_replace(&stmt.text),
            At::statement(&file.path, d.stmt, stmt.line),
            format!(
                "the body of {} does not check (add the line \"-- stonescriptdb: no-body-check\" to its file if it needs objects created at run time)",
                d.name
            ),
        ));
    }
    Some(step.sql(setting(format!(
        "SELECT set_config('check_function_bodies', 'off', true), set_config('search_path', {}, true)",
        stonescriptdb_shared::names::quote_literal(search_path)
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse_routine;

    fn routine(text: &str, checksum: &str) -> RoutineItem {
        let routine = parse_routine(text).unwrap();
        RoutineItem {
            file: 0,
            stmt: 0,
            body_check: true,
            atomic: routine.atomic,
            lookup: format!("public.{}({})", routine.name, routine.arg_types.join(", ")),
            name: format!("public.{}", routine.name),
            checksum: checksum.into(),
            mentions: if routine.atomic {
                crate::sql::definition::identifiers(text)
            } else {
                Default::default()
            },
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const F: &str = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a'";

    /// A `functions/` folder of one file holding `texts` (one routine each,
    /// then a COMMENT ON the first).
    fn folder(texts: &[&str]) -> Parsed {
        let mut lines = texts.to_vec();
        lines.push("COMMENT ON FUNCTION f(int) IS 'f'");
        let routines = texts
            .iter()
            .enumerate()
            .map(|(i, t)| RoutineItem {
                stmt: i,
                ..routine(t, &format!("new{i}"))
            })
            .collect();
        Parsed {
            functions: vec![crate::sql::SqlFile::of_lines("functions/f.sql", &lines)],
            functions_folder: true,
            model: crate::schema::Model {
                routines,
                function_other: vec![(0, texts.len())],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn sql_of(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .flat_map(|s| s.sql.iter().map(|q| q.text.clone()))
            .collect()
    }

    #[test]
    fn the_plan_replaces_in_place_or_drops_and_creates_as_postgresql_answered() {
        let schema = folder(&[F]);
        let changed = |needs_drop: bool| Seen {
            sorted: sort(
                &schema.model.routines,
                &map(&[("f(integer)", "old")]),
                &set(&["f(integer)"]),
            ),
            current: [(0, "f(integer)".to_string())].into(),
            needs_drop: if needs_drop {
                [0].into()
            } else {
                BTreeSet::new()
            },
            search_path: "\"$user\", public".into(),
        };
        let replace = "CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a'";
        // a body change: replaced in place, the old signature not dropped
        let steps = plan(&schema, &changed(false));
        assert_eq!(
            sql_of(&steps),
            [
                "SET LOCAL check_function_bodies = off",
                replace,
                "COMMENT ON FUNCTION f(int) IS 'f'",
                "SELECT set_config('check_function_bodies', 'on', true), set_config('search_path', 'public', true)",
                replace,
                "SELECT set_config('check_function_bodies', 'off', true), set_config('search_path', '\"$user\", public', true)",
            ]
        );
        let tracked = steps.iter().flat_map(|s| &s.done).find_map(|d| match d {
            Done::TrackFunction { existed, .. } => Some(*existed),
            _ => None,
        });
        assert_eq!(tracked, Some(true), "an update, not a creation");
        // PostgreSQL refused the replacement (42P13): DROP + CREATE, one step
        let steps = plan(&schema, &changed(true));
        let step = steps.iter().find(|s| s.object == "public.f(int)").unwrap();
        let sql: Vec<&str> = step.sql.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(sql, ["DROP ROUTINE public.f(int)", replace]);
        assert_eq!(step.sql[1].at, At::statement("functions/f.sql", 0, 1));
    }

    #[test]
    fn a_routine_no_longer_declared_is_dropped_before_the_new_ones_are_created() {
        let schema = folder(&[F]);
        let seen = Seen {
            sorted: sort(
                &schema.model.routines,
                &map(&[("gone(text)", "c9")]),
                &set(&["gone(text)"]),
            ),
            ..Seen::default()
        };
        let sql = sql_of(&plan(&schema, &seen));
        assert_eq!(sql[1], "DROP ROUTINE IF EXISTS gone(text)");
        assert!(sql[2].starts_with("CREATE OR REPLACE FUNCTION f"));
        // nothing changed: no statement at all, only the count
        let quiet = Seen {
            sorted: sort(
                &schema.model.routines,
                &map(&[("f(integer)", "new0")]),
                &set(&["f(integer)"]),
            ),
            ..Seen::default()
        };
        let steps = plan(&schema, &quiet);
        assert!(sql_of(&steps).is_empty());
        assert_eq!(steps[0].done, [Done::Add(Counter::FunctionsUnchanged, 1)]);
    }

    #[test]
    fn an_unchanged_function_costs_nothing() {
        let p = sort(
            &[routine(F, "c1")],
            &map(&[("f(integer)", "c1")]),
            &set(&["f(integer)"]),
        );
        assert_eq!(p.unchanged, 1);
        assert!(p.is_quiet() && p.forget.is_empty());
        assert_eq!(p.keep, ["f(integer)".to_string()].into());
    }

    #[test]
    fn a_new_function_is_created() {
        let p = sort(&[routine(F, "c1")], &map(&[]), &set(&[]));
        assert_eq!((p.changed, p.drop, p.forget), (vec![0], vec![], vec![]));
    }

    #[test]
    fn a_body_change_replaces_the_tracked_signature() {
        // the old signature is a drop candidate; applying skips the drop when
        // the changed routine still has that signature (replaced in place)
        let p = sort(
            &[routine(F, "c2")],
            &map(&[("f(integer)", "c1")]),
            &set(&["f(integer)"]),
        );
        assert_eq!(p.changed, vec![0]);
        assert_eq!(p.drop, vec!["f(integer)".to_string()]);
    }

    #[test]
    fn a_signature_change_drops_the_old_one() {
        let g = "CREATE FUNCTION f(a bigint) RETURNS int LANGUAGE sql AS 'SELECT 1'";
        let p = sort(
            &[routine(g, "c3")],
            &map(&[("f(integer)", "c1")]),
            &set(&["f(integer)"]),
        );
        assert_eq!(
            (p.changed, p.drop),
            (vec![0], vec!["f(integer)".to_string()])
        );
    }

    #[test]
    fn a_function_no_longer_declared_is_dropped() {
        let p = sort(&[], &map(&[("old(text)", "c9")]), &set(&["old(text)"]));
        assert_eq!(p.drop, vec!["old(text)".to_string()]);
        assert!(p.changed.is_empty() && !p.is_quiet());
    }

    #[test]
    fn a_function_dropped_by_hand_is_recreated_and_its_row_forgotten() {
        let p = sort(
            &[routine(F, "c1")],
            &map(&[("f(integer)", "c1")]),
            &set(&[]),
        );
        assert_eq!(p.changed, vec![0]);
        assert_eq!(p.forget, vec!["f(integer)".to_string()]);
        assert!(p.drop.is_empty());
    }

    #[test]
    fn functions_a_migration_created_are_not_the_gateways() {
        // never tracked, so never in the plan at all
        let p = sort(
            &[routine(F, "c1")],
            &map(&[("f(integer)", "c1")]),
            &set(&["f(integer)"]),
        );
        assert!(p.drop.is_empty() && p.forget.is_empty());
    }

    #[test]
    fn atomic_bodies_come_last_and_after_what_they_call() {
        let texts = [
            "CREATE FUNCTION total() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT half() + half(); END",
            "CREATE FUNCTION plain() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN total(); END $$",
            "CREATE FUNCTION half() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
        ];
        let declared: Vec<RoutineItem> = texts.iter().map(|t| routine(t, "c")).collect();
        assert!(declared[0].atomic && !declared[1].atomic && declared[2].atomic);
        assert_eq!(creation_order(&declared, &[0, 1, 2]), [1, 2, 0]);
        // only what changed is ordered
        assert_eq!(creation_order(&declared, &[0]), [0]);
    }
}
