//! `types/`: enums, composite types and domains, tracked by name and
//! checksum. A type that does not exist is created; an enum gains the
//! values it lacks (`ALTER TYPE … ADD VALUE … AFTER`), never loses one
//! (refused unless `force`); a composite type or domain that changed since
//! it was deployed is refused unless `force`: PostgreSQL cannot replace it in
//! place, a migration alters it.

use std::collections::HashMap;
use stonescriptdb_shared::names::quote_literal;

use stonescriptdb_shared::names::quote_ident;

use super::{Options, Run};
use crate::error::MigratorError;
use crate::schema::{Parsed, TypeItem};
use crate::sql::TypeDef;

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
}

/// What the database has of a type: none, or its enum labels (empty for
/// other kinds).
pub type Observed = HashMap<String, Vec<String>>;

pub fn plan(
    declared: &[TypeItem],
    tracked: &HashMap<String, String>,
    observed: &Observed,
    force: bool,
) -> Vec<Action> {
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
                    if !removed.is_empty() && !force {
                        return Action::Refuse(format!(
                            "enum {} would lose value(s) {removed:?}; PostgreSQL cannot remove enum values: write a migration that replaces the type",
                            t.key
                        ));
                    }
                    let add: Vec<(String, Option<String>)> = labels
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| !have.contains(l))
                        .map(|(pos, l)| (l.clone(), pos.checked_sub(1).map(|p| labels[p].clone())))
                        .collect();
                    if add.is_empty() {
                        Action::Record
                    } else {
                        Action::AddValues(add)
                    }
                }
                _ if tracked.contains_key(&t.key) && !force => Action::Refuse(format!(
                    "{} type {} changed since it was deployed; PostgreSQL cannot replace it in place: alter it in a migration (ALTER TYPE / ALTER DOMAIN) and deploy with force=true",
                    t.kind, t.key
                )),
                _ => Action::Record,
            }
        })
        .collect()
}

pub async fn apply(run: &mut Run<'_>, schema: &Parsed, opts: Options) -> Result<(), MigratorError> {
    let declared = &schema.model.types;
    if declared.is_empty() {
        return Ok(());
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
    for (t, action) in declared
        .iter()
        .zip(plan(declared, &tracked, &observed, opts.force))
    {
        let file = &schema.types[t.file];
        let stmt = &file.statements[t.stmt];
        match &action {
            Action::Unchanged => continue,
            Action::Refuse(why) => {
                return Err(run.fail(Some(&file.path), Some((t.stmt, stmt)), why.clone(), None))
            }
            Action::Create => {
                run.exec(&file.path, t.stmt, stmt, "creating a type")
                    .await?;
                run.report.types_deployed += 1;
                run.changelog("type", &t.key, "created", Some(&t.checksum))
                    .await?;
            }
            Action::AddValues(values) => {
                for (label, after) in values {
                    let mut alter = format!(
                        "ALTER TYPE {}.{} ADD VALUE IF NOT EXISTS {}",
                        quote_ident(&t.schema),
                        quote_ident(&t.name),
                        quote_literal(label)
                    );
                    if let Some(prev) = after {
                        alter.push_str(&format!(" AFTER {}", quote_literal(prev)));
                    }
                    run.note("types", None, &t.key, "enum gains a value", &alter);
                    run.send(&alter, |e| {
                        run.fail(
                            Some(&file.path),
                            Some((t.stmt, stmt)),
                            format!("adding value {label:?} to enum {} failed", t.key),
                            Some(e),
                        )
                    })
                    .await?;
                }
                run.report.types_deployed += 1;
                run.changelog("type", &t.key, "values_added", Some(&t.checksum))
                    .await?;
            }
            Action::Record => {}
        }
        run.internal(
            "INSERT INTO _stonescriptdb_gateway_types (name, kind, checksum) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, checksum = excluded.checksum, deployed_at = now()",
            &[&t.key, &t.kind.as_str(), &t.checksum],
        )
        .await?;
    }
    Ok(())
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

    const MOOD: &str = "CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad')";

    #[test]
    fn a_tracked_unchanged_type_costs_nothing_and_a_new_one_is_created() {
        let t = [item(MOOD, "c1")];
        assert_eq!(
            plan(&t, &map(&[("public.mood", "c1")]), &Observed::new(), false),
            [Action::Unchanged]
        );
        assert_eq!(
            plan(&t, &map(&[]), &Observed::new(), false),
            [Action::Create]
        );
    }

    #[test]
    fn an_enum_gains_values_in_their_place() {
        let t = [item(MOOD, "c2")];
        let a = plan(
            &t,
            &map(&[("public.mood", "c1")]),
            &seen("public.mood", &["happy", "sad"]),
            false,
        );
        assert_eq!(
            a,
            [Action::AddValues(vec![("ok".into(), Some("happy".into()))])]
        );
        let first = [item("CREATE TYPE mood AS ENUM ('new', 'happy')", "c3")];
        let a = plan(&first, &map(&[]), &seen("public.mood", &["happy"]), false);
        assert_eq!(a, [Action::AddValues(vec![("new".into(), None)])]);
    }

    #[test]
    fn an_enum_never_loses_a_value_unless_forced() {
        let t = [item("CREATE TYPE mood AS ENUM ('happy')", "c2")];
        let have = seen("public.mood", &["happy", "sad"]);
        assert!(
            matches!(&plan(&t, &map(&[]), &have, false)[0], Action::Refuse(m) if m.contains("\"sad\""))
        );
        assert_eq!(plan(&t, &map(&[]), &have, true), [Action::Record]);
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
            matches!(&plan(&t, &tracked, &have, false)[0], Action::Refuse(m) if m.contains("composite type public.address"))
        );
        assert_eq!(plan(&t, &tracked, &have, true), [Action::Record]);
        // made by a migration before tables/types declared it: recorded as is
        assert_eq!(plan(&t, &map(&[]), &have, false), [Action::Record]);
    }
}
