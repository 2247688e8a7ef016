//! `extensions/`: the file name is the extension's name (or a well-known
//! alias: `pgvector` is `vector`); `-- version:` and `-- schema:` headers say
//! which and where. [`plan`] (pure) decides from
//! what the server has installed and offers; an extension it does not offer
//! fails the deployment naming it.
//!
//! Which extensions a platform gets ([`refused`], pure): those PostgreSQL
//! marks trusted (or that need no superuser), plus those the operator lists
//! in `EXTENSIONS_ALLOWED`; any other named in `extensions/` or in a
//! `CREATE`/`ALTER EXTENSION` (with what a `CASCADE` would install) is 400
//! before anything runs. Trusted ones are installed by the platform's own
//! role inside the deployment's transaction; only allowed untrusted ones
//! are installed by the admin role, before it ([`preinstall`]). A dry run
//! runs as the platform's role only and lists those.

use std::collections::{HashMap, HashSet};

use stonescriptdb_shared::names::quote_ident;
use stonescriptdb_shared::wire::PlanStep;
use tokio_postgres::GenericClient;

use crate::error::{pg_message, MigratorError};
use crate::exec::Run;
use crate::schema::{Extension, ExtensionUse, Parsed};
use crate::step::{At, Counter, Done, Phase, Refusal, Sql, Step};

/// What happens to one declared extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Installed already.
    Present,
    /// Install it with this SQL.
    Install(Vec<String>),
    /// The server does not offer it; `nearest` is a name it offers that is
    /// one or two letters away, if any.
    Unavailable { nearest: Option<String> },
}

/// `CREATE EXTENSION` for `ext` (and its schema), one statement each.
pub fn create_sql(ext: &Extension) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &ext.schema {
        out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(s)));
    }
    let mut create = format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(&ext.name));
    if let Some(s) = &ext.schema {
        create.push_str(&format!(" WITH SCHEMA {}", quote_ident(s)));
    }
    if let Some(v) = &ext.version {
        create.push_str(&format!(
            " VERSION {}",
            stonescriptdb_shared::names::quote_literal(v)
        ));
    }
    out.push(create);
    out
}

/// What the server says of an extension it offers: may a role that is not
/// a superuser install it (trusted, or no superuser needed), and what its
/// default version requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    pub trusted: bool,
    pub requires: Vec<String>,
}

/// Every extension the server offers, by name.
pub async fn offers(
    c: &impl GenericClient,
) -> Result<HashMap<String, Offer>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT e.name::text, coalesce(v.trusted OR NOT v.superuser, false),
                    coalesce(v.requires::text[], '{}')
             FROM pg_available_extensions e
             LEFT JOIN pg_available_extension_versions v
               ON v.name = e.name AND v.version = e.default_version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let offer = Offer {
                trusted: r.get(1),
                requires: r.get(2),
            };
            (r.get(0), offer)
        })
        .collect())
}

/// The 400 message for the first extension a platform may not have: one
/// the server offers, PostgreSQL does not trust, and `allowed`
/// (`EXTENSIONS_ALLOWED`) does not list — named in `uses` (where, name,
/// CASCADE) or required by a `CASCADE` of one and not `installed` yet.
/// Extensions the server does not offer are left to the deployment, which
/// names them.
pub fn refused(
    uses: &[(&str, &str, bool)],
    offered: &HashMap<String, Offer>,
    allowed: &[String],
    installed: &HashSet<String>,
) -> Option<String> {
    let ok = |name: &str| trusted(offered, name) || allowed.iter().any(|a| a == name);
    for (at, name, cascade) in uses {
        let mut todo = vec![(name.to_string(), None::<String>)];
        let mut seen = HashSet::new();
        while let Some((n, via)) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if !ok(&n) {
                let via = via
                    .map(|v| format!(" (CASCADE from \"{name}\", required by \"{v}\")"))
                    .unwrap_or_default();
                return Some(format!(
                    "{at}: extension \"{n}\"{via} is not allowed: PostgreSQL does not mark it trusted and the operator has not listed it in EXTENSIONS_ALLOWED (platforms get trusted extensions only; docs/SECURITY.md)"
                ));
            }
            if *cascade {
                for r in offered
                    .get(&n)
                    .map(|o| o.requires.as_slice())
                    .unwrap_or(&[])
                {
                    if !installed.contains(r) {
                        todo.push((r.clone(), Some(n.clone())));
                    }
                }
            }
        }
    }
    None
}

