//! Catalog reader: the tables and sequences of a database as a [`Model`],
//! rendered the way PostgreSQL renders them (`format_type`, `pg_get_expr`,
//! `pg_get_constraintdef`, `pg_get_indexdef`) as seen from
//! `search_path = public`. The gateway's tracking tables are never read.
//!
//! [`desired`] builds the desired side the same way: it creates the declared
//! tables in a scratch schema inside a savepoint that is rolled back, reads
//! them with this reader and maps the scratch schema back, so both sides of a
//! diff carry PostgreSQL's own spelling of every type and expression.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;

use super::model::{
    ident, Column, Constraint, ConstraintKind, Identity, Index, Model, QName, Sequence, Table,
};
use crate::sql::definition::requalify;

/// Prefix of the gateway's own tables, never part of a model.
const TRACKING_PREFIX: &str = "_stonescriptdb_gateway";

const TABLES_SQL: &str = "
SELECT c.oid, n.nspname::text, c.relname::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN unnest($1::text[], $2::text[]) AS w(s, t) ON w.s = n.nspname AND w.t = c.relname
 WHERE c.relkind IN ('r', 'p') AND c.relname NOT LIKE '\\_stonescriptdb\\_gateway%'";

const COLUMNS_SQL: &str = "
SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod),
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
         (SELECT CASE WHEN cn.nspname = 'pg_catalog' THEN quote_ident(co.collname)
                      ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END
            FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
           WHERE co.oid = a.attcollation) END,
       a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       a.attidentity::text,
       CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum";

const CONSTRAINTS_SQL: &str = "
SELECT c.conrelid, c.conname::text, c.contype::text, pg_get_constraintdef(c.oid),
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
       rn.nspname::text, r.relname::text
  FROM pg_constraint c
  LEFT JOIN pg_class r ON r.oid = c.confrelid
  LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE c.conrelid = ANY($1) AND c.contype IN ('p', 'u', 'f', 'c', 'x')
 ORDER BY c.conrelid, c.conname";

const INDEXES_SQL: &str = "
SELECT i.indrelid, ic.relname::text, i.indisunique, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = ANY($1)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                    WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                      AND c.contype IN ('p', 'u', 'x'))
 ORDER BY i.indrelid, ic.relname";

