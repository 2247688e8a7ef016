//! pg_dump's schema-only output split into a schema folder, pure: each
//! entry (pg_dump's `-- Name: …; Type: …; Schema: …` header and its
//! statements) goes to the folder the gateway deploys it from —
//! `extensions/`, `types/`, `tables/` (a table with its sequences, defaults,
//! constraints, indexes and comments), `functions/` — or, for what has no
//! folder of its own (views, triggers, policies, schemas, grants, …), to
//! `migrations/000_exported.sql`, in pg_dump's order (dependencies first).
//!
//! The folders deploy in their order (docs/SCHEMA.md: extensions, types, tables,
//! migrations, functions), so what an earlier folder's object needs from a
//! later one moves to `000_exported.sql` with it: functions that tables,
//! types, views, triggers, policies or indexes use; types and tables using
//! those; tables referencing a moved table; and everything outside the
//! `public` schema but functions (the schema is created by the migration).
//! [`Facts`] (read from the database) says who needs what; [`split`] moves
//! until nothing in an earlier folder needs a moved object, and reports
//! every move and everything it could not export.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::sql::split_statements;

/// A pg_dump object as its header names it: the schema (`-` for none) and
/// the name (`film`, `film film_pkey`, `norm(text)`, `TABLE film`).
pub type Key = (String, String);

/// One pg_dump entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub schema: String,
    pub name: String,
    /// Its statements, each ending with `;`, pg_dump's session `SET`s left out.
    pub statements: Vec<String>,
}

/// What the database says about its objects' dependencies, in pg_dump's
/// names: functions as `name(type, type)`, tables, types, indexes and
/// sequences by name, each with its schema.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// index or owned sequence → its table
    pub owner: BTreeMap<Key, Key>,
    /// functions used by tables, types, views, triggers, policies or indexes
    pub needed_functions: BTreeSet<Key>,
    /// table → functions its defaults, checks, generated columns or indexes use
    pub table_functions: BTreeMap<Key, BTreeSet<Key>>,
    /// table → user types its columns have
    pub table_types: BTreeMap<Key, BTreeSet<Key>>,
    /// table → tables its foreign keys reference
    pub table_references: BTreeMap<Key, BTreeSet<Key>>,
    /// type → functions (a domain's check or default)
    pub type_functions: BTreeMap<Key, BTreeSet<Key>>,
    /// type → user types it is made of (a domain's base, a composite's fields)
    pub type_types: BTreeMap<Key, BTreeSet<Key>>,
    /// extension → its version
    pub extension_versions: BTreeMap<String, String>,
}

/// Where an object went, and why it did not go where its kind belongs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub object: String,
    pub kind: String,
    pub to: String,
    pub why: String,
}

/// What could not be exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Left {
    pub object: String,
    pub kind: String,
    pub why: String,
    pub sql: Vec<String>,
}

/// `export-report.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub database: String,
    /// folder → how many files
    pub files: BTreeMap<String, usize>,
    pub moved_to_migrations: Vec<Moved>,
    pub not_exported: Vec<Left>,
}

/// The exported folder: path (`tables/film.sql`) → contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    pub files: BTreeMap<String, String>,
    pub report: Report,
}

/// The migration holding what has no folder of its own.
pub const MIGRATION: &str = "migrations/000_exported.sql";

/// Read pg_dump's plain output into entries (the preamble and the closing
/// comment left out). `Err` if a statement does not read (it came from
/// pg_dump: a bug worth a clear message).
pub fn entries(dump: &str) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = Vec::new();
    let mut body = String::new();
    let mut header: Option<(String, String, String)> = None;
    let lines: Vec<&str> = dump.lines().collect();
    let mut i = 0;
    let mut flush = |header: &mut Option<(String, String, String)>, body: &mut String| {
        if let Some((name, kind, schema)) = header.take() {
            out.push(Entry {
                kind,
                schema,
                name,
                statements: Vec::new(),
            });
            let text = std::mem::take(body);
            if let Some(last) = out.last_mut() {
                last.statements.push(text);
            }
        } else {
            body.clear();
        }
    };
    while i < lines.len() {
        let line = lines[i];
        let is_header = line == "--"
            && lines.get(i + 2) == Some(&"--")
            && lines.get(i + 1).is_some_and(|l| l.starts_with("-- "));
        if is_header {
            flush(&mut header, &mut body);
            header = parse_header(lines[i + 1]);
            i += 3;
            continue;
        }
        // psql meta-commands (`\restrict`, `\unrestrict`) are not SQL
        if !line.starts_with('\\') {
            body.push_str(line);
            body.push('\n');
        }
        i += 1;
    }
    flush(&mut header, &mut body);
    // each entry's text into statements, pg_dump's session settings out
    let mut read = Vec::with_capacity(out.len());
    for mut e in out {
        let text = e.statements.concat();
        let statements = split_statements(&text).map_err(|err| {
            format!(
                "pg_dump's entry {} ({}) does not read: {err}",
                e.name, e.kind
            )
        })?;
        e.statements = statements
            .into_iter()
            .map(|s| s.text)
            .filter(|s| !session_setting(s))
            .map(|s| format!("{s};"))
            .collect();
        if !e.statements.is_empty() {
            read.push(e);
        }
    }
    Ok(read)
}

