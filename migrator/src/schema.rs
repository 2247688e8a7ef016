//! The schema model: an uploaded archive's files parsed into statements per
//! folder (`extensions/ types/ tables/ migrations/ functions/ seeders/`), each
//! file with a checksum over its normalized text. Parsing problems are the
//! client's (400), reported with the file and line.

use sha2::{Digest, Sha256};

use crate::archive::{self, ArchiveError, Limits, Schema, SchemaFile};
use crate::error::MigratorError;
use crate::sql::{self, guard, Statement};
use crate::tables::create_table::TableItem;
use stonescriptdb_shared::catalog::TypeKind;
use stonescriptdb_shared::names::quote_ident;

pub use crate::sql::SqlFile;

/// An `extensions/` entry: file name = extension name, optional headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub path: String,
    pub name: String,
    pub version: Option<String>,
    pub schema: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub extensions: Vec<Extension>,
    pub types: Vec<SqlFile>,
    pub tables: Vec<SqlFile>,
    pub migrations: Vec<SqlFile>,
    pub functions: Vec<SqlFile>,
    pub seeders: Vec<SqlFile>,
    /// `tables/` read into the table model; None without a `tables/` folder.
    pub declared: Option<crate::tables::reader::Declared>,
    /// The archive's checksum over its sorted files (`archive::Schema::checksum`).
    pub checksum: String,
    /// The archive has a `functions/` folder (possibly empty: then the
    /// functions the gateway deployed are dropped); without one, functions
    /// are left as they are.
    pub functions_folder: bool,
    /// Per `functions/` file: it holds the line `-- stonescriptdb:
    /// no-body-check` (its routines' bodies are not checked at deployment).
    pub no_body_check: Vec<bool>,
    /// What the files declare, read once per upload: every database a
    /// deployment touches uses this, never the text again.
    pub model: Model,
}

impl Parsed {
    /// Bytes of SQL text it holds (what keeping it parsed costs, roughly).
    pub fn text_bytes(&self) -> usize {
        [
            &self.types,
            &self.tables,
            &self.migrations,
            &self.functions,
            &self.seeders,
        ]
        .into_iter()
        .flatten()
        .flat_map(|f| &f.statements)
        .map(|s| s.text.len())
        .sum()
    }
}

/// One `CREATE FUNCTION/PROCEDURE/AGGREGATE` of `functions/`.
#[derive(Debug, Clone)]
pub struct RoutineItem {
    /// Index into `Parsed::functions`, and of the statement in that file.
    pub file: usize,
    pub stmt: usize,
    /// Its body is checked once every routine exists: a function or
    /// procedure whose file has no `-- stonescriptdb: no-body-check` line.
    pub body_check: bool,
    /// A SQL-standard body (`BEGIN ATOMIC … END`), which PostgreSQL checks
    /// at creation: created after the others, in dependency order.
    pub atomic: bool,
    /// `schema.name(arg types)`, for `to_regprocedure` and `DROP ROUTINE`.
    pub lookup: String,
    /// Over the normalized statement (whitespace, comments, keyword case ignored).
    pub checksum: String,
    /// `schema.name`.
    pub name: String,
    /// A `BEGIN ATOMIC` routine's identifiers (the routines its body
    /// names are among them), read at upload for its creation order.
    pub mentions: std::collections::BTreeSet<String>,
}

/// One `CREATE TYPE/DOMAIN` of `types/`.
#[derive(Debug, Clone)]
pub struct TypeItem {
    pub file: usize,
    pub stmt: usize,
    pub def: sql::TypeDef,
    pub schema: String,
    pub name: String,
    /// `schema.name`, as tracked.
    pub key: String,
    pub kind: TypeKind,
    pub checksum: String,
}

/// An extension a statement installs or changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionUse {
    /// Where: `migrations/001.sql statement 2 (line 4)`.
    pub at: String,
    pub name: String,
    /// `CASCADE`: what it requires may be installed too.
    pub cascade: bool,
}

/// One `migrations/` file as the deployment's checks see it.
#[derive(Debug, Clone, Default)]
pub struct MigrationItem {
    /// Per statement: must it run outside the transaction?
    pub autocommit: Vec<bool>,
    /// Why this migration cannot run, if it is pending (the first refused
    /// statement; an applied migration is not judged again).
    pub refused: Option<String>,
    /// Extensions its statements install or change.
    pub extensions: Vec<ExtensionUse>,
    /// The tables, columns and sequences it creates or renames itself
    /// (`tables/` leaves those to it while it is pending).
    pub effects: Vec<sql::effects::Effect>,
}