/// Sequences asked for by name, plus those owned by a column of the tables
/// read (serial). Identity sequences are part of their column, not listed.
/// The owner is looked up in a subquery planned on its own (`OFFSET 0`):
/// as one eight-relation join the planner spent about 1.2 ms on every
/// execution, three times per deployment, against 0.65 ms this way.
const SEQUENCES_SQL: &str = "
SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin,
       s.seqmax, s.seqstart, s.seqcache, s.seqcycle, o.nspname, o.relname, o.attname
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (
       SELECT d.refobjid, tn.nspname::text, t.relname::text, a.attname::text
         FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
         JOIN pg_namespace tn ON tn.oid = t.relnamespace
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
       OFFSET 0) o ON true
 WHERE NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass
                      AND i.objid = c.oid AND i.deptype = 'i')
   AND ((n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
        OR o.refobjid = ANY($3))
 ORDER BY 1, 2";

/// Read `tables` and `sequences` (those that exist) from the database, as
/// seen from the current `search_path` (callers set it to `public` first, see
/// [`with_search_path`]).
pub async fn read(
    c: &impl GenericClient,
    tables: &BTreeSet<QName>,
    sequences: &BTreeSet<QName>,
) -> Result<Model, tokio_postgres::Error> {
    let (ts, tn): (Vec<&str>, Vec<&str>) = tables
        .iter()
        .filter(|q| !q.name.starts_with(TRACKING_PREFIX))
        .map(|q| (q.schema.as_str(), q.name.as_str()))
        .unzip();
    let mut by_oid: BTreeMap<u32, Table> = BTreeMap::new();
    for r in c.query(TABLES_SQL, &[&ts, &tn]).await? {
        let name = QName::new(r.get(1), r.get(2));
        by_oid.insert(
            r.get(0),
            Table {
                name,
                ..Table::default()
            },
        );
    }
    let oids: Vec<u32> = by_oid.keys().copied().collect();
    if !oids.is_empty() {
        for r in c.query(COLUMNS_SQL, &[&oids]).await? {
            let Some(t) = by_oid.get_mut(&r.get::<_, u32>(0)) else {
                continue;
            };
            let identity = match r.get::<_, &str>(6) {
                "a" => Some(Identity::Always),
                "d" => Some(Identity::ByDefault),
                _ => None,
            };
            t.columns.push(Column {
                name: r.get(1),
                data_type: r.get(2),
                collation: r.get(3),
                not_null: r.get(4),
                default: r.get(5),
                identity,
                generated: r.get(7),
                has_nulls: None,
            });
        }
        for r in c.query(CONSTRAINTS_SQL, &[&oids]).await? {
            let Some(t) = by_oid.get_mut(&r.get::<_, u32>(0)) else {
                continue;
            };
            let kind = match r.get::<_, &str>(2) {
                "p" => ConstraintKind::PrimaryKey,
                "u" => ConstraintKind::Unique,
                "f" => ConstraintKind::ForeignKey,
                "c" => ConstraintKind::Check,
                _ => ConstraintKind::Exclude,
            };
            let references = match (r.get::<_, Option<String>>(5), r.get::<_, Option<String>>(6)) {
                (Some(s), Some(n)) => Some(QName { schema: s, name: n }),
                _ => None,
            };
            t.constraints.push(Constraint {
                name: r.get(1),
                kind,
                columns: r.get(4),
                references,
                definition: r.get(3),
            });
        }
        for r in c.query(INDEXES_SQL, &[&oids]).await? {
            let Some(t) = by_oid.get_mut(&r.get::<_, u32>(0)) else {
                continue;
            };
            t.indexes.push(Index {
                name: r.get(1),
                unique: r.get(2),
                definition: r.get(3),
            });
        }
    }
    let (ss, sn): (Vec<&str>, Vec<&str>) = sequences
        .iter()
        .map(|q| (q.schema.as_str(), q.name.as_str()))
        .unzip();
    let mut model = Model::default();
    for r in c.query(SEQUENCES_SQL, &[&ss, &sn, &oids]).await? {
        let name = QName::new(r.get(0), r.get(1));
        let owned_by = match (
            r.get::<_, Option<String>>(9),
            r.get::<_, Option<String>>(10),
            r.get::<_, Option<String>>(11),
        ) {
            (Some(s), Some(t), Some(col)) => Some((QName { schema: s, name: t }, col)),
            _ => None,
        };
        let seq = Sequence::without_defaults(Sequence {
            name: name.clone(),
            data_type: r.get(2),
            increment: r.get(3),
            min_value: Some(r.get(4)),
            max_value: Some(r.get(5)),
            start: Some(r.get(6)),
            cache: r.get(7),
            cycle: r.get(8),
            owned_by,
        });
        model.sequences.insert(name, seq);
    }
    for (_, t) in by_oid {
        model.tables.insert(t.name.clone(), t);
    }
    Ok(model)
}

/// For every column `desired` wants NOT NULL that is nullable in `observed`:
/// does it hold NULLs? (The differ needs it to classify SET NOT NULL.)
pub async fn fill_has_nulls(
    c: &impl GenericClient,
    desired: &Model,
    observed: &mut Model,
) -> Result<(), tokio_postgres::Error> {
    for (name, t) in observed.tables.iter_mut() {
        let Some(want) = desired.tables.get(name) else {
            continue;
        };
        for col in t.columns.iter_mut() {
            let wants_not_null = want.column(&col.name).is_some_and(|w| w.not_null);
            if !wants_not_null || col.not_null {
                continue;
            }
            let q = format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)",
                name.sql(),
                ident(&col.name)
            );
            col.has_nulls = Some(c.query_one(q.as_str(), &[]).await?.get(0));
        }
    }
    Ok(())
}

/// The observed side of a diff: [`read`] as seen from `search_path =
/// public` (restored afterwards), with [`fill_has_nulls`] for `desired`.
pub async fn observe(
    c: &impl GenericClient,
    desired: &Model,
    tables: &BTreeSet<QName>,
    sequences: &BTreeSet<QName>,
) -> Result<Model, tokio_postgres::Error> {
    let old = set_search_path(c, "public").await?;
    let mut observed = read(c, tables, sequences).await?;
    fill_has_nulls(c, desired, &mut observed).await?;
    set_search_path(c, &old).await?;
    Ok(observed)
}

/// Set `search_path` for the rest of the transaction; returns the old value.
pub async fn set_search_path(
    c: &impl GenericClient,
    path: &str,
) -> Result<String, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT current_setting('search_path'), set_config('search_path', $1, true)",
        &[&path],
    )
    .await?
    .get(0))
}

/// Scratch schema name for the `i`-th real schema.
fn scratch_schema(i: usize) -> String {
    format!("_sdg_desired_{i}")
}