/// `-- Name: film film_pkey; Type: CONSTRAINT; Schema: public; Owner: -`
fn parse_header(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("-- Name: ")?;
    let (name, rest) = rest.rsplit_once("; Type: ")?;
    let (kind, rest) = rest.split_once("; Schema: ")?;
    let schema = rest.split("; Owner: ").next()?;
    Some((name.to_owned(), kind.to_owned(), schema.to_owned()))
}

/// pg_dump's `SET x = y` and `SELECT pg_catalog.set_config(…)` lines.
fn session_setting(statement: &str) -> bool {
    let s = statement.trim_start();
    (s.starts_with("SET ") && !s.starts_with("SET ROLE"))
        || s.starts_with("SELECT pg_catalog.set_config(")
}

/// A file name for an object name: lower-case letters, digits and `_`.
fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let stem = stem.trim_matches('_').to_owned();
    if stem.is_empty() {
        "object".into()
    } else {
        stem
    }
}

/// The table an entry belongs to: its own name for a TABLE, the first word
/// of `table constraint` names, the owner of an index or sequence, the
/// `TABLE t` / `COLUMN t.c` of a comment.
fn table_of(e: &Entry, facts: &Facts) -> Option<Key> {
    let key = (e.schema.clone(), e.name.clone());
    match e.kind.as_str() {
        "TABLE" => Some(key),
        "CONSTRAINT" | "FK CONSTRAINT" | "DEFAULT" => {
            Some((e.schema.clone(), e.name.split(' ').next()?.to_owned()))
        }
        "INDEX" | "SEQUENCE" | "SEQUENCE OWNED BY" => facts.owner.get(&key).cloned(),
        "COMMENT" => {
            if let Some(t) = e.name.strip_prefix("TABLE ") {
                Some((e.schema.clone(), t.to_owned()))
            } else {
                let c = e.name.strip_prefix("COLUMN ")?;
                Some((e.schema.clone(), c.split('.').next()?.to_owned()))
            }
        }
        _ => None,
    }
}

/// The function a `FUNCTION …` comment or grant is about.
fn function_of(e: &Entry) -> Option<Key> {
    let f = e
        .name
        .strip_prefix("FUNCTION ")
        .or_else(|| e.name.strip_prefix("PROCEDURE "))?;
    Some((e.schema.clone(), f.to_owned()))
}

/// Roles a grant names that only the source gateway has (platform roles,
/// the admin role): re-granting them elsewhere fails, and the gateway
/// grants its own roles.
fn foreign_roles(statement: &str, admin_role: &str) -> bool {
    let lower = statement.to_ascii_lowercase();
    let mentions = |r: &str| {
        lower
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '"'))
            .any(|w| w.trim_matches('"') == r)
    };
    lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w.starts_with("sdg_"))
        || mentions(&admin_role.to_ascii_lowercase())
}

/// Where one entry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A file of a folder (statements appended in pg_dump's order).
    File(String),
    /// An extension's file: its headers.
    Extension(String, String),
    /// The migration; with why, when its kind has a folder (or none) of its own.
    Migration(Option<String>),
    /// Not exported, and why.
    Left(String),
}

/// `functions/` file of a function `(schema, name(args))`.
fn function_file(schema: &str, signature: &str) -> String {
    let name = signature.split('(').next().unwrap_or(signature);
    if schema == "public" {
        format!("functions/{}.sql", file_stem(name))
    } else {
        format!("functions/{}_{}.sql", file_stem(schema), file_stem(name))
    }
}