/// Everything the deployment steps need from the files, read once.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub routines: Vec<RoutineItem>,
    /// Statements of `functions/` files that are not routines (triggers,
    /// COMMENT ON, GRANT…): (file, statement), run when their file changed.
    pub function_other: Vec<(usize, usize)>,
    /// Statements not run, each said in every deployment's report (`notes`):
    /// pg_dump's session preamble and `OWNER TO` in `functions/`.
    pub notes: Vec<String>,
    pub types: Vec<TypeItem>,
    pub tables: Vec<TableItem>,
    /// Per `migrations/` file: what a deployment checks before running it.
    pub migrations: Vec<MigrationItem>,
    /// `CREATE`/`ALTER EXTENSION` statements outside `migrations/` (those of
    /// a migration are in its [`MigrationItem`]).
    pub extension_uses: Vec<ExtensionUse>,
    /// Per `seeders/` file: its INSERT statements, taken apart.
    pub inserts: Vec<Vec<(usize, crate::seed::Insert)>>,
    /// Over the `tables/` folder (paths and file checksums).
    pub tables_checksum: String,
}

/// `(schema or public, name)`.
pub fn table_key(schema: &Option<String>, name: &str) -> (String, String) {
    (
        schema.clone().unwrap_or_else(|| "public".into()),
        name.to_owned(),
    )
}

/// `folder/file statement n (line l)`.
fn at(f: &SqlFile, i: usize, s: &Statement) -> String {
    format!("{} statement {} (line {})", f.path, i + 1, s.line)
}

/// The 400 message of a refused statement.
fn refusal(f: &SqlFile, i: usize, s: &Statement, r: guard::Refusal, what: &str) -> String {
    format!("{}: {what}: {r}", at(f, i, s))
}

/// What `sql::guard` says of one file, each statement classified once.
#[derive(Default)]
struct Judged {
    /// The first refused statement's 400 message.
    refused: Option<String>,
    /// The extensions its statements install or change.
    uses: Vec<ExtensionUse>,
}

/// Classify `f`'s statements: mark a whole-file `BEGIN;` … `COMMIT;` as its
/// wrapper (where `wrapped`: files run as written), which deployments do
/// not run, and judge the others.
fn judge(f: &mut SqlFile, wrapped: bool) -> Judged {
    let classes: Vec<guard::Class> = f
        .statements
        .iter()
        .map(|s| guard::classify(&s.text))
        .collect();
    f.wrapper = guard::wrapper(&classes).filter(|_| wrapped);
    let mut j = Judged::default();
    for ((i, s), class) in f.statements.iter().enumerate().zip(classes) {
        if f.wrapper.is_some_and(|(a, b)| i == a || i == b) {
            continue;
        }
        if let Some((r, what)) = class.refusal() {
            j.refused.get_or_insert_with(|| refusal(f, i, s, r, &what));
        }
        if let guard::Class::Extension { name, cascade } = class {
            j.uses.push(ExtensionUse {
                at: at(f, i, s),
                name,
                cascade,
            });
        }
    }
    j
}

/// Judge every file: outside `migrations/` a refused statement is 400
/// before any database is touched; a migration's verdict is kept for when
/// it is pending (per database). Returns the extensions named outside
/// `migrations/`, and each migration's verdict.
fn guard_files(p: &mut Parsed) -> Result<(Vec<ExtensionUse>, Vec<Judged>), MigratorError> {
    let migrations = p.migrations.iter_mut().map(|f| judge(f, true)).collect();
    let mut uses = Vec::new();
    // (types/ and tables/ are read, not run as written: no wrapper there)
    let folders = [
        (&mut p.types, false),
        (&mut p.tables, false),
        (&mut p.functions, true),
        (&mut p.seeders, true),
    ];
    for (files, wrapped) in folders {
        for f in files.iter_mut() {
            let j = judge(f, wrapped);
            if let Some(why) = j.refused {
                return Err(MigratorError::BadRequest(why));
            }
            uses.extend(j.uses);
        }
    }
    Ok((uses, migrations))
}

/// A statement reader's error, said at the line where statement `s` of `f` starts.
fn bad(f: &SqlFile, s: &Statement, e: sql::SqlError) -> MigratorError {
    e.at(&f.path, s.line).into()
}

/// The line a routine's file holds to skip its body check.
const NO_BODY_CHECK: &str = "-- stonescriptdb: no-body-check";

