//! `types/`: enums, composite types and domains, tracked by name and
//! checksum. A type that does not exist is created; an enum gains the
//! values it lacks (`ALTER TYPE … ADD VALUE … AFTER`), never loses one
//! (refused unless `force`); a composite type or domain that changed since
//! it was deployed is refused unless `force`: PostgreSQL cannot replace it in
//! place, a migration alters it.
//!
//! In a rollback (`Options::rollback`) neither is refused: enum values the
//! older version lacks, a composite type or domain changed since, and
//! tracked types the older version does not declare stay as they are, keep
//! their tracking rows (which describe the database) and are listed as kept.

use std::collections::HashMap;

use stonescriptdb_shared::names::{quote_ident, quote_literal};
use stonescriptdb_shared::wire::{Kept, KeptKind};

use crate::error::MigratorError;
use crate::exec::Run;
use crate::schema::{Parsed, TypeItem};
use crate::sql::TypeDef;
use crate::step::{At, Counter, Done, Options, Phase, Refusal, Sql, Step};

/// What happens to one declared type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tracked with this checksum: nothing to do.
    Unchanged,
    /// It does not exist: run its statement.
    Create,
    /// An enum that exists: add these values, each after the given one.
    AddValues(Vec<(String, Option<String>)>),
    /// It exists as declared, or `force` accepts the change: record it.
    Record,
    /// Refused; the reason.
    Refuse(String),
    /// A rollback: add the values `add` (each after the given one), leave
    /// what `kept` lists, and the tracking row, as they are.
    Keep {
        add: Vec<(String, Option<String>)>,
        kept: Vec<Kept>,
    },
}

/// What the database has of a type: none, or its enum labels (empty for
/// other kinds).
pub type Observed = HashMap<String, Vec<String>>;

/// What each declared type needs, from its tracking row (`tracked`: key →
/// checksum) and what the database has of it.
pub fn decide(
    declared: &[TypeItem],
    tracked: &HashMap<String, String>,
    observed: &Observed,
    opts: Options,
) -> Vec<Action> {
    let force = opts.force;
    declared
        .iter()
        .map(|t| {
            if tracked.get(&t.key) == Some(&t.checksum) {
                return Action::Unchanged;
            }
            let Some(have) = observed.get(&t.key) else {
                return Action::Create;
            };
            match &t.def {
                TypeDef::Enum { labels, .. } => {
                    let removed: Vec<&String> = have.iter().filter(|l| !labels.contains(l)).collect();
                    let add: Vec<(String, Option<String>)> = labels
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| !have.contains(l))
                        .map(|(pos, l)| (l.clone(), pos.checked_sub(1).map(|p| labels[p].clone())))
                        .collect();
                    if !removed.is_empty() && opts.rollback {
                        let kept = removed
                            .iter()
                            .map(|l| Kept {
                                kind: KeptKind::EnumValue,
                                name: format!("{} {}", t.key, quote_literal(l)),
                                why: "added by a later version; PostgreSQL cannot remove an enum value".into(),
                            })
                            .collect();
                        return Action::Keep { add, kept };
                    }
                    if !removed.is_empty() && !force {
                        return Action::Refuse(format!(
                            "enum {} would lose value(s) {removed:?}; PostgreSQL cannot remove enum values: write a migration that replaces the type",
                            t.key
                        ));
                    }
                    if add.is_empty() {
                        Action::Record
                    } else {
                        Action::AddValues(add)
                    }
                }
                _ if tracked.contains_key(&t.key) && opts.rollback => Action::Keep {
                    add: Vec::new(),
                    kept: vec![Kept {
                        kind: KeptKind::Type,
                        name: t.key.clone(),
                        why: format!(
                            "{} type changed by a later version; PostgreSQL cannot replace it in place",
                            t.kind
                        ),
                    }],
                },
                _ if tracked.contains_key(&t.key) && !force => Action::Refuse(format!(
                    "{} type {} changed since it was deployed; PostgreSQL cannot replace it in place: alter it in a migration (ALTER TYPE / ALTER DOMAIN) and deploy with force=true",
                    t.kind, t.key
                )),
                _ => Action::Record,
            }
        })
        .collect()
}