/// Where `e` goes, given what moved.
fn place(
    e: &Entry,
    facts: &Facts,
    moved: &BTreeMap<(Bucket, Key), String>,
    admin_role: &str,
) -> Place {
    let key = (e.schema.clone(), e.name.clone());
    let moved_why = |b: Bucket, k: &Key| moved.get(&(b, k.clone())).cloned();
    if e.name.contains("_stonescriptdb_gateway") {
        return Place::Left(
            "the gateway's own (it installs it in every database it deploys)".into(),
        );
    }
    match e.kind.as_str() {
        "EXTENSION" => {
            let mut text = String::new();
            if let Some(v) = facts.extension_versions.get(&e.name) {
                text.push_str(&format!("-- version: {v}\n"));
            }
            let schema = e
                .statements
                .first()
                .and_then(|s| s.split(" WITH SCHEMA ").nth(1))
                .map(|s| s.trim_end_matches(';').trim().to_owned());
            if let Some(s) = schema {
                text.push_str(&format!("-- schema: {s}\n"));
            }
            Place::Extension(format!("extensions/{}.sql", e.name), text)
        }
        "COMMENT" if e.name.starts_with("EXTENSION ") => {
            Place::Left("an extension's own comment comes with the extension".into())
        }
        "TYPE" | "DOMAIN" => match moved_why(Bucket::Type, &key) {
            Some(why) => Place::Migration(Some(why)),
            None => Place::File(format!("types/{}.sql", file_stem(&e.name))),
        },
        "FUNCTION" | "PROCEDURE" | "AGGREGATE" => match moved_why(Bucket::Function, &key) {
            Some(why) => Place::Migration(Some(why)),
            None => Place::File(function_file(&e.schema, &e.name)),
        },
        "ACL" if e.statements.iter().any(|s| foreign_roles(s, admin_role)) => Place::Left(
            "grants to the gateway's own roles (it grants its platform roles itself)".into(),
        ),
        "COMMENT" | "ACL" if function_of(e).is_some() => {
            let f = function_of(e).unwrap_or_default();
            match moved_why(Bucket::Function, &f) {
                Some(_) => Place::Migration(None),
                None => Place::File(function_file(&f.0, &f.1)),
            }
        }
        "SEQUENCE" if !facts.owner.contains_key(&key) && e.schema == "public" => {
            // a sequence of its own (several tables' defaults may share it)
            Place::File(format!("tables/{}.sql", file_stem(&e.name)))
        }
        _ => match table_of(e, facts) {
            Some(t) => match moved_why(Bucket::Table, &t) {
                Some(why) if e.kind == "TABLE" => Place::Migration(Some(why)),
                Some(_) => Place::Migration(None),
                None => Place::File(format!("tables/{}.sql", file_stem(&t.1))),
            },
            None => Place::Migration(Some(format!(
                "a {} has no folder of its own",
                e.kind.to_ascii_lowercase()
            ))),
        },
    }
}