/// `functions/`: every statement is a routine, a trigger beside its
/// function, a comment, grant, revoke or alteration of a routine the folder
/// defines, or pg_dump's preamble (skipped, said in `notes`); anything else
/// is 400 naming the file, the line and the folder it belongs in, and so is
/// a file that defines no routine. Nothing is deployed (or dropped) from a
/// folder that does not read.
fn read_functions(p: &Parsed, m: &mut Model) -> Result<(), MigratorError> {
    use sql::function_file::{classify, FnStmt};
    let mut others = Vec::new();
    // the first file without a routine, said after what its statements are
    let mut empty: Option<usize> = None;
    for (fi, f) in p.functions.iter().enumerate() {
        let body_check = !p.no_body_check.get(fi).copied().unwrap_or(false);
        let mut defines = false;
        for (si, s) in f.runnable() {
            let class = classify(&s.text);
            if class != FnStmt::Routine {
                others.push((fi, si, class));
                continue;
            }
            let routine = sql::parse_routine(&s.text).map_err(|e| bad(f, s, e))?;
            let schema = routine.schema.clone().unwrap_or_else(|| "public".into());
            defines = true;
            m.routines.push(RoutineItem {
                file: fi,
                stmt: si,
                body_check: body_check && routine.kind != sql::RoutineKind::Aggregate,
                atomic: routine.atomic,
                lookup: format!(
                    "{}.{}({})",
                    quote_ident(&schema),
                    quote_ident(&routine.name),
                    routine.arg_types.join(", ")
                ),
                checksum: sha256_hex(sql::normalize(&s.text).as_bytes()),
                name: format!("{schema}.{}", routine.name),
                mentions: if routine.atomic {
                    sql::definition::identifiers(&s.text)
                } else {
                    Default::default()
                },
            });
        }
        if !defines {
            empty.get_or_insert(fi);
        }
    }
    let defined: std::collections::BTreeSet<&str> =
        m.routines.iter().map(|r| r.name.as_str()).collect();
    let known = |(schema, name): &(Option<String>, String)| {
        let full = format!("{}.{name}", schema.as_deref().unwrap_or("public"));
        defined.contains(full.as_str())
    };
    for (fi, si, class) in others {
        let f = &p.functions[fi];
        let s = &f.statements[si];
        let at = at(f, si, s);
        match class {
            FnStmt::Routine => {}
            FnStmt::Trigger { function } if !known(&function) => {
                return Err(MigratorError::BadRequest(format!(
                    "{at}: this trigger runs {}, which functions/ does not define; a trigger stands beside its function (or in migrations/)",
                    function.1
                )))
            }
            FnStmt::About {
                routine: Some(routine),
            } if !known(&routine) => {
                return Err(MigratorError::BadRequest(format!(
                    "{at}: this statement is about {}, which functions/ does not define; it belongs in migrations/",
                    routine.1
                )))
            }
            FnStmt::Trigger { .. } | FnStmt::About { .. } => m.function_other.push((fi, si)),
            FnStmt::Skip(why) => m.notes.push(format!("{at}: {why}")),
            FnStmt::Misplaced { what, belongs } => {
                return Err(MigratorError::BadRequest(format!(
                    "{at}: {what} does not belong in functions/ (its files define routines, with their triggers, comments and grants); it belongs in {belongs}"
                )))
            }
        }
    }
    if let Some(fi) = empty {
        return Err(MigratorError::BadRequest(format!(
            "{}: defines no routine; a file in functions/ holds CREATE FUNCTION, PROCEDURE or AGGREGATE statements (with their triggers, comments and grants)",
            p.functions[fi].path
        )));
    }
    Ok(())
}