/// Map every schema of `model` (tables, sequences, references, definitions)
/// through `map` (real → scratch or back).
fn map_schemas(model: &Model, map: &BTreeMap<String, String>) -> Model {
    let q = |n: &QName| QName {
        schema: map
            .get(&n.schema)
            .cloned()
            .unwrap_or_else(|| n.schema.clone()),
        name: n.name.clone(),
    };
    let text = |s: &str| {
        map.iter()
            .fold(s.to_owned(), |acc, (from, to)| requalify(&acc, from, to))
    };
    let mut out = Model::default();
    for t in model.tables.values() {
        let t2 = Table {
            name: q(&t.name),
            columns: t
                .columns
                .iter()
                .map(|c| Column {
                    default: c.default.as_deref().map(text),
                    generated: c.generated.as_deref().map(text),
                    ..c.clone()
                })
                .collect(),
            constraints: t
                .constraints
                .iter()
                .map(|c| Constraint {
                    references: c.references.as_ref().map(q),
                    definition: text(&c.definition),
                    ..c.clone()
                })
                .collect(),
            indexes: t
                .indexes
                .iter()
                .map(|i| Index {
                    definition: text(&i.definition),
                    ..i.clone()
                })
                .collect(),
        };
        out.tables.insert(t2.name.clone(), t2);
    }
    for s in model.sequences.values() {
        let s2 = Sequence {
            name: q(&s.name),
            owned_by: s.owned_by.as_ref().map(|(t, c)| (q(t), c.clone())),
            ..s.clone()
        };
        out.sequences.insert(s2.name.clone(), s2);
    }
    out
}

/// `CREATE TABLE` without foreign keys, for the scratch schema.
/// `CREATE TABLE` of `t`: its columns and every constraint but foreign keys.
pub(crate) fn render_table(t: &Table) -> String {
    let mut parts: Vec<String> = t.columns.iter().map(super::diff::column_def).collect();
    parts.extend(
        t.constraints
            .iter()
            .filter(|c| c.kind != ConstraintKind::ForeignKey)
            .map(|c| format!("CONSTRAINT {} {}", ident(&c.name), c.definition)),
    );
    format!("CREATE TABLE {} ({})", t.name.sql(), parts.join(", "))
}

fn render_sequence(s: &Sequence) -> String {
    let mut out = format!(
        "CREATE SEQUENCE {} AS {} INCREMENT BY {}",
        s.name.sql(),
        s.data_type,
        s.increment
    );
    if let Some(v) = s.min_value {
        out.push_str(&format!(" MINVALUE {v}"));
    }
    if let Some(v) = s.max_value {
        out.push_str(&format!(" MAXVALUE {v}"));
    }
    if let Some(v) = s.start {
        out.push_str(&format!(" START WITH {v}"));
    }
    out.push_str(&format!(" CACHE {}", s.cache));
    if s.cycle {
        out.push_str(" CYCLE");
    }
    out
}

/// Why the declared model could not be built in the scratch schema.
#[derive(Debug)]
pub struct DesiredError {
    /// The table (or sequence) whose declaration PostgreSQL refused.
    pub object: String,
    pub error: tokio_postgres::Error,
}

