//! What the exported database says about its objects' dependencies, read
//! from its catalogs in pg_dump's names (functions as `name(type, type)`
//! with `oidvectortypes`, the spelling pg_dump's headers use), for
//! [`super::split`]. Only user objects count: system schemas, extension
//! members and the gateway's own objects are left out.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::split::{Facts, Key};

/// A user object: not in a system schema, not an extension's member.
const USER: &str =
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'";

/// Function keys as pg_dump names them.
const FN_KEY: &str =
    "pn.nspname::text, p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')'";

/// (dependent schema, name, function schema, signature) of every
/// dependency on a user function, with what depends: `t` a table (its
/// defaults, checks, generated columns, indexes), `y` a type (a domain's
/// check or default), `o` anything else (views, triggers, policies, rules).
fn function_uses() -> String {
    format!(
        "WITH dep AS (
           SELECT d.classid, d.objid, d.refobjid FROM pg_depend d
           WHERE d.refclassid = 'pg_proc'::regclass AND d.deptype = 'n'
         ),
         who AS (
           SELECT dep.refobjid AS fn,
                  CASE dep.classid
                    WHEN 'pg_attrdef'::regclass THEN (SELECT ad.adrelid FROM pg_attrdef ad WHERE ad.oid = dep.objid)
                    WHEN 'pg_constraint'::regclass THEN (SELECT nullif(c.conrelid, 0) FROM pg_constraint c WHERE c.oid = dep.objid)
                    WHEN 'pg_class'::regclass THEN (SELECT coalesce((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = dep.objid), dep.objid))
                  END AS rel,
                  CASE dep.classid
                    WHEN 'pg_constraint'::regclass THEN (SELECT nullif(c.contypid, 0) FROM pg_constraint c WHERE c.oid = dep.objid)
                    WHEN 'pg_type'::regclass THEN dep.objid
                  END AS typ
           FROM dep
         )
         SELECT CASE WHEN r.oid IS NOT NULL AND r.relkind IN ('r', 'p') THEN 't'
                     WHEN t.oid IS NOT NULL THEN 'y' ELSE 'o' END,
                coalesce(rn.nspname::text, tn.nspname::text, ''), coalesce(r.relname::text, t.typname::text, ''),
                {FN_KEY}
         FROM who
         JOIN pg_proc p ON p.oid = who.fn
         JOIN pg_namespace pn ON pn.oid = p.pronamespace
         LEFT JOIN pg_class r ON r.oid = who.rel
         LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
         LEFT JOIN pg_type t ON t.oid = who.typ
         LEFT JOIN pg_namespace tn ON tn.oid = t.typnamespace
         WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema')
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                           AND e.objid = p.oid AND e.deptype = 'e')"
    )
}

/// (table schema, table, type schema, type) for each column of a user type,
/// and (type schema, type, type schema, type) for a domain's base type and
/// a composite type's fields: `c` or `y` first.
fn type_uses() -> String {
    format!(
        "SELECT 'c', n.nspname::text, c.relname::text, tn.nspname::text, t.typname::text
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type t0 ON t0.oid = a.atttypid
         JOIN pg_type t ON t.oid = CASE WHEN t0.typelem <> 0 AND t0.typlen = -1 THEN t0.typelem ELSE t0.oid END
         JOIN pg_namespace tn ON tn.oid = t.typnamespace
         WHERE a.attnum > 0 AND NOT a.attisdropped AND {USER}
           AND tn.nspname NOT IN ('pg_catalog', 'information_schema')
           AND t.typtype IN ('e', 'd', 'c', 'r')
         UNION ALL
         SELECT 'y', n.nspname::text, d.typname::text, bn.nspname::text, b.typname::text
         FROM pg_type d
         JOIN pg_namespace n ON n.oid = d.typnamespace
         JOIN pg_type b ON b.oid = d.typbasetype
         JOIN pg_namespace bn ON bn.oid = b.typnamespace
         WHERE d.typtype = 'd' AND {USER} AND bn.nspname NOT IN ('pg_catalog', 'information_schema')
         UNION ALL
         SELECT 'y', n.nspname::text, ct.typname::text, tn.nspname::text, t.typname::text
         FROM pg_type ct
         JOIN pg_namespace n ON n.oid = ct.typnamespace
         JOIN pg_attribute a ON a.attrelid = ct.typrelid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type t ON t.oid = a.atttypid
         JOIN pg_namespace tn ON tn.oid = t.typnamespace
         WHERE ct.typtype = 'c' AND {USER} AND tn.nspname NOT IN ('pg_catalog', 'information_schema')
           AND (SELECT relkind FROM pg_class WHERE oid = ct.typrelid) = 'c'"
    )
}

/// (table schema, table, referenced schema, referenced table) of every
/// foreign key between two different tables.
const REFERENCES_SQL: &str = "
SELECT n.nspname::text, c.relname::text, fn.nspname::text, f.relname::text
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class f ON f.oid = k.confrelid
JOIN pg_namespace fn ON fn.oid = f.relnamespace
WHERE k.contype = 'f' AND k.conrelid <> k.confrelid";

/// (schema, index or sequence, table schema, table): indexes, and
/// sequences a column owns (serial, identity).
const OWNERS_SQL: &str = "
SELECT n.nspname::text, i.relname::text, tn.nspname::text, t.relname::text
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = i.relnamespace
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
UNION ALL
SELECT n.nspname::text, s.relname::text, tn.nspname::text, t.relname::text
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_class t ON t.oid = d.refobjid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype IN ('a', 'i')";

const EXTENSIONS_SQL: &str =
    "SELECT extname::text, extversion FROM pg_extension WHERE extname <> 'plpgsql'";

fn key(r: &tokio_postgres::Row, schema: usize, name: usize) -> Key {
    (r.get(schema), r.get(name))
}

/// Read the facts of the database `client` is connected to.
pub async fn read(client: &Client) -> Result<Facts, tokio_postgres::Error> {
    let mut f = Facts::default();
    for r in client.query(&function_uses(), &[]).await? {
        let function = key(&r, 3, 4);
        f.needed_functions.insert(function.clone());
        let of = key(&r, 1, 2);
        let into = match r.get::<_, &str>(0) {
            "t" => &mut f.table_functions,
            "y" => &mut f.type_functions,
            _ => continue,
        };
        into.entry(of)
            .or_insert_with(BTreeSet::new)
            .insert(function);
    }
    for r in client.query(&type_uses(), &[]).await? {
        let into = match r.get::<_, &str>(0) {
            "c" => &mut f.table_types,
            _ => &mut f.type_types,
        };
        into.entry(key(&r, 1, 2)).or_default().insert(key(&r, 3, 4));
    }
    for r in client.query(REFERENCES_SQL, &[]).await? {
        f.table_references
            .entry(key(&r, 0, 1))
            .or_default()
            .insert(key(&r, 2, 3));
    }
    for r in client.query(OWNERS_SQL, &[]).await? {
        f.owner.insert(key(&r, 0, 1), key(&r, 2, 3));
    }
    for r in client.query(EXTENSIONS_SQL, &[]).await? {
        f.extension_versions.insert(r.get(0), r.get(1));
    }
    Ok(f)
}