/// Read every file's statements into the [`Model`] (`judged`: each
/// migration's verdict, from [`guard_files`]).
fn model(p: &Parsed, judged: Vec<Judged>) -> Result<Model, MigratorError> {
    let mut m = Model::default();
    read_functions(p, &mut m)?;
    for (fi, f) in p.types.iter().enumerate() {
        for (si, s) in f.statements.iter().enumerate() {
            let def = sql::parse_type(&s.text).map_err(|e| bad(f, s, e))?;
            let (schema, name, kind) = match &def {
                sql::TypeDef::Enum { schema, name, .. } => (schema, name, TypeKind::Enum),
                sql::TypeDef::Composite { schema, name } => (schema, name, TypeKind::Composite),
                sql::TypeDef::Domain { schema, name } => (schema, name, TypeKind::Domain),
                sql::TypeDef::Other { schema, name } => (schema, name, TypeKind::Other),
            };
            let schema = schema.clone().unwrap_or_else(|| "public".into());
            m.types.push(TypeItem {
                file: fi,
                stmt: si,
                key: format!("{schema}.{name}"),
                name: name.clone(),
                schema,
                kind,
                checksum: normalized_checksum(&s.text),
                def,
            });
        }
    }
    for (fi, f) in p.tables.iter().enumerate() {
        let mut create = None;
        let mut adds_fk = Vec::with_capacity(f.statements.len());
        for (si, s) in f.statements.iter().enumerate() {
            if create.is_none() {
                if let crate::tables::create_table::TableStmt::CreateTable {
                    schema,
                    name,
                    references,
                } = crate::tables::create_table::classify_table_stmt(&s.text)
                {
                    create = Some((si, table_key(&schema, &name), references));
                    adds_fk.push(false);
                    continue;
                }
            }
            adds_fk.push(crate::tables::create_table::adds_foreign_key(&s.text));
        }
        if let Some((si, key, references)) = create {
            // read once here, for a deployment that creates the table in a
            // REFERENCES cycle (its foreign keys added after every table)
            let split = if references.is_empty() {
                None
            } else {
                let text = &f.statements[si].text;
                Some(
                    crate::tables::create_table::split_foreign_keys(text, &references)
                        .map_err(|e| e.at(&f.path, f.statements[si].line))?,
                )
            };
            m.tables.push(TableItem {
                file: fi,
                create: si,
                key,
                references: references.iter().map(|(s, n)| table_key(s, n)).collect(),
                adds_fk,
                split,
            });
        }
    }
    m.migrations = p
        .migrations
        .iter()
        .zip(judged)
        .map(|(f, j)| MigrationItem {
            autocommit: f
                .statements
                .iter()
                .map(|s| sql::needs_autocommit(&s.text))
                .collect(),
            refused: j.refused,
            extensions: j.uses,
            effects: f
                .runnable()
                .flat_map(|(_, s)| sql::effects::effects(&s.text))
                .collect(),
        })
        .collect();
    m.inserts = p
        .seeders
        .iter()
        .map(|f| {
            f.statements
                .iter()
                .enumerate()
                .filter_map(|(i, s)| crate::seed::parse_insert(&s.text).map(|ins| (i, ins)))
                .collect()
        })
        .collect();
    let all: String = p
        .tables
        .iter()
        .map(|f| format!("{}\n{}\n", f.path, f.checksum))
        .collect();
    m.tables_checksum = sha256_hex(all.as_bytes());
    Ok(m)
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checksum of a statement or file for change detection.
pub fn normalized_checksum(sql_text: &str) -> String {
    sha256_hex(sql::normalize(sql_text).as_bytes())
}

fn stem(name: &str) -> &str {
    name.strip_suffix(".pssql")
        .or_else(|| name.strip_suffix(".pgsql"))
        .or_else(|| name.strip_suffix(".sql"))
        .unwrap_or(name)
}

fn parse_files(folder: &str, files: &[SchemaFile]) -> Result<Vec<SqlFile>, MigratorError> {
    files
        .iter()
        .map(|f| {
            let path = format!("{folder}/{}", f.name);
            let statements = sql::split_statements(&f.content).map_err(|e| e.in_file(&path))?;
            Ok(SqlFile {
                checksum: normalized_checksum(&f.content),
                path,
                statements,
                wrapper: None,
            })
        })
        .collect()
}

/// Names people give extensions that PostgreSQL calls otherwise (the
/// pgvector project's extension is `vector`).
const EXTENSION_ALIASES: &[(&str, &str)] = &[
    ("pgvector", "vector"),
    ("pg_vector", "vector"),
    ("uuid_ossp", "uuid-ossp"),
    ("uuidossp", "uuid-ossp"),
];

/// The extension PostgreSQL knows under the file's name.
fn extension_alias(name: &str) -> &str {
    EXTENSION_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| real)
}