/// What each declared extension needs.
pub fn decide(
    declared: &[Extension],
    installed: &HashSet<String>,
    offered: &HashMap<String, Offer>,
) -> Vec<Action> {
    declared
        .iter()
        .map(|e| {
            if installed.contains(&e.name) {
                Action::Present
            } else if offered.contains_key(&e.name) {
                Action::Install(create_sql(e))
            } else {
                Action::Unavailable {
                    nearest: stonescriptdb_shared::names::nearest(
                        &e.name,
                        offered.keys().map(String::as_str),
                        2,
                    )
                    .map(str::to_owned),
                }
            }
        })
        .collect()
}

/// May a platform's own role install `name`? Trusted (or needing no
/// superuser), or not offered at all (the deployment names that).
fn trusted(offered: &HashMap<String, Offer>, name: &str) -> bool {
    offered.get(name).is_none_or(|o| o.trusted)
}

/// What the server has installed of the declared extensions, and every
/// extension it offers ([`offers`]; their names also for "did you mean").
async fn observe_with(
    c: &impl GenericClient,
    declared: &[Extension],
) -> Result<(HashSet<String>, HashMap<String, Offer>), tokio_postgres::Error> {
    let names: Vec<&str> = declared.iter().map(|e| e.name.as_str()).collect();
    let installed = c
        .query(
            "SELECT extname::text FROM pg_extension WHERE extname = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((installed, offers(c).await?))
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
        Some(_) => installing_failed(ext),
    };
    crate::exec::failure(database, &At::file(&ext.path), &message, e)
}

fn installing_failed(ext: &Extension) -> String {
    format!("installing extension \"{}\" failed", ext.name)
}

/// Every extension a deployment of `schema` would install or change, as
/// (where, name, CASCADE): `extensions/`, `CREATE`/`ALTER EXTENSION`
/// outside `migrations/`, and those of the pending migrations (`pending`).
pub fn uses<'a>(schema: &'a Parsed, pending: &[&'a ExtensionUse]) -> Vec<(&'a str, &'a str, bool)> {
    schema
        .extensions
        .iter()
        .map(|e| (e.path.as_str(), e.name.as_str(), false))
        .chain(
            schema
                .model
                .extension_uses
                .iter()
                .chain(pending.iter().copied())
                .map(|u| (u.at.as_str(), u.name.as_str(), u.cascade)),
        )
        .collect()
}

/// Check `uses` ([`uses`]) in the database `c` is connected to against what
/// the platform may have ([`refused`]): 400 before anything runs.
pub async fn check(
    c: &impl GenericClient,
    uses: &[(&str, &str, bool)],
    allowed: &[String],
) -> Result<(), MigratorError> {
    if uses.is_empty() {
        return Ok(());
    }
    let unavailable = |e: tokio_postgres::Error| {
        MigratorError::DatabaseUnavailable(format!(
            "reading the server's extensions failed: {}",
            pg_message(&e)
        ))
    };
    let offered = offers(c).await.map_err(unavailable)?;
    let installed: HashSet<String> = c
        .query("SELECT extname::text FROM pg_extension", &[])
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    match refused(uses, &offered, allowed, &installed) {
        Some(m) => Err(MigratorError::BadRequest(m)),
        None => Ok(()),
    }
}

