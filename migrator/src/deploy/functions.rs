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

use slog::info;

use super::Run;
use crate::error::MigratorError;
use crate::schema::{Parsed, RoutineItem};
use crate::sql::function_file::or_replace;

/// What the functions step will do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
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

impl Plan {
    /// Nothing to create, replace or drop (only tracking rows to forget).
    pub fn is_quiet(&self) -> bool {
        self.changed.is_empty() && self.drop.is_empty()
    }
}

/// `tracked`: signature → checksum; `live`: the tracked signatures that
/// exist in the database.
pub fn plan(
    declared: &[RoutineItem],
    tracked: &BTreeMap<String, String>,
    live: &HashSet<String>,
) -> Plan {
    let by_checksum: BTreeMap<&str, &str> = tracked
        .iter()
        .filter(|(s, _)| live.contains(*s))
        .map(|(s, c)| (c.as_str(), s.as_str()))
        .collect();
    let mut p = Plan::default();
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

async fn forget(run: &Run<'_>, sig: &str) -> Result<(), MigratorError> {
    run.internal(
        "DELETE FROM _stonescriptdb_gateway_functions WHERE signature = $1",
        &[&sig],
    )
    .await
    .map(|_| ())
}

/// The order to create the changed routines in: those whose bodies
/// PostgreSQL checks only later (`check_function_bodies = off`) first, in
/// file order; then the `BEGIN ATOMIC` ones, which PostgreSQL checks at
/// creation, each after the declared routines its body names (`texts`:
/// each declared routine's statement). A cycle keeps file order.
pub fn creation_order(declared: &[RoutineItem], changed: &[usize], texts: &[&str]) -> Vec<usize> {
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
    // what each atomic routine's text names among the other atomic ones
    let needs: BTreeMap<usize, BTreeSet<usize>> = atomic
        .iter()
        .map(|&i| {
            let words: BTreeSet<String> = crate::sql::tokens(texts[i], 1)
                .iter()
                .filter(|t| matches!(t.kind, crate::sql::TokenKind::Word))
                .map(|t| t.text.to_ascii_lowercase())
                .collect();
            let deps = atomic
                .iter()
                .copied()
                .filter(|&j| j != i && words.contains(&bare(&declared[j])))
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

pub async fn apply(run: &mut Run<'_>, schema: &Parsed) -> Result<(), MigratorError> {
    // Without a functions/ folder the archive says nothing about functions:
    // they stay as they are (like tables without tables/).
    if !schema.functions_folder {
        return Ok(());
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
    let plan = plan(declared, &tracked, &live);
    run.report.functions_unchanged += plan.unchanged as u64;
    for sig in &plan.forget {
        forget(run, sig).await?;
    }
    if plan.is_quiet() {
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
    for &i in &plan.changed {
        let d = &declared[i];
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
    for sig in plan.drop.iter().filter(|s| !current.contains(*s)) {
        let drop = format!("DROP ROUTINE IF EXISTS {sig}");
        run.note("functions", None, sig, "no longer in functions/", &drop);
        run.send(&drop, |e| {
            run.fail(
                None,
                None,
                format!("dropping function {sig} (no longer in functions/) failed"),
                Some(e),
            )
        })
        .await?;
        forget(run, sig).await?;
        run.report.functions_dropped += 1;
        run.changelog("function", sig, "dropped", None).await?;
    }
    let texts: Vec<&str> = declared
        .iter()
        .map(|d| schema.functions[d.file].statements[d.stmt].text.as_str())
        .collect();
    for i in creation_order(declared, &plan.changed, &texts) {
        create(run, schema, &declared[i], &before, &current).await?;
    }
    // Non-routine statements of changed files (COMMENT ON, GRANT, ...).
    let changed_files: BTreeSet<usize> = plan.changed.iter().map(|&i| declared[i].file).collect();
    for &fi in &changed_files {
        run.note_wrapper(&schema.functions[fi]);
    }
    for &(fi, si) in &schema.model.function_other {
        if changed_files.contains(&fi) {
            let file = &schema.functions[fi];
            // a trigger re-created in place
            let stmt = &file.statements[si];
            let text = or_replace(&stmt.text);
            let again = crate::sql::Statement {
                text,
                line: stmt.line,
            };
            run.exec(&file.path, si, &again, "function file statement")
                .await?;
        }
    }
    check_bodies(run, schema, &plan.changed).await
}

/// Every routine this deployment created or replaced, once all of them
/// exist, created again with `check_function_bodies` on under `/call`'s
/// `search_path`: SQL bodies are analysed whole, PL/pgSQL ones for syntax.
/// A failure names the file, line and PostgreSQL's message; nothing is
/// deployed. `BEGIN ATOMIC` bodies were checked at creation; a file with
/// `-- stonescriptdb: no-body-check` is not checked.
async fn check_bodies(
    run: &mut Run<'_>,
    schema: &Parsed,
    changed: &[usize],
) -> Result<(), MigratorError> {
    let declared = &schema.model.routines;
    let checked: Vec<&RoutineItem> = changed
        .iter()
        .map(|&i| &declared[i])
        .filter(|d| d.body_check && !d.atomic)
        .collect();
    if checked.is_empty() {
        return Ok(());
    }
    let path: String = run
        .internal("SELECT current_setting('search_path')", &[])
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_else(|| "public".into());
    run.internal(
        "SELECT set_config('check_function_bodies', 'on', true), set_config('search_path', 'public', true)",
        &[],
    )
    .await?;
    for d in checked {
        let file = &schema.functions[d.file];
        let stmt = &file.statements[d.stmt];
        run.send(&or_replace(&stmt.text), |e| {
            run.fail(
                Some(&file.path),
                Some((d.stmt, stmt)),
                format!(
                    "the body of {} does not check (add the line \"-- stonescriptdb: no-body-check\" to its file if it needs objects created at run time)",
                    d.name
                ),
                Some(e),
            )
        })
        .await?;
    }
    run.internal(
        "SELECT set_config('check_function_bodies', 'off', true), set_config('search_path', $1, true)",
        &[&path],
    )
    .await?;
    Ok(())
}

/// Create or replace one routine and track it.
async fn create(
    run: &mut Run<'_>,
    schema: &Parsed,
    d: &RoutineItem,
    before: &HashSet<u32>,
    current: &HashSet<String>,
) -> Result<(), MigratorError> {
    let file = &schema.functions[d.file];
    let stmt = &file.statements[d.stmt];
    let text = or_replace(&stmt.text);
    run.note("functions", None, &d.lookup, "new or changed", &text);
    let sp = run.tx.batch_execute("SAVEPOINT sdg_fn").await;
    sp.map_err(|e| run.fail(None, None, "savepoint failed".into(), Some(&e)))?;
    if let Err(e) = run.send_raw(&text).await? {
        // return type or parameter names changed: DROP + CREATE
        if e.code().map(|c| c.code()) != Some("42P13") {
            return Err(run.fail(
                Some(&file.path),
                Some((d.stmt, stmt)),
                "creating a function failed".into(),
                Some(&e),
            ));
        }
        run.tx
            .batch_execute("ROLLBACK TO SAVEPOINT sdg_fn")
            .await
            .map_err(|e| run.fail(None, None, "rollback to savepoint failed".into(), Some(&e)))?;
        let drop = format!("DROP ROUTINE {}", d.lookup);
        run.send(&drop, |e| {
            run.fail(
                Some(&file.path),
                Some((d.stmt, stmt)),
                format!("replacing {} failed", d.lookup),
                Some(e),
            )
        })
        .await?;
        run.send(&text, |e| {
            run.fail(
                Some(&file.path),
                Some((d.stmt, stmt)),
                "creating a function failed".into(),
                Some(e),
            )
        })
        .await?;
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
                Some(&file.path),
                Some((d.stmt, stmt)),
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
            Some(&file.path),
            Some((d.stmt, stmt)),
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
    run.internal(
        "INSERT INTO _stonescriptdb_gateway_functions (signature, name, file, checksum) VALUES ($1, $2, $3, $4)
         ON CONFLICT (signature) DO UPDATE SET name = excluded.name, file = excluded.file,
             checksum = excluded.checksum, deployed_at = now()",
        &[&sig, &d.name, &file.path, &d.checksum],
    )
    .await?;
    run.changelog(
        "function",
        &sig,
        if existed { "updated" } else { "created" },
        Some(&d.checksum),
    )
    .await?;
    info!(run.log, "function deployed"; "database" => run.database, "function" => &sig, "file" => &file.path);
    Ok(())
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

    #[test]
    fn an_unchanged_function_costs_nothing() {
        let p = plan(
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
        let p = plan(&[routine(F, "c1")], &map(&[]), &set(&[]));
        assert_eq!((p.changed, p.drop, p.forget), (vec![0], vec![], vec![]));
    }

    #[test]
    fn a_body_change_replaces_the_tracked_signature() {
        // the old signature is a drop candidate; applying skips the drop when
        // the changed routine still has that signature (replaced in place)
        let p = plan(
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
        let p = plan(
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
        let p = plan(&[], &map(&[("old(text)", "c9")]), &set(&["old(text)"]));
        assert_eq!(p.drop, vec!["old(text)".to_string()]);
        assert!(p.changed.is_empty() && !p.is_quiet());
    }

    #[test]
    fn a_function_dropped_by_hand_is_recreated_and_its_row_forgotten() {
        let p = plan(
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
        let p = plan(
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
        assert_eq!(creation_order(&declared, &[0, 1, 2], &texts), [1, 2, 0]);
        // only what changed is ordered
        assert_eq!(creation_order(&declared, &[0], &texts), [0]);
    }
}