/// The desired model as PostgreSQL spells it: `declared` (read from DDL) is
/// created in scratch schemas inside a savepoint, read back with [`read`] and
/// mapped back to the real schemas; the savepoint is rolled back, so nothing
/// persists. Declared foreign keys to tables that are not declared point at
/// the real tables.
pub async fn desired(
    tx: &tokio_postgres::Transaction<'_>,
    declared: &Model,
) -> Result<Model, DesiredError> {
    let schemas: BTreeSet<&String> = declared
        .tables
        .keys()
        .chain(declared.sequences.keys())
        .map(|q| &q.schema)
        .collect();
    let to_scratch: BTreeMap<String, String> = schemas
        .iter()
        .enumerate()
        .map(|(i, s)| ((*s).clone(), scratch_schema(i)))
        .collect();
    // References to undeclared tables keep their real schema: map only the
    // declared names by requalifying, then fix references back.
    let scratch = map_schemas(declared, &to_scratch);
    let fail = |object: &str| {
        let object = object.to_owned();
        move |error| DesiredError { object, error }
    };
    tx.batch_execute("SAVEPOINT sdg_desired")
        .await
        .map_err(fail("tables/"))?;
    let result = async {
        let mut path: Vec<String> = Vec::new();
        for s in to_scratch.values() {
            tx.batch_execute(&format!("CREATE SCHEMA {}", ident(s)))
                .await
                .map_err(fail("tables/"))?;
        }
        if let Some(p) = to_scratch.get("public") {
            path.push(ident(p));
        }
        path.push("public".into());
        let path = path.join(", ");
        let old = set_search_path(tx, &path).await.map_err(fail("tables/"))?;
        for s in scratch.sequences.values() {
            tx.execute(render_sequence(s).as_str(), &[])
                .await
                .map_err(fail(&s.name.to_string()))?;
        }
        for t in scratch.tables.values() {
            tx.execute(render_table(t).as_str(), &[])
                .await
                .map_err(fail(&unmapped(&t.name, &to_scratch)))?;
        }
        for t in scratch.tables.values() {
            for c in &t.constraints {
                if c.kind != ConstraintKind::ForeignKey {
                    continue;
                }
                let target = c.references.as_ref();
                // A foreign key to an undeclared table points at the real one.
                let def = match target {
                    Some(r) if !scratch.tables.contains_key(r) => to_scratch
                        .iter()
                        .fold(c.definition.clone(), |acc, (real, sc)| {
                            requalify(&acc, sc, real)
                        }),
                    _ => c.definition.clone(),
                };
                let stmt = format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {def}",
                    t.name.sql(),
                    ident(&c.name)
                );
                tx.execute(stmt.as_str(), &[])
                    .await
                    .map_err(fail(&unmapped(&t.name, &to_scratch)))?;
            }
            for i in &t.indexes {
                tx.execute(i.definition.as_str(), &[])
                    .await
                    .map_err(fail(&unmapped(&t.name, &to_scratch)))?;
            }
        }
        for s in scratch.sequences.values() {
            if let Some((t, c)) = &s.owned_by {
                let stmt = format!(
                    "ALTER SEQUENCE {} OWNED BY {}.{}",
                    s.name.sql(),
                    t.sql(),
                    ident(c)
                );
                tx.execute(stmt.as_str(), &[])
                    .await
                    .map_err(fail(&s.name.to_string()))?;
            }
        }
        // Read back as seen from `public` plus the scratch schema standing in
        // for it, so unqualified names render as they do for real tables.
        let tables: BTreeSet<QName> = scratch.tables.keys().cloned().collect();
        let sequences: BTreeSet<QName> = scratch.sequences.keys().cloned().collect();
        let model = read(tx, &tables, &sequences)
            .await
            .map_err(fail("tables/"))?;
        set_search_path(tx, &old).await.map_err(fail("tables/"))?;
        Ok(model)
    }
    .await;
    tx.batch_execute("ROLLBACK TO SAVEPOINT sdg_desired; RELEASE SAVEPOINT sdg_desired")
        .await
        .map_err(fail("tables/"))?;
    let back: BTreeMap<String, String> = to_scratch
        .iter()
        .map(|(real, sc)| (sc.clone(), real.clone()))
        .collect();
    let model = result?;
    Ok(map_schemas(&model, &back))
}

fn unmapped(q: &QName, to_scratch: &BTreeMap<String, String>) -> String {
    let real = to_scratch
        .iter()
        .find(|(_, sc)| **sc == q.schema)
        .map_or(q.schema.clone(), |(r, _)| r.clone());
    QName::new(&real, &q.name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requalify_only_at_identifier_boundaries() {
        assert_eq!(
            requalify("CREATE INDEX i ON public.t USING btree (a)", "public", "_s"),
            "CREATE INDEX i ON _s.t USING btree (a)"
        );
        assert_eq!(requalify("x_public.t", "public", "_s"), "x_public.t");
        // a function keeps its schema; a referenced table does not
        assert_eq!(
            requalify("DEFAULT public.uuid_generate_v4()", "public", "_s"),
            "DEFAULT public.uuid_generate_v4()"
        );
        assert_eq!(
            requalify("FOREIGN KEY (a) REFERENCES public.t(id)", "public", "_s"),
            "FOREIGN KEY (a) REFERENCES _s.t(id)"
        );
        assert_eq!(requalify("\"public\".t", "public", "_s"), "_s.t");
        assert_eq!(
            requalify("nextval('public.t_id_seq'::regclass)", "public", "_s"),
            "nextval('_s.t_id_seq'::regclass)"
        );
    }

    fn seq(data_type: &str, inc: i64, min: i64, max: i64, start: i64) -> Sequence {
        Sequence::without_defaults(Sequence {
            name: QName::public("s"),
            data_type: data_type.into(),
            increment: inc,
            min_value: Some(min),
            max_value: Some(max),
            start: Some(start),
            cache: 1,
            cycle: false,
            owned_by: None,
        })
    }

    #[test]
    fn sequence_defaults_are_none() {
        let s = seq("bigint", 1, 1, i64::MAX, 1);
        assert_eq!((s.min_value, s.max_value, s.start), (None, None, None));
        let s = seq("integer", -1, i64::from(i32::MIN), -1, -1);
        assert_eq!((s.min_value, s.max_value, s.start), (None, None, None));
        let s = seq("integer", 1, 10, i64::from(i32::MAX), 100);
        assert_eq!(
            (s.min_value, s.max_value, s.start),
            (Some(10), None, Some(100))
        );
        let s = seq("integer", 1, 10, i64::from(i32::MAX), 10);
        assert_eq!((s.min_value, s.start), (Some(10), None));
    }
}