/// What the step reads: the tracking rows, and what the database has of
/// each type whose checksum differs from its row.
#[derive(Debug, Default)]
pub struct Seen {
    pub tracked: HashMap<String, String>,
    pub observed: Observed,
}

pub async fn observe(run: &Run<'_>, schema: &Parsed, opts: Options) -> Result<Seen, MigratorError> {
    let declared = &schema.model.types;
    // (a rollback lists the tracked types the older version lacks)
    if declared.is_empty() && !opts.rollback {
        return Ok(Seen::default());
    }
    let tracked: HashMap<String, String> = run
        .pairs("SELECT name, checksum FROM _stonescriptdb_gateway_types")
        .await?;
    let (schemas, names): (Vec<&str>, Vec<&str>) = declared
        .iter()
        .filter(|t| tracked.get(&t.key) != Some(&t.checksum))
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .unzip();
    let observed: Observed = if schemas.is_empty() {
        Observed::new()
    } else {
        run.internal(
            "SELECT n.nspname || '.' || t.typname,
                    ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE (n.nspname, t.typname) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            &[&schemas, &names],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    Ok(Seen { tracked, observed })
}

/// The steps of `types/`: the type's own statement for a new one, `ALTER
/// TYPE … ADD VALUE` for the values an enum lacks, and its tracking row.
pub fn plan(schema: &Parsed, seen: &Seen, opts: Options) -> Result<Vec<Step>, Refusal> {
    let declared = &schema.model.types;
    let mut steps = Vec::new();
    for (t, action) in declared
        .iter()
        .zip(decide(declared, &seen.tracked, &seen.observed, opts))
    {
        let file = &schema.types[t.file];
        let stmt = &file.statements[t.stmt];
        let at = At::statement(&file.path, t.stmt, stmt.line);
        let track = Done::TrackType {
            key: t.key.clone(),
            kind: t.kind,
            checksum: t.checksum.clone(),
        };
        let changed = |action: &str| Done::Changelog {
            kind: "type",
            object: t.key.clone(),
            action: action.into(),
            checksum: Some(t.checksum.clone()),
        };
        let step = match action {
            Action::Unchanged => continue,
            Action::Refuse(message) => return Err(Refusal { at, message }),
            Action::Create => Step::new(Phase::Types, &file.path, "creating a type")
                .sql(Sql::of_file(&file.path, t.stmt, stmt, "creating a type"))
                .done(Done::Count(Counter::TypesDeployed))
                .done(changed("created")),
            Action::AddValues(values) => add_values(t, &at, values)
                .done(Done::Count(Counter::TypesDeployed))
                .done(changed("values_added")),
            Action::Record => Step::new(Phase::Types, &t.key, "recorded as declared"),
            Action::Keep { add, kept } => {
                let mut step = if add.is_empty() {
                    Step::new(Phase::Types, &t.key, "kept as a later version left it")
                } else {
                    add_values(t, &at, add)
                        .done(Done::Count(Counter::TypesDeployed))
                        .done(changed("values_added"))
                };
                step.reason = "rollback: kept as a later version left it".into();
                step.done.extend(kept.into_iter().map(Done::Kept));
                steps.push(step);
                continue;
            }
        };
        steps.push(step.done(track));
    }
    if opts.rollback {
        let mut undeclared: Vec<&String> = seen
            .tracked
            .keys()
            .filter(|k| !declared.iter().any(|t| &t.key == *k))
            .collect();
        undeclared.sort();
        if !undeclared.is_empty() {
            let mut step = Step::new(Phase::Types, "types/", "rollback: not declared, kept");
            step.done = undeclared
                .into_iter()
                .map(|k| {
                    Done::Kept(Kept {
                        kind: KeptKind::UndeclaredType,
                        name: k.clone(),
                        why: "not declared by this version; types are never dropped".into(),
                    })
                })
                .collect();
            steps.push(step);
        }
    }
    Ok(steps)
}

/// A step adding `values` to the enum `t`, each after the given one.
fn add_values(t: &TypeItem, at: &At, values: Vec<(String, Option<String>)>) -> Step {
    let mut step = Step::new(Phase::Types, &t.key, "enum gains a value");
    for (label, after) in values {
        let mut alter = format!(
            "ALTER TYPE {}.{} ADD VALUE IF NOT EXISTS {}",
            quote_ident(&t.schema),
            quote_ident(&t.name),
            quote_literal(&label)
        );
        if let Some(prev) = after {
            alter.push_str(&format!(" AFTER {}", quote_literal(&prev)));
        }
        let failure = format!("adding value {label:?} to enum {} failed", t.key);
        step = step.sql(Sql::new(alter, at.clone(), failure));
    }
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse_type;
    use stonescriptdb_shared::catalog::TypeKind;

    fn item(text: &str, checksum: &str) -> TypeItem {
        let def = parse_type(text).unwrap();
        let (name, kind) = match &def {
            TypeDef::Enum { name, .. } => (name.clone(), TypeKind::Enum),
            TypeDef::Composite { name, .. } => (name.clone(), TypeKind::Composite),
            TypeDef::Domain { name, .. } => (name.clone(), TypeKind::Domain),
            TypeDef::Other { name, .. } => (name.clone(), TypeKind::Other),
        };
        TypeItem {
            file: 0,
            stmt: 0,
            key: format!("public.{name}"),
            schema: "public".into(),
            name,
            kind,
            checksum: checksum.into(),
            def,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn seen(key: &str, labels: &[&str]) -> Observed {
        [(
            key.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
        )]
        .into()
    }

    fn parsed(text: &str, checksum: &str) -> Parsed {
        let file = crate::sql::SqlFile {
            path: "types/mood.sql".into(),
            statements: crate::sql::split_statements(text).unwrap(),
            checksum: checksum.into(),
            wrapper: None,
        };
        Parsed {
            types: vec![file],
            model: crate::schema::Model {
                types: vec![item(text, checksum)],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn opts(force: bool) -> Options {
        Options {
            mode: crate::step::Mode::Migrate,
            force,
            allow: crate::step::Allowed::NONE,
            dry_run: false,
            rollback: false,
        }
    }

    #[test]
    fn the_steps_carry_the_alter_type_text_and_the_tracking_row() {
        let schema = parsed("CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad')", "c2");
        let seen = Seen {
            tracked: map(&[("public.mood", "c1")]),
            observed: seen("public.mood", &["happy", "sad"]),
        };
        let steps = plan(&schema, &seen, opts(false)).unwrap();
        assert_eq!(steps.len(), 1);
        let sql: Vec<&str> = steps[0].sql.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            sql,
            [r#"ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'ok' AFTER 'happy'"#]
        );
        assert!(steps[0].done.contains(&Done::TrackType {
            key: "public.mood".into(),
            kind: TypeKind::Enum,
            checksum: "c2".into()
        }));
        // a new type runs its own statement, naming its file and line
        let steps = plan(&schema, &Seen::default(), opts(false)).unwrap();
        assert_eq!(
            steps[0].sql[0].text,
            "CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad')"
        );
        assert_eq!(steps[0].sql[0].at, At::statement("types/mood.sql", 0, 1));
        // unchanged: no step at all
        let same = Seen {
            tracked: map(&[("public.mood", "c2")]),
            ..Seen::default()
        };
        assert!(plan(&schema, &same, opts(false)).unwrap().is_empty());
    }

    #[test]
    fn a_refusal_names_the_file_and_statement() {
        let schema = parsed("CREATE TYPE mood AS ENUM ('happy')", "c2");
        let seen = Seen {
            observed: seen("public.mood", &["happy", "sad"]),
            ..Seen::default()
        };
        let r = plan(&schema, &seen, opts(false)).unwrap_err();
        assert_eq!(r.at, At::statement("types/mood.sql", 0, 1));
        assert!(r.message.contains("lose value"));
        assert!(plan(&schema, &seen, opts(true)).is_ok());
    }

    const MOOD: &str = "CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad')";

    #[test]
    fn a_tracked_unchanged_type_costs_nothing_and_a_new_one_is_created() {
        let t = [item(MOOD, "c1")];
        assert_eq!(
            decide(
                &t,
                &map(&[("public.mood", "c1")]),
                &Observed::new(),
                opts(false)
            ),
            [Action::Unchanged]
        );
        assert_eq!(
            decide(&t, &map(&[]), &Observed::new(), opts(false)),
            [Action::Create]
        );
    }

    #[test]
    fn an_enum_gains_values_in_their_place() {
        let t = [item(MOOD, "c2")];
        let a = decide(
            &t,
            &map(&[("public.mood", "c1")]),
            &seen("public.mood", &["happy", "sad"]),
            opts(false),
        );
        assert_eq!(
            a,
            [Action::AddValues(vec![("ok".into(), Some("happy".into()))])]
        );
        let first = [item("CREATE TYPE mood AS ENUM ('new', 'happy')", "c3")];
        let a = decide(
            &first,
            &map(&[]),
            &seen("public.mood", &["happy"]),
            opts(false),
        );
        assert_eq!(a, [Action::AddValues(vec![("new".into(), None)])]);
    }

    #[test]
    fn an_enum_never_loses_a_value_unless_forced() {
        let t = [item("CREATE TYPE mood AS ENUM ('happy')", "c2")];
        let have = seen("public.mood", &["happy", "sad"]);
        assert!(
            matches!(&decide(&t, &map(&[]), &have, opts(false))[0], Action::Refuse(m) if m.contains("\"sad\""))
        );
        assert_eq!(decide(&t, &map(&[]), &have, opts(true)), [Action::Record]);
    }

    #[test]
    fn a_changed_composite_is_refused_unless_forced_an_untracked_existing_one_recorded() {
        let t = [item(
            "CREATE TYPE address AS (street text, city text)",
            "c2",
        )];
        let have = seen("public.address", &[]);
        let tracked = map(&[("public.address", "c1")]);
        assert!(
            matches!(&decide(&t, &tracked, &have, opts(false))[0], Action::Refuse(m) if m.contains("composite type public.address"))
        );
        assert_eq!(decide(&t, &tracked, &have, opts(true)), [Action::Record]);
        // made by a migration before tables/types declared it: recorded as is
        assert_eq!(decide(&t, &map(&[]), &have, opts(false)), [Action::Record]);
    }

    #[test]
    fn a_rollback_keeps_enum_values_and_changed_types_as_they_are_and_lists_them() {
        let rollback = Options {
            rollback: true,
            ..opts(false)
        };
        // the older version lacks 'ok' (added since) and has 'new' the database lacks
        let schema = parsed("CREATE TYPE mood AS ENUM ('new', 'happy', 'sad')", "c1");
        let was = Seen {
            tracked: map(&[("public.mood", "c2"), ("public.later", "c9")]),
            observed: seen("public.mood", &["happy", "ok", "sad"]),
        };
        let steps = plan(&schema, &was, rollback).unwrap();
        let sql: Vec<&str> = steps
            .iter()
            .flat_map(|s| &s.sql)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(
            sql,
            [r#"ALTER TYPE "public"."mood" ADD VALUE IF NOT EXISTS 'new'"#]
        );
        let kept: Vec<(KeptKind, &str)> = steps
            .iter()
            .flat_map(|s| &s.done)
            .filter_map(|d| match d {
                Done::Kept(k) => Some((k.kind, k.name.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            kept,
            [
                (KeptKind::EnumValue, "public.mood 'ok'"),
                (KeptKind::UndeclaredType, "public.later")
            ]
        );
        assert!(
            !steps
                .iter()
                .flat_map(|s| &s.done)
                .any(|d| matches!(d, Done::TrackType { .. })),
            "the tracking row keeps describing the database"
        );
        // a changed composite type is kept, not refused
        let t = [item("CREATE TYPE address AS (street text)", "c1")];
        let tracked = map(&[("public.address", "c2")]);
        let a = decide(&t, &tracked, &seen("public.address", &[]), rollback);
        assert!(
            matches!(&a[0], Action::Keep { add, kept } if add.is_empty() && kept[0].kind == KeptKind::Type),
            "{a:?}"
        );
        // the same database not rolled back: refused as ever
        assert!(plan(&schema, &was, opts(false)).is_err());
    }
}
