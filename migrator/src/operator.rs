//! Operator routes: `POST /admin/adopt` (attribute existing databases to a
//! platform and hand them to its roles), `POST /admin/refresh` (make every
//! router forget what it cached about a database after DDL run by hand) and
//! `GET /admin/deployments` (the deployment history). Adopt and refresh
//! need the admin token when tokens are configured; a deploy token reads
//! its own platform's history only.

use stonescriptdb_shared::catalog::DbKind;
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::{
    AdoptRequest, AdoptResponse, AdoptedDatabase, DeploymentsResponse, RefreshRequest,
    RefreshResponse,
};
use stonescriptdb_shared::wire::{AdoptStatus, RefreshStatus};

use crate::catalog::{NewDatabase, SCRATCH_PREFIX};
use crate::error::{bad_name, MigratorError};
use crate::roles;
use crate::state::{json, Answer, Req, State};

/// Databases no platform may adopt, and none is exported.
pub(crate) fn reserved(state: &State, name: &str) -> Option<&'static str> {
    if name == state.catalog_name {
        return Some("it is the gateway's control catalog");
    }
    if state.admin.admin_database() == Some(name) {
        return Some("it is the gateway's admin database (DB_NAME)");
    }
    if matches!(name, "postgres" | "template0" | "template1") {
        return Some("it is one of PostgreSQL's own databases");
    }
    if name.starts_with("sdg_tpl_") || name.starts_with(SCRATCH_PREFIX) {
        return Some("it is a database the gateway manages itself");
    }
    None
}

/// `POST /admin/adopt {platform, databases}`.
pub async fn adopt(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let body: AdoptRequest = r.json("adopt")?;
    r.grant.operator()?;
    names::validate_platform(&body.platform).map_err(bad_name)?;
    if body.databases.is_empty() {
        return Err(MigratorError::BadRequest(
            "databases lists no database to adopt".into(),
        ));
    }
    let admin = state.admin.connect(None).await?;
    let existing = state.admin.all_databases(&admin).await?;
    // Check every database before changing any.
    for db in &body.databases {
        names::validate_database_name(db).map_err(bad_name)?;
        if let Some(why) = reserved(state, db) {
            return Err(MigratorError::BadRequest(format!(
                "{db} cannot be adopted: {why}"
            )));
        }
        if existing.binary_search(db).is_err() {
            return Err(MigratorError::DatabaseNotFound(db.clone()));
        }
        if let Some(d) = state.catalog()?.database(db).await? {
            if d.platform != body.platform {
                return Err(MigratorError::DatabaseAlreadyExists(db.clone()));
            }
        }
    }
    let platform = roles::ensure_platform(state, &admin, &r.grant, &body.platform).await?;
    let mut out = Vec::new();
    for db in &body.databases {
        let tenant = names::v1_tenant_of(&body.platform, db);
        let kind = if tenant.is_some() {
            DbKind::V1
        } else {
            DbKind::Adopted
        };
        let moved = state
            .admin
            .hand_over(&admin, db, &platform.owner_role)
            .await?;
        let new = state
            .catalog()?
            .record_existing(&NewDatabase {
                tenant_id: tenant.flatten(),
                ..NewDatabase::new(db, &body.platform, kind, &platform.owner_role)
            })
            .await?;
        if !new {
            // already this platform's: its caches still go (ownership of
            // objects inside may have moved)
            state.catalog()?.announce(std::slice::from_ref(db)).await?;
        }
        out.push(AdoptedDatabase {
            database: db.clone(),
            status: if new {
                AdoptStatus::Adopted
            } else {
                AdoptStatus::Unchanged
            },
            kind,
            objects_reassigned: moved,
        });
    }
    Ok(json(
        200,
        &AdoptResponse {
            status: AdoptStatus::Adopted,
            platform: body.platform,
            databases: out,
        },
    ))
}

/// `POST /admin/refresh {database | platform}`.
pub async fn refresh(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let body: RefreshRequest = r.json("refresh")?;
    r.grant.operator()?;
    let databases: Vec<String> = match (&body.database, &body.platform) {
        (Some(db), None) => {
            names::validate_database_name(db).map_err(bad_name)?;
            if state.catalog()?.database(db).await?.is_none() {
                return Err(MigratorError::DatabaseNotFound(db.clone()));
            }
            vec![db.clone()]
        }
        (None, Some(p)) => {
            names::validate_platform(p).map_err(bad_name)?;
            crate::provision::known_platform(state, p).await?;
            state
                .catalog()?
                .databases(p, &[DbKind::V1, DbKind::V2, DbKind::Adopted], None)
                .await?
                .into_iter()
                .map(|d| d.name)
                .collect()
        }
        _ => {
            return Err(MigratorError::BadRequest(
                "give either database or platform".into(),
            ))
        }
    };
    let generation = state.catalog()?.announce(&databases).await?;
    Ok(json(
        200,
        &RefreshResponse {
            status: RefreshStatus::Announced,
            databases,
            generation,
        },
    ))
}

/// `GET /admin/deployments[?platform=][&database=][&limit=]`, newest first.
pub async fn deployments(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let (platform, database, limit) = (r.query("platform"), r.query("database"), r.query("limit"));
    if let Some(p) = &platform {
        names::validate_platform(p).map_err(bad_name)?;
    }
    if let Some(d) = &database {
        names::validate_database_name(d).map_err(bad_name)?;
    }
    let limit: i64 = match limit {
        None => 100,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                MigratorError::BadRequest(format!("limit must be 1 to 10000, got {l:?}"))
            })?,
    };
    // A deploy token sees its own platform's history only (a database of
    // another platform simply has none for it).
    let platform = if r.grant.admin {
        platform
    } else {
        if let Some(p) = &platform {
            r.grant.may(p)?;
        }
        r.grant.platform.clone()
    };
    let deployments = state
        .catalog()?
        .deployments(platform.as_deref(), database.as_deref(), limit)
        .await?;
    Ok(json(
        200,
        &DeploymentsResponse {
            count: deployments.len(),
            deployments,
        },
    ))
}
