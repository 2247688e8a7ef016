//! `extensions/`: the file name is the extension's name (or a well-known
//! alias: `pgvector` is `vector`); `-- version:` and `-- schema:` headers say
//! which and where. [`plan`] (pure) decides from
//! what the server has installed and offers; an extension it does not offer
//! fails the deployment naming it. A real deployment installs them with the
//! admin role before running as the platform's role ([`preinstall`]); inside
//! the deployment's transaction they are then already there. A dry run runs
//! as the platform's role only: it installs trusted extensions inside its
//! rolled-back transaction and lists the others.

use std::collections::HashSet;

use slog::info;
use stonescriptdb_shared::names::quote_ident;
use tokio_postgres::GenericClient;

use super::Run;
use crate::error::{pg_message, MigratorError, StepFailure};
use crate::schema::{Extension, Parsed};

/// What happens to one declared extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Installed already.
    Present,
    /// Install it with this SQL.
    Install(String),
    /// The server does not offer it; `nearest` is a name it offers that is
    /// one or two letters away, if any.
    Unavailable { nearest: Option<String> },
}

/// `CREATE EXTENSION` for `ext` (and its schema).
pub fn create_sql(ext: &Extension) -> String {
    let mut sql_text = String::new();
    if let Some(s) = &ext.schema {
        sql_text.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {};\n",
            quote_ident(s)
        ));
    }
    sql_text.push_str(&format!(
        "CREATE EXTENSION IF NOT EXISTS {}",
        quote_ident(&ext.name)
    ));
    if let Some(s) = &ext.schema {
        sql_text.push_str(&format!(" WITH SCHEMA {}", quote_ident(s)));
    }
    if let Some(v) = &ext.version {
        sql_text.push_str(&format!(" VERSION '{}'", v.replace('\'', "''")));
    }
    sql_text
}

pub fn plan(
    declared: &[Extension],
    installed: &HashSet<String>,
    available: &HashSet<String>,
) -> Vec<Action> {
    declared
        .iter()
        .map(|e| {
            if installed.contains(&e.name) {
                Action::Present
            } else if available.contains(&e.name) {
                Action::Install(create_sql(e))
            } else {
                Action::Unavailable {
                    nearest: stonescriptdb_shared::names::nearest(
                        &e.name,
                        available.iter().map(String::as_str),
                        2,
                    )
                    .map(str::to_owned),
                }
            }
        })
        .collect()
}

/// What the server has installed of the declared extensions, and every
/// extension it offers (for "did you mean").
async fn observe(
    c: &impl GenericClient,
    declared: &[Extension],
) -> Result<(HashSet<String>, HashSet<String>), tokio_postgres::Error> {
    let names: Vec<&str> = declared.iter().map(|e| e.name.as_str()).collect();
    let row = c
        .query_one(
            "SELECT ARRAY(SELECT extname::text FROM pg_extension WHERE extname = ANY($1)),
                    ARRAY(SELECT name::text FROM pg_available_extensions ORDER BY name)",
            &[&names],
        )
        .await?;
    let installed: Vec<String> = row.get(0);
    let available: Vec<String> = row.get(1);
    Ok((
        installed.into_iter().collect(),
        available.into_iter().collect(),
    ))
}

/// The message of an extension the server does not offer.
fn unavailable_message(ext: &Extension, nearest: Option<&str>) -> String {
    let mut m = format!(
        "extension \"{}\" is not available on this PostgreSQL server (install the package that provides it)",
        ext.name
    );
    if let Some(n) = nearest {
        m.push_str(&format!(
            "; the server offers \"{n}\": name the file {n}.sql"
        ));
    }
    m
}

fn failure(
    database: &str,
    ext: &Extension,
    e: Option<&tokio_postgres::Error>,
    nearest: Option<&str>,
) -> MigratorError {
    let message = match e {
        None => unavailable_message(ext, nearest),
        Some(_) => format!("installing extension \"{}\" failed", ext.name),
    };
    let db = e.and_then(|e| e.as_db_error());
    let cause = e.map(pg_message);
    MigratorError::Migration(Box::new(StepFailure {
        database: database.to_owned(),
        file: Some(ext.path.clone()),
        message: match &cause {
            Some(c) => format!("{message}: {}: {c}", ext.path),
            None => message,
        },
        sqlstate: db.map(|d| d.code().code().to_owned()),
        detail: db.and_then(|d| d.detail().map(str::to_owned)),
        hint: db.and_then(|d| d.hint().map(str::to_owned)),
        cause,
        ..StepFailure::default()
    }))
}