/// Install, over an admin connection and before a deployment that runs as
/// the platform's own role, the declared extensions that role cannot
/// install itself: those PostgreSQL does not trust, which [`check`] let
/// through because the operator allowed them. Trusted ones are left to the
/// deployment's transaction. Returns what was installed, as plan steps.
pub async fn preinstall(
    admin_db: &tokio_postgres::Client,
    database: &str,
    schema: &Parsed,
) -> Result<Vec<PlanStep>, MigratorError> {
    let Some(first) = schema.extensions.first() else {
        return Ok(Vec::new());
    };
    let (installed, offered) = observe_with(admin_db, &schema.extensions)
        .await
        .map_err(|e| failure(database, first, Some(&e), None))?;
    let mut installed_now = Vec::new();
    for (ext, action) in
        schema
            .extensions
            .iter()
            .zip(decide(&schema.extensions, &installed, &offered))
    {
        match action {
            Action::Present => {}
            Action::Unavailable { nearest } => {
                return Err(failure(database, ext, None, nearest.as_deref()))
            }
            Action::Install(_) if trusted(&offered, &ext.name) => {}
            Action::Install(statements) => {
                for sql_text in &statements {
                    admin_db
                        .execute(sql_text.as_str(), &[])
                        .await
                        .map_err(|e| failure(database, ext, Some(&e), None))?;
                }
                installed_now.push(PlanStep {
                    phase: Phase::Extensions,
                    class: None,
                    object: ext.path.clone(),
                    reason: "not trusted by PostgreSQL, allowed by EXTENSIONS_ALLOWED: installed by the gateway's admin role before the deployment".into(),
                    sql: statements,
                    allow: None,
                });
            }
        }
    }
    Ok(installed_now)
}

/// What the step reads: the declared extensions installed already, and
/// what the server offers.
#[derive(Debug, Default)]
pub struct Seen {
    pub installed: HashSet<String>,
    pub offered: HashMap<String, Offer>,
}

pub async fn observe(run: &Run<'_>, schema: &Parsed) -> Result<Seen, MigratorError> {
    if schema.extensions.is_empty() {
        return Ok(Seen::default());
    }
    let (installed, offered) = observe_with(run.tx(), &schema.extensions)
        .await
        .map_err(|e| {
            run.fail(
                &At::default(),
                "reading the installed extensions failed",
                Some(&e),
            )
        })?;
    Ok(Seen { installed, offered })
}

