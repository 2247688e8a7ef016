//! The schema model: an uploaded archive's files parsed into statements per
//! folder (`extensions/ types/ tables/ migrations/ functions/ seeders/`), each
//! file with a checksum over its normalized text. Parsing problems are the
//! client's (400), reported with the file and line.

use sha2::{Digest, Sha256};

use crate::archive::{self, ArchiveError, Limits, Schema, SchemaFile};
use crate::error::MigratorError;
use crate::sql;

pub use crate::sql::SqlFile;

/// An `extensions/` entry: file name = extension name, optional headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub path: String,
    pub name: String,
    pub version: Option<String>,
    pub schema: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Parsed {
    pub extensions: Vec<Extension>,
    pub types: Vec<SqlFile>,
    pub tables: Vec<SqlFile>,
    pub migrations: Vec<SqlFile>,
    pub functions: Vec<SqlFile>,
    pub seeders: Vec<SqlFile>,
    /// `tables/` read into the table model; None without a `tables/` folder.
    pub declared: Option<crate::tables::ddl::Declared>,
    /// The archive's checksum over its sorted files (`archive::Schema::checksum`).
    pub checksum: String,
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
        .or_else(|| name.strip_suffix(".sql"))
        .unwrap_or(name)
}

fn parse_files(folder: &str, files: &[SchemaFile]) -> Result<Vec<SqlFile>, MigratorError> {
    files
        .iter()
        .map(|f| {
            let path = format!("{folder}/{}", f.name);
            let statements = sql::split_statements(&f.content)
                .map_err(|e| MigratorError::BadRequest(format!("{path}: {e}")))?;
            Ok(SqlFile {
                checksum: normalized_checksum(&f.content),
                path,
                statements,
            })
        })
        .collect()
}

fn extension(f: &SchemaFile) -> Result<Extension, MigratorError> {
    let path = format!("extensions/{}", f.name);
    let name = stem(&f.name).to_owned();
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
    let parsed = Parsed {
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
    };
    for f in &parsed.types {
        for s in &f.statements {
            sql::parse_type(&s.text).map_err(|e| {
                MigratorError::BadRequest(format!("{} line {}: {}", f.path, s.line, e.message))
            })?;
        }
    }
    for f in &parsed.functions {
        for s in &f.statements {
            if is_routine(&s.text) {
                sql::parse_routine(&s.text).map_err(|e| {
                    MigratorError::BadRequest(format!("{} line {}: {}", f.path, s.line, e.message))
                })?;
            }
        }
    }
    let declared = if parsed.tables.is_empty() {
        None
    } else {
        Some(crate::tables::ddl::read_tables(&parsed.tables)?)
    };
    Ok(Parsed { declared, ..parsed })
}

/// Does this statement create a function or procedure?
pub fn is_routine(stmt: &str) -> bool {
    let norm = sql::normalize(stmt);
    norm.starts_with("create function ")
        || norm.starts_with("create or replace function ")
        || norm.starts_with("create procedure ")
        || norm.starts_with("create or replace procedure ")
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
    if schema.is_empty() {
        return Err(MigratorError::BadRequest(
            "schema archive holds no .sql or .pssql file in extensions/, types/, tables/, migrations/, functions/ or seeders/".into(),
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
