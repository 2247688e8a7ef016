//! Per-platform PostgreSQL roles: `sdg_{platform}_owner` has the rights
//! inside the platform's databases (which belong to the gateway's role:
//! `Admin::settle`) and runs the SQL it uploads (migrations, functions,
//! seeders), never as superuser; `sdg_{platform}_app`, a member of it, is what the
//! router's `/call` connects as. Their generated passwords are recorded with
//! the platform in the control catalog (readable by the gateway's admin role
//! only), never logged. Dry runs of a platform that has no roles yet use a
//! throwaway role with the same attributes.

use std::io::Read;
use stonescriptdb_shared::names::quote_literal;

use stonescriptdb_shared::names::{self, quote_ident};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use stonescriptdb_shared::auth::Grant;

use crate::catalog::{Platform, SCRATCH_PREFIX};
use crate::error::{pg_message, MigratorError};
use crate::state::State;

/// Attributes of every role the gateway creates for platforms.
const ATTRIBUTES: &str = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

/// 24 random bytes as hex.
pub fn random_hex() -> Result<String, MigratorError> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| MigratorError::Internal(format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new platform's record (role names and generated passwords).
pub fn new_platform(name: &str, v2: bool) -> Result<Platform, MigratorError> {
    let (owner_role, app_role) =
        names::platform_roles(name).map_err(|e| MigratorError::BadRequest(e.to_string()))?;
    Ok(Platform {
        name: name.to_owned(),
        owner_role,
        owner_password: random_hex()?,
        app_role,
        app_password: random_hex()?,
        v2,
    })
}

/// The platform, recorded in the catalog if it is new, with its roles
/// present in PostgreSQL (created again if someone dropped them). A new
/// platform whose name is an existing one's plus `_…` (whose databases
/// would fall under that one's names) needs the admin token when tokens
/// are configured: nobody reserves another platform's tenants by
/// registering a name.
pub async fn ensure_platform(
    state: &State,
    admin: &Client,
    grant: &Grant,
    name: &str,
) -> Result<Platform, MigratorError> {
    let catalog = state.catalog()?;
    let p = match catalog.platform(name).await? {
        Some(p) => p,
        None => {
            if !grant.admin && catalog.extends_a_platform(name).await? {
                return Err(MigratorError::Forbidden(format!(
                    "platform {name} extends the name of a registered platform: registering it needs the admin token (ADMIN_TOKEN)"
                )));
            }
            catalog
                .insert_platform(&new_platform(name, false)?)
                .await?
                .0
        }
    };
    ensure_roles(admin, &p, state.platform_connection_limit).await?;
    Ok(p)
}

/// `ALTER ROLE … CONNECTION LIMIT`: a platform role's limit set again.
pub fn set_limit(role: &str, limit: i32) -> String {
    format!("ALTER ROLE {} CONNECTION LIMIT {limit}", quote_ident(role))
}

/// Create the platform's roles when missing, each with `CONNECTION LIMIT
/// limit` (`PLATFORM_CONNECTION_LIMIT`; set again on a role whose limit
/// differs). A role that exists keeps its password (see [`set_passwords`]).
pub async fn ensure_roles(admin: &Client, p: &Platform, limit: i32) -> Result<(), MigratorError> {
    let existing: Vec<(String, i32)> = admin
        .query(
            "SELECT rolname::text, rolconnlimit FROM pg_roles WHERE rolname = ANY($1)",
            &[&vec![p.owner_role.clone(), p.app_role.clone()]],
        )
        .await
        .map_err(|e| MigratorError::DatabaseUnavailable(pg_message(&e)))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let has = |role: &str| existing.iter().find(|(r, _)| r == role).map(|(_, l)| *l);
    let mut statements = Vec::new();
    for (role, password, member_of) in [
        (&p.owner_role, &p.owner_password, None),
        (&p.app_role, &p.app_password, Some(&p.owner_role)),
    ] {
        match has(role) {
            None => statements.push(format!(
                "CREATE ROLE {} {ATTRIBUTES} CONNECTION LIMIT {limit} PASSWORD {}{}",
                quote_ident(role),
                quote_literal(password),
                member_of
                    .map(|o| format!(" IN ROLE {}", quote_ident(o)))
                    .unwrap_or_default()
            )),
            Some(l) if l != limit => statements.push(set_limit(role, limit)),
            Some(_) => {}
        }
    }
    for s in statements {
        match admin.batch_execute(&s).await {
            Ok(()) => {}
            // created concurrently by another migrator request
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => {
                return Err(MigratorError::DatabaseUnavailable(format!(
                "cannot create the roles of platform {} (the gateway's role needs CREATEROLE): {}",
                p.name,
                pg_message(&e)
            )))
            }
        }
    }
    Ok(())
}

/// Give roles that existed before the catalog recorded them the passwords
/// it recorded (an older installation's roles, imported without their file).
pub async fn set_passwords(admin: &Client, p: &Platform) -> Result<(), MigratorError> {
    for (role, password) in [
        (&p.owner_role, &p.owner_password),
        (&p.app_role, &p.app_password),
    ] {
        admin
            .batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                quote_ident(role),
                quote_literal(password)
            ))
            .await
            .map_err(|e| {
                MigratorError::DatabaseUnavailable(format!(
                    "cannot set the password of {role}: {}",
                    pg_message(&e)
                ))
            })?;
    }
    Ok(())
}

/// A throwaway role with a platform owner's attributes (and no other
/// rights), for the dry run of a platform that has no roles yet.
pub async fn throwaway_role(admin: &Client) -> Result<(String, String), MigratorError> {
    let name = format!("{SCRATCH_PREFIX}{}", &random_hex()?[..16]);
    let password = random_hex()?;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {} {ATTRIBUTES} PASSWORD {}",
            quote_ident(&name),
            quote_literal(&password)
        ))
        .await
        .map_err(|e| {
            MigratorError::DatabaseUnavailable(format!(
                "cannot create a role for the dry run (the gateway's role needs CREATEROLE): {}",
                pg_message(&e)
            ))
        })?;
    Ok((name, password))
}

pub async fn drop_role(admin: &Client, name: &str) {
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(name)))
        .await;
}