/// One step per extension to install, by the platform's role inside the
/// transaction. One PostgreSQL does not trust was installed by the admin
/// role before a real deployment ([`preinstall`]); a dry run, which has
/// only the platform role's rights, lists it as the admin role's.
pub fn plan(schema: &Parsed, seen: &Seen, dry_run: bool) -> Result<Vec<Step>, Refusal> {
    let mut steps = Vec::new();
    for (ext, action) in
        schema
            .extensions
            .iter()
            .zip(decide(&schema.extensions, &seen.installed, &seen.offered))
    {
        let statements = match action {
            Action::Present => continue,
            Action::Unavailable { nearest } => {
                return Err(Refusal {
                    at: At::file(&ext.path),
                    message: unavailable_message(ext, nearest.as_deref()),
                })
            }
            Action::Install(statements) => statements,
        };
        let mut step = Step::new(Phase::Extensions, &ext.path, "new extension");
        if dry_run && !trusted(&seen.offered, &ext.name) {
            step.reason = "installed by the gateway's admin role at deployment (allowed by EXTENSIONS_ALLOWED; a dry run has only the platform role's rights, so later steps that need it may fail here)".into();
            step.by_admin = true;
        }
        let failure = installing_failed(ext);
        for text in statements {
            step = step.sql(Sql::new(text, At::file(&ext.path), failure.clone()));
        }
        steps.push(
            step.done(Done::Count(Counter::ExtensionsInstalled))
                .done(Done::Changelog {
                    kind: "extension",
                    object: ext.name.clone(),
                    action: "installed".into(),
                    checksum: None,
                }),
        );
    }
    Ok(steps)
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
        let p = decide(
            &declared,
            &set(&["uuid-ossp"]),
            &offers(&[
                ("uuid-ossp", true, &[]),
                ("pgcrypto", true, &[]),
                ("hstore", true, &[]),
            ]),
        );
        assert_eq!(p[0], Action::Present);
        assert_eq!(
            p[1],
            Action::Install(vec!["CREATE EXTENSION IF NOT EXISTS \"pgcrypto\"".into()])
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
            [
                "CREATE SCHEMA IF NOT EXISTS \"ext\"",
                "CREATE EXTENSION IF NOT EXISTS \"hstore\" WITH SCHEMA \"ext\" VERSION '1.8'"
            ]
        );
    }

    #[test]
    fn the_plan_installs_trusted_ones_and_a_dry_run_lists_the_admin_roles() {
        let schema = Parsed {
            extensions: vec![
                ext("pgcrypto", None, Some("ext")),
                ext("postgis", None, None),
                ext("hstor", None, None),
            ],
            ..Default::default()
        };
        let offered = offers(&[
            ("pgcrypto", true, &[]),
            ("postgis", false, &[]),
            ("hstore", true, &[]),
        ]);
        let seen = Seen {
            installed: set(&[]),
            offered: offered.clone(),
        };
        // an extension the server does not offer refuses the deployment, naming the nearest
        let r = plan(&schema, &seen, false).unwrap_err();
        assert_eq!(r.at, At::file("extensions/hstor.sql"));
        assert!(r.message.contains("offers \"hstore\""), "{}", r.message);
        let schema = Parsed {
            extensions: schema.extensions[..2].to_vec(),
            ..Default::default()
        };
        let steps = plan(&schema, &seen, true).unwrap();
        let sql: Vec<&str> = steps[0].sql.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE SCHEMA IF NOT EXISTS \"ext\"",
                "CREATE EXTENSION IF NOT EXISTS \"pgcrypto\" WITH SCHEMA \"ext\""
            ]
        );
        assert!(!steps[0].by_admin);
        assert!(
            steps[1].by_admin,
            "a dry run lists what the admin role installs"
        );
        assert!(steps[1].reason.contains("EXTENSIONS_ALLOWED"));
        // a real deployment: the admin role installed it before
        let seen = Seen {
            installed: set(&["postgis"]),
            offered,
        };
        let steps = plan(&schema, &seen, false).unwrap();
        assert_eq!(steps.len(), 1);
    }

    fn offers(list: &[(&str, bool, &[&str])]) -> HashMap<String, Offer> {
        list.iter()
            .map(|(n, trusted, requires)| {
                let offer = Offer {
                    trusted: *trusted,
                    requires: requires.iter().map(|r| r.to_string()).collect(),
                };
                (n.to_string(), offer)
            })
            .collect()
    }

    #[test]
    fn platforms_get_trusted_extensions_and_those_the_operator_allows() {
        let offered = offers(&[
            ("pgcrypto", true, &[]),
            ("dblink", false, &[]),
            ("vector", false, &[]),
            ("postgres_fdw", false, &[]),
            ("earthdistance", true, &["cube"]),
            ("cube", true, &[]),
            ("trusted_on_fdw", true, &["postgres_fdw"]),
        ]);
        let none = HashSet::new();
        let allowed = vec!["vector".to_string()];
        let check = |uses: &[(&str, &str, bool)], installed: &HashSet<String>| {
            refused(uses, &offered, &allowed, installed)
        };
        assert_eq!(
            check(&[("extensions/pgcrypto.sql", "pgcrypto", false)], &none),
            None
        );
        assert_eq!(
            check(&[("extensions/vector.sql", "vector", false)], &none),
            None
        );
        let m = check(&[("extensions/dblink.sql", "dblink", false)], &none).unwrap();
        assert!(
            m.starts_with("extensions/dblink.sql: extension \"dblink\" is not allowed")
                && m.contains("EXTENSIONS_ALLOWED"),
            "{m}"
        );
        // what the server does not offer is named by the deployment
        assert_eq!(
            check(&[("extensions/nope.sql", "nope", false)], &none),
            None
        );
        // CASCADE: what would be installed with it is judged too
        assert_eq!(
            check(
                &[(
                    "migrations/1.sql statement 1 (line 1)",
                    "earthdistance",
                    true
                )],
                &none
            ),
            None
        );
        let m = check(&[("m", "trusted_on_fdw", true)], &none).unwrap();
        assert!(
            m.contains("\"postgres_fdw\" (CASCADE from \"trusted_on_fdw\""),
            "{m}"
        );
        // without CASCADE (or with the requirement installed) nothing more is installed
        assert_eq!(check(&[("m", "trusted_on_fdw", false)], &none), None);
        let have: HashSet<String> = ["postgres_fdw".to_string()].into();
        assert_eq!(check(&[("m", "trusted_on_fdw", true)], &have), None);
    }
}