/// Install the schema's extensions over an admin connection, before a
/// deployment that runs as the platform's own (unprivileged) role. Returns
/// how many were installed.
pub async fn preinstall(
    admin_db: &tokio_postgres::Client,
    database: &str,
    schema: &Parsed,
) -> Result<u64, MigratorError> {
    let Some(first) = schema.extensions.first() else {
        return Ok(0);
    };
    let (installed, available) = observe(admin_db, &schema.extensions)
        .await
        .map_err(|e| failure(database, first, Some(&e), None))?;
    let mut n = 0;
    for (ext, action) in
        schema
            .extensions
            .iter()
            .zip(plan(&schema.extensions, &installed, &available))
    {
        match action {
            Action::Present => {}
            Action::Unavailable { nearest } => {
                return Err(failure(database, ext, None, nearest.as_deref()))
            }
            Action::Install(sql_text) => {
                admin_db
                    .batch_execute(&sql_text)
                    .await
                    .map_err(|e| failure(database, ext, Some(&e), None))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

pub async fn apply(run: &mut Run<'_>, schema: &Parsed) -> Result<(), MigratorError> {
    if schema.extensions.is_empty() {
        return Ok(());
    }
    let (installed, available) = observe(&run.tx, &schema.extensions).await.map_err(|e| {
        run.fail(
            None,
            None,
            "reading the installed extensions failed".into(),
            Some(&e),
        )
    })?;
    let dry = run.plan.is_some();
    for (ext, action) in
        schema
            .extensions
            .iter()
            .zip(plan(&schema.extensions, &installed, &available))
    {
        let sql_text = match action {
            Action::Present => continue,
            Action::Unavailable { nearest } => {
                return Err(failure(run.database, ext, None, nearest.as_deref()))
            }
            Action::Install(sql_text) => sql_text,
        };
        run.note("extensions", None, &ext.path, "new extension", &sql_text);
        if dry {
            run.tx
                .batch_execute("SAVEPOINT sdg_extension")
                .await
                .map_err(|e| run.fail(None, None, "gateway bookkeeping failed".into(), Some(&e)))?;
        }
        match run.tx.batch_execute(&sql_text).await {
            Ok(()) => {}
            Err(e)
                if dry
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                run.tx
                    .batch_execute("ROLLBACK TO SAVEPOINT sdg_extension")
                    .await
                    .map_err(|e| {
                        run.fail(None, None, "gateway bookkeeping failed".into(), Some(&e))
                    })?;
                run.note(
                    "extensions",
                    None,
                    &ext.path,
                    "installed by the gateway's admin role at deployment (a dry run has only the platform role's rights, so later steps that need it may fail here)",
                    &sql_text,
                );
                continue;
            }
            Err(e) => return Err(failure(run.database, ext, Some(&e), None)),
        }
        run.report.extensions_installed += 1;
        run.changelog("extension", &ext.name, "installed", None)
            .await?;
        info!(run.log, "extension installed"; "database" => run.database, "extension" => &ext.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, version: Option<&str>, schema: Option<&str>) -> Extension {
        Extension {
            path: format!("extensions/{name}.sql"),
            name: name.into(),
            version: version.map(str::to_owned),
            schema: schema.map(str::to_owned),
        }
    }

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn installed_ones_are_left_available_ones_installed_others_refused() {
        let declared = [
            ext("uuid-ossp", None, None),
            ext("pgcrypto", None, None),
            ext("vector", None, None),
            ext("hstor", None, None),
        ];
        let p = plan(
            &declared,
            &set(&["uuid-ossp"]),
            &set(&["uuid-ossp", "pgcrypto", "hstore"]),
        );
        assert_eq!(p[0], Action::Present);
        assert_eq!(
            p[1],
            Action::Install("CREATE EXTENSION IF NOT EXISTS \"pgcrypto\"".into())
        );
        assert_eq!(p[2], Action::Unavailable { nearest: None });
        // a near miss names what the server offers
        assert_eq!(
            p[3],
            Action::Unavailable {
                nearest: Some("hstore".into())
            }
        );
        let m = unavailable_message(&declared[3], Some("hstore"));
        assert!(
            m.contains("\"hstor\" is not available") && m.contains("offers \"hstore\""),
            "{m}"
        );
    }

    #[test]
    fn version_and_schema_headers_shape_the_statement() {
        assert_eq!(
            create_sql(&ext("hstore", Some("1.8"), Some("ext"))),
            "CREATE SCHEMA IF NOT EXISTS \"ext\";\nCREATE EXTENSION IF NOT EXISTS \"hstore\" WITH SCHEMA \"ext\" VERSION '1.8'"
        );
    }
}