fn extension(f: &SchemaFile) -> Result<Extension, MigratorError> {
    let path = format!("extensions/{}", f.name);
    let file_name = f.name.rsplit('/').next().unwrap_or_default();
    let name = extension_alias(stem(file_name)).to_owned();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(MigratorError::BadRequest(format!(
            "{path}: extension names may contain only letters, digits, '_' and '-'"
        )));
    }
    let header = |key: &str| {
        f.content.lines().find_map(|l| {
            let rest = l.trim().strip_prefix("--")?.trim();
            let (k, v) = rest.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().to_owned())
        })
    };
    let version = header("version").filter(|v| !v.is_empty());
    let schema = header("schema").filter(|v| !v.is_empty());
    if let Some(s) = &schema {
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(MigratorError::BadRequest(format!(
                "{path}: invalid -- schema: {s:?}"
            )));
        }
    }
    Ok(Extension {
        path,
        name,
        version,
        schema,
    })
}

/// Parse an archive's schema. Function files must hold parseable
/// CREATE FUNCTION/PROCEDURE statements and types/ files CREATE TYPE/DOMAIN.
pub fn parse(schema: &Schema) -> Result<Parsed, MigratorError> {
    let mut parsed = Parsed {
        extensions: schema
            .extensions
            .iter()
            .map(extension)
            .collect::<Result<_, _>>()?,
        types: parse_files("types", &schema.types)?,
        tables: parse_files("tables", &schema.tables)?,
        migrations: parse_files("migrations", &schema.migrations)?,
        functions: parse_files("functions", &schema.functions)?,
        seeders: parse_files("seeders", &schema.seeders)?,
        declared: None,
        checksum: schema.checksum.clone(),
        functions_folder: schema.has_folder("functions"),
        no_body_check: schema
            .functions
            .iter()
            .map(|f| {
                f.content
                    .lines()
                    .any(|l| l.trim().eq_ignore_ascii_case(NO_BODY_CHECK))
            })
            .collect(),
        model: Model::default(),
    };
    let (extension_uses, judged) = guard_files(&mut parsed)?;
    let model = Model {
        extension_uses,
        ..model(&parsed, judged)?
    };
    let declared = if parsed.tables.is_empty() {
        None
    } else {
        Some(crate::tables::reader::read_tables(&parsed.tables)?)
    };
    Ok(Parsed {
        declared,
        model,
        ..parsed
    })
}

/// Read an uploaded archive under the caps and parse it.
pub fn from_upload(raw: &[u8], limits: &Limits) -> Result<Parsed, MigratorError> {
    let schema = archive::read_schema(raw, limits).map_err(|e| match e {
        ArchiveError::TooLarge(m) => {
            MigratorError::PayloadTooLarge(format!("schema archive rejected: {m}"))
        }
        ArchiveError::Invalid(m) => {
            MigratorError::BadRequest(format!("schema archive rejected: {m}"))
        }
    })?;
    // (an empty functions/ folder says something: drop the functions)
    if schema.is_empty() && !schema.has_folder("functions") {
        return Err(MigratorError::BadRequest(
            "schema archive holds no .sql, .pssql or .pgsql file in extensions/, types/, tables/, migrations/, functions/ or seeders/".into(),
        ));
    }
    parse(&schema)
}

/// An archive kept by the gateway itself (stored schema versions).
pub fn from_stored(raw: &[u8], limits: &Limits, what: &str) -> Result<Parsed, MigratorError> {
    let schema = archive::read_schema(raw, limits)
        .map_err(|e| MigratorError::Internal(format!("{what} is unreadable: {e}")))?;
    parse(&schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> SchemaFile {
        SchemaFile {
            name: name.into(),
            content: content.into(),
        }
    }

    #[test]
    fn extension_headers() {
        let e = extension(&file(
            "vector.sql",
            "-- Vector search\n-- version: 0.5.0\n-- schema: extensions\n",
        ))
        .unwrap();
        assert_eq!(e.name, "vector");
        assert_eq!(e.version.as_deref(), Some("0.5.0"));
        assert_eq!(e.schema.as_deref(), Some("extensions"));
        let e = extension(&file("uuid-ossp.pssql", "-- UUID generation\n")).unwrap();
        assert_eq!(
            (e.name.as_str(), e.version, e.schema),
            ("uuid-ossp", None, None)
        );
        assert!(extension(&file("bad name.sql", "")).is_err());
        assert!(extension(&file("x.sql", "-- schema: a;drop\n")).is_err());
    }

    #[test]
    fn checksums_ignore_formatting() {
        assert_eq!(
            normalized_checksum("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;"),
            normalized_checksum(
                "create   function f()\n returns INT as $$select 1$$ language SQL -- note\n;"
            )
        );
        assert_ne!(
            normalized_checksum("SELECT 'a'"),
            normalized_checksum("SELECT 'A'")
        );
    }
}
