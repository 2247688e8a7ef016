//! Bringing what an older version created to today's rights, once at each
//! start (idempotently), and saying what that will change
//! (`--check-upgrade`):
//!
//! - databases owned by a platform's role become the gateway's, with the
//!   platform role's rights inside them (`Admin::settle`), so `DROP
//!   DATABASE` and `ALTER DATABASE` fail in PostgreSQL for platform SQL;
//! - platform roles get `PLATFORM_CONNECTION_LIMIT`;
//! - platforms whose stored schema declares an extension they may no longer
//!   have (not trusted, not in `EXTENSIONS_ALLOWED`) are named with their
//!   databases: their next deployment is refused until the operator lists
//!   it or the schema drops it. Installed extensions stay.

use std::collections::HashSet;

use tokio_postgres::GenericClient;

use crate::admin::Admin;
use crate::error::{pg_message, MigratorError};

/// Catalog databases (ready, not scratch) whose rights are not today's:
/// not owned by the gateway's role, or their owner role lacks `CREATE` on
/// them. Run on a connection to the catalog database (`pg_database` and
/// `pg_roles` are shared by every database). Columns: name, owner role,
/// connections allowed (false for a template).
const UNSETTLED_SQL: &str = "
SELECT d.name, d.owner_role, pd.datallowconn
FROM databases d JOIN pg_database pd ON pd.datname = d.name
WHERE d.state = 'ready' AND d.kind <> 'scratch'
  AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = d.owner_role)
  AND (pd.datdba <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
       OR NOT has_database_privilege(d.owner_role, d.name, 'CREATE'))
ORDER BY d.name";

/// Platform roles whose connection limit differs from `$1`.
const LIMITS_SQL: &str = "
SELECT r.rolname::text, r.rolconnlimit FROM platforms p
JOIN pg_roles r ON r.rolname IN (p.owner_role, p.app_role)
WHERE r.rolconnlimit <> $1 ORDER BY 1";

/// One database to settle: name, owner role, connections allowed.
pub type Unsettled = (String, String, bool);

fn unavailable(e: tokio_postgres::Error) -> MigratorError {
    MigratorError::DatabaseUnavailable(pg_message(&e))
}

/// What [`UNSETTLED_SQL`] finds.
pub async fn unsettled(catalog: &impl GenericClient) -> Result<Vec<Unsettled>, MigratorError> {
    Ok(catalog
        .query(UNSETTLED_SQL, &[])
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Settle every database [`unsettled`] lists (a template is opened to
/// connections for the moment it takes) and set the platform roles'
/// connection limit. Returns a line per change.
pub async fn settle_all(
    admin: &Admin,
    catalog: &impl GenericClient,
    limit: i32,
) -> Result<Vec<String>, MigratorError> {
    let client = admin.connect(None).await?;
    let mut done = Vec::new();
    for (name, owner, allow) in unsettled(catalog).await? {
        let db = stonescriptdb_shared::names::quote_ident(&name);
        if !allow {
            client
                .batch_execute(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
                .await
                .map_err(unavailable)?;
        }
        let settled = admin.settle(&client, &name, &owner).await;
        if !allow {
            client
                .batch_execute(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
                .await
                .map_err(unavailable)?;
        }
        settled?;
        done.push(format!(
            "database {name} now belongs to the gateway's role; {owner} has CONNECT, TEMPORARY, CREATE on it and owns its public schema"
        ));
    }
    for (role, was) in limits(catalog, limit).await? {
        client
            .batch_execute(&crate::roles::set_limit(&role, limit))
            .await
            .map_err(unavailable)?;
        done.push(format!("role {role}: connection limit {was} -> {limit}"));
    }
    Ok(done)
}

/// Platform roles whose connection limit is not `limit`: (role, limit now).
async fn limits(
    catalog: &impl GenericClient,
    limit: i32,
) -> Result<Vec<(String, i32)>, MigratorError> {
    Ok(catalog
        .query(LIMITS_SQL, &[&limit])
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// `--check-upgrade`'s lines about rights, computed without changing
/// anything: what [`settle_all`] would change, and the platforms whose
/// stored schema declares an extension they may no longer have, with the
/// databases whose next deployment would be refused.
pub async fn check(
    catalog: &impl GenericClient,
    admin_db: &impl GenericClient,
    limit: i32,
    allowed: &[String],
    limits_archive: &crate::archive::Limits,
) -> Result<Vec<String>, MigratorError> {
    let mut lines: Vec<String> = unsettled(catalog)
        .await?
        .into_iter()
        .map(|(name, owner, _)| {
            format!("database {name}: will belong to the gateway's role; {owner} keeps CONNECT, TEMPORARY, CREATE and the public schema (platform SQL can no longer drop or alter the database)")
        })
        .collect();
    for (role, was) in limits(catalog, limit).await? {
        lines.push(format!("role {role}: connection limit {was} -> {limit}"));
    }
    let offered = crate::deploy::extension_offers(admin_db)
        .await
        .map_err(unavailable)?;
    // The schema each group of databases deploys next: a v1 platform's
    // latest kept archive, each v2 schema's latest version.
    let rows = catalog
        .query(
            "SELECT a.platform, NULL::text, a.archive,
                    ARRAY(SELECT d.name FROM databases d WHERE d.platform = a.platform
                          AND d.kind IN ('v1', 'adopted') AND d.state = 'ready' ORDER BY 1)
             FROM v1_archives a
             WHERE a.version = (SELECT max(version) FROM v1_archives x WHERE x.platform = a.platform)
             UNION ALL
             SELECT s.platform, s.schema_name, s.archive,
                    ARRAY(SELECT d.name FROM databases d WHERE d.platform = s.platform
                          AND d.schema_name = s.schema_name AND d.kind = 'v2' AND d.state = 'ready' ORDER BY 1)
             FROM schema_versions s
             WHERE s.version = (SELECT max(version) FROM schema_versions x
                                WHERE x.platform = s.platform AND x.schema_name = s.schema_name)
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(unavailable)?;
    for r in &rows {
        let (platform, schema): (String, Option<String>) = (r.get(0), r.get(1));
        let raw: Vec<u8> = r.get(2);
        let databases: Vec<String> = r.get(3);
        let what = match &schema {
            Some(s) => format!("platform {platform}, schema {s}"),
            None => format!("platform {platform}"),
        };
        let Ok(parsed) = crate::schema::from_stored(&raw, limits_archive, &what) else {
            lines.push(format!("{what}: its stored schema could not be read"));
            continue;
        };
        let names = crate::deploy::extension_uses(&parsed, &[]);
        if let Some(why) =
            crate::deploy::extension_refused(&names, &offered, allowed, &HashSet::new())
        {
            lines.push(format!(
                "{what}: the next deployment of {} will be refused: {why}",
                if databases.is_empty() {
                    "its databases".to_owned()
                } else {
                    databases.join(", ")
                }
            ));
        }
    }
    Ok(lines)
}