/// Split `entries` of `database` into a schema folder. `admin_role` is
/// the gateway's role (grants to it are not exported).
pub fn split(database: &str, entries: &[Entry], facts: &Facts, admin_role: &str) -> Exported {
    let moved = moved(entries, facts);
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut migration: Vec<&str> = Vec::new();
    let mut report = Report {
        database: database.to_owned(),
        ..Report::default()
    };
    for e in entries {
        let object = if e.schema == "-" || e.schema == "public" {
            e.name.clone()
        } else {
            format!("{}.{}", e.schema, e.name)
        };
        match place(e, facts, &moved, admin_role) {
            Place::File(path) => {
                let f = files.entry(path).or_default();
                for s in &e.statements {
                    f.push_str(s);
                    f.push_str("\n\n");
                }
            }
            Place::Extension(path, headers) => {
                files.insert(path, headers);
            }
            Place::Migration(why) => {
                migration.extend(e.statements.iter().map(String::as_str));
                if let Some(why) = why {
                    report.moved_to_migrations.push(Moved {
                        object,
                        kind: e.kind.clone(),
                        to: MIGRATION.into(),
                        why,
                    });
                }
            }
            Place::Left(why) => report.not_exported.push(Left {
                object,
                kind: e.kind.clone(),
                why,
                sql: e.statements.clone(),
            }),
        }
    }
    if !migration.is_empty() {
        let mut text = String::from(
            "-- Exported by the gateway: what has no folder of its own, and what the\n\
             -- objects here need (see export-report.json), in pg_dump's order.\n\
             SET check_function_bodies = false;\n\n",
        );
        for s in &migration {
            text.push_str(s);
            text.push_str("\n\n");
        }
        text.push_str("RESET check_function_bodies;\n");
        files.insert(MIGRATION.into(), text);
    }
    for path in files.keys() {
        let folder = path.split('/').next().unwrap_or("").to_owned();
        *report.files.entry(folder).or_default() += 1;
    }
    Exported { files, report }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bucket {
    Function,
    Type,
    Table,
}

/// Which functions, types and tables go to the migration, and why: moved
/// until no type or table left in its folder needs a moved object.
fn moved(entries: &[Entry], facts: &Facts) -> BTreeMap<(Bucket, Key), String> {
    let mut out: BTreeMap<(Bucket, Key), String> = BTreeMap::new();
    let label = |k: &Key| {
        if k.0 == "public" {
            k.1.clone()
        } else {
            format!("{}.{}", k.0, k.1)
        }
    };
    for e in entries {
        let key = (e.schema.clone(), e.name.clone());
        match e.kind.as_str() {
            "FUNCTION" | "PROCEDURE" | "AGGREGATE" if facts.needed_functions.contains(&key) => {
                out.insert(
                    (Bucket::Function, key),
                    "a table, type, view, trigger, policy or index uses it, and functions/ deploys after them".into(),
                );
            }
            "TYPE" | "DOMAIN" if e.schema != "public" => {
                out.insert(
                    (Bucket::Type, key),
                    format!("in schema {}, which a migration creates", e.schema),
                );
            }
            "TABLE" if e.schema != "public" => {
                out.insert(
                    (Bucket::Table, key),
                    format!("in schema {}, which a migration creates", e.schema),
                );
            }
            _ => {}
        }
    }
    loop {
        let before = out.len();
        let is_moved = |out: &BTreeMap<(Bucket, Key), String>, b: Bucket, k: &Key| {
            out.contains_key(&(b, k.clone()))
        };
        for e in entries {
            let key = (e.schema.clone(), e.name.clone());
            let (bucket, needs) = match e.kind.as_str() {
                "TYPE" | "DOMAIN" => (
                    Bucket::Type,
                    [
                        (Bucket::Function, facts.type_functions.get(&key)),
                        (Bucket::Type, facts.type_types.get(&key)),
                        (Bucket::Table, None),
                    ],
                ),
                "TABLE" => (
                    Bucket::Table,
                    [
                        (Bucket::Function, facts.table_functions.get(&key)),
                        (Bucket::Type, facts.table_types.get(&key)),
                        (Bucket::Table, facts.table_references.get(&key)),
                    ],
                ),
                _ => continue,
            };
            if is_moved(&out, bucket, &key) {
                continue;
            }
            let why = needs.iter().find_map(|(b, set)| {
                set.iter()
                    .flat_map(|s| s.iter())
                    .find(|k| is_moved(&out, *b, k) && **k != key)
                    .map(|k| format!("it needs {}, which moved to {MIGRATION}", label(k)))
            });
            if let Some(why) = why {
                out.insert((bucket, key), why);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--
-- PostgreSQL database dump
--

\\restrict abc

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

--
-- Name: pgcrypto; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;


--
-- Name: EXTENSION pgcrypto; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION pgcrypto IS 'cryptographic functions';


--
-- Name: mood; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.mood AS ENUM (
    'sad',
    'ok'
);


--
-- Name: norm(text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.norm(t text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT lower(t) $$;


--
-- Name: a1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.a1() RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
SET x = 1;
RETURN 1;
END $$;


SET default_tablespace = '';

--
-- Name: actor; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.actor (
    id integer NOT NULL,
    film_id integer
);


--
-- Name: actor_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.actor_id_seq
    AS integer;


--
-- Name: film; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.film (
    id integer NOT NULL,
    title text DEFAULT public.norm('X'::text) NOT NULL
);


--
-- Name: v_film; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.v_film AS
 SELECT film.id
   FROM public.film;


--
-- Name: actor actor_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.actor
    ADD CONSTRAINT actor_pkey PRIMARY KEY (id);


--
-- Name: actor_partial; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX actor_partial ON public.actor USING btree (film_id) WHERE (film_id IS NOT NULL);


--
-- Name: actor actor_film_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.actor
    ADD CONSTRAINT actor_film_id_fkey FOREIGN KEY (film_id) REFERENCES public.film(id);


--
-- Name: TABLE film; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.film TO sdg_shop_app;


--
-- PostgreSQL database dump complete
--

\\unrestrict abc
";

    fn key(s: &str, n: &str) -> Key {
        (s.into(), n.into())
    }

    fn facts() -> Facts {
        let mut f = Facts::default();
        f.owner
            .insert(key("public", "actor_id_seq"), key("public", "actor"));
        f.owner
            .insert(key("public", "actor_partial"), key("public", "actor"));
        f.needed_functions.insert(key("public", "norm(text)"));
        f.table_functions
            .entry(key("public", "film"))
            .or_default()
            .insert(key("public", "norm(text)"));
        f.table_references
            .entry(key("public", "actor"))
            .or_default()
            .insert(key("public", "film"));
        f.extension_versions.insert("pgcrypto".into(), "1.3".into());
        f
    }

    #[test]
    fn entries_leave_out_the_preamble_settings_and_psql_commands_but_not_a_bodys_lines() {
        let e = entries(DUMP).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pgcrypto",
                "EXTENSION pgcrypto",
                "mood",
                "norm(text)",
                "a1()",
                "actor",
                "actor_id_seq",
                "film",
                "v_film",
                "actor actor_pkey",
                "actor_partial",
                "actor actor_film_id_fkey",
                "TABLE film"
            ]
        );
        let a1 = &e[4];
        assert_eq!(a1.statements.len(), 1, "{a1:?}");
        assert!(a1.statements[0].contains("SET x = 1;"), "{a1:?}");
        // `SET default_tablespace` after it is gone
        assert!(e.iter().all(|e| e
            .statements
            .iter()
            .all(|s| !s.contains("default_tablespace"))));
        assert_eq!(e[9].kind, "CONSTRAINT");
        assert_eq!(e[11].kind, "FK CONSTRAINT");
    }

    #[test]
    fn what_tables_need_moves_to_the_migration_and_what_needs_it_follows() {
        let e = entries(DUMP).unwrap();
        let out = split("shop_main", &e, &facts(), "gateway");
        let paths: Vec<&str> = out.files.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "extensions/pgcrypto.sql",
                "functions/a1.sql",
                MIGRATION,
                "types/mood.sql",
            ]
        );
        assert_eq!(
            out.files["extensions/pgcrypto.sql"],
            "-- version: 1.3\n-- schema: public\n"
        );
        let m = &out.files[MIGRATION];
        // in pg_dump's order: the function, the tables, the view, their constraints
        let at = |s: &str| m.find(s).unwrap_or_else(|| panic!("{s} not in {m}"));
        assert!(at("CREATE FUNCTION public.norm") < at("CREATE TABLE public.actor"));
        assert!(at("CREATE TABLE public.film") < at("CREATE VIEW public.v_film"));
        assert!(at("CREATE INDEX actor_partial") < at("actor_film_id_fkey"));
        assert!(m.starts_with("-- Exported") && m.ends_with("RESET check_function_bodies;\n"));
        let moved: Vec<(&str, &str)> = out
            .report
            .moved_to_migrations
            .iter()
            .map(|m| (m.object.as_str(), m.why.as_str()))
            .collect();
        assert_eq!(moved[0].0, "norm(text)");
        assert_eq!(
            moved[1],
            (
                "actor",
                "it needs film, which moved to migrations/000_exported.sql"
            )
        );
        assert_eq!(
            moved[2],
            (
                "film",
                "it needs norm(text), which moved to migrations/000_exported.sql"
            )
        );
        assert_eq!(moved[3], ("v_film", "a view has no folder of its own"));
        let left: Vec<&str> = out
            .report
            .not_exported
            .iter()
            .map(|l| l.object.as_str())
            .collect();
        assert_eq!(left, ["EXTENSION pgcrypto", "TABLE film"]);
        assert_eq!(out.report.files[&"migrations".to_string()], 1);
    }

    #[test]
    fn a_table_needing_nothing_moved_keeps_its_file_with_its_sequence_constraints_and_indexes() {
        let e = entries(DUMP).unwrap();
        let mut f = facts();
        f.needed_functions.clear();
        f.table_functions.clear();
        let out = split("shop_main", &e, &f, "gateway");
        let actor = &out.files["tables/actor.sql"];
        for s in [
            "CREATE TABLE public.actor",
            "CREATE SEQUENCE public.actor_id_seq",
            "actor_pkey",
            "CREATE INDEX actor_partial",
            "actor_film_id_fkey",
        ] {
            assert!(actor.contains(s), "{s} not in {actor}");
        }
        assert!(out.files.contains_key("tables/film.sql"));
        assert!(out.files.contains_key("functions/norm.sql"));
        // the view still has no folder
        assert!(out.files[MIGRATION].contains("CREATE VIEW public.v_film"));
    }

    #[test]
    fn file_stems_are_plain() {
        assert_eq!(file_stem("Order Items"), "order_items");
        assert_eq!(file_stem("\"x\""), "x");
        assert_eq!(file_stem("€"), "object");
    }
}
