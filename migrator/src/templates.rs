//! Template databases of v2 schema versions (`sdg_tpl_<hash>`, one per
//! version, `IS_TEMPLATE`, `ALLOW_CONNECTIONS false`): built on first use,
//! the older versions' dropped once a newer one has its own. A new v2
//! database is a copy of its version's template (`CREATE DATABASE …
//! TEMPLATE`, a file copy instead of a deployment); if the template cannot
//! be built or copied, the database gets a full deployment instead.
//! Tracking tables are identical either way.

use std::sync::Arc;

use slog::{info, warn};
use stonescriptdb_shared::catalog::DbKind;
use stonescriptdb_shared::wire::{DeploymentReport, Operation};
use tokio::sync::Mutex;

use crate::catalog::{NewDatabase, Platform, SchemaVersion};
use crate::error::MigratorError;
use crate::provision::{self, Request};
use crate::schema::{sha256_hex, Parsed};
use crate::state::State;

/// Create `new` (a database of `schema_name` at version `v`) as a copy of
/// the version's template when it can, else by a full deployment.
pub async fn create(
    state: &State,
    platform: &Platform,
    schema_name: &str,
    v: &SchemaVersion,
    new: NewDatabase,
    parsed: &Parsed,
    req: Request<'_>,
) -> Result<DeploymentReport, MigratorError> {
    let Some((tpl, tpl_report)) = template(state, platform, schema_name, v, parsed, req).await
    else {
        return provision::create_new(state, platform, new, parsed, req).await;
    };
    let database = new.name.clone();
    match provision::clone_template(state, platform, new.clone(), &tpl, tpl_report, req).await {
        Ok(r) => Ok(r),
        Err(e @ MigratorError::DatabaseAlreadyExists(_)) => Err(e),
        Err(e) => {
            warn!(state.log, "clone from template failed; deploying in full"; "database" => &database, "error" => ?e);
            provision::create_new(state, platform, new, parsed, req).await
        }
    }
}

/// Name of the template database of one schema version.
fn template_name(platform: &str, schema_name: &str, v: &SchemaVersion) -> String {
    let h = sha256_hex(format!("{platform}/{schema_name}/{}/{}", v.version, v.checksum).as_bytes());
    format!("sdg_tpl_{}", &h[..24])
}

/// The template for this schema version, built on first use. `None` when it
/// cannot be built (the caller then deploys in full).
async fn template(
    state: &State,
    platform: &Platform,
    schema_name: &str,
    v: &SchemaVersion,
    parsed: &Parsed,
    req: Request<'_>,
) -> Option<(String, DeploymentReport)> {
    let name = template_name(&platform.name, schema_name, v);
    let lock = {
        let mut locks = state.template_locks.lock().await;
        locks
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    };
    let _guard = lock.lock().await;
    let catalog = state.catalog().ok()?;
    if let Ok(Some((tpl, report))) = catalog
        .template(&platform.name, schema_name, v.version)
        .await
    {
        if let Ok(report) = serde_json::from_value::<DeploymentReport>(report) {
            return Some((tpl, report));
        }
    }
    let new = NewDatabase {
        schema_name: Some(schema_name.to_owned()),
        schema_version: Some(v.version),
        ..NewDatabase::new(
            &name,
            &platform.name,
            DbKind::Template,
            &platform.owner_role,
        )
    };
    let req = Request {
        operation: Operation::Template,
        ..req
    };
    match provision::create_new(state, platform, new, parsed, req).await {
        Ok(report) => {
            let value = serde_json::to_value(&report).unwrap_or_default();
            if let Err(e) = catalog
                .set_template(
                    &platform.name,
                    schema_name,
                    v.version,
                    Some((&name, &value)),
                )
                .await
            {
                warn!(state.log, "could not record a template"; "template" => &name, "error" => ?e);
            }
            info!(state.log, "template built"; "template" => &name, "platform" => &platform.name, "schema" => schema_name);
            drop_superseded(state, &platform.name, schema_name, v.version).await;
            Some((name, report))
        }
        Err(e) => {
            warn!(state.log, "template could not be built; deploying in full"; "template" => &name, "error" => ?e);
            None
        }
    }
}

/// Drop the templates of a schema's older versions: new databases are
/// made from the newest one only.
async fn drop_superseded(state: &State, platform: &str, schema_name: &str, current: i32) {
    let (Ok(admin), Ok(catalog)) = (state.admin.connect(None).await, state.catalog()) else {
        return;
    };
    for v in 1..current {
        if let Ok(Some((tpl, _))) = catalog.template(platform, schema_name, v).await {
            match provision::drop_database(state, &admin, &tpl).await {
                Ok(()) => {
                    let _ = catalog.set_template(platform, schema_name, v, None).await;
                    let _ = catalog.forget(&tpl).await;
                    info!(state.log, "superseded template dropped"; "template" => &tpl);
                }
                Err(e) => {
                    warn!(state.log, "could not drop a superseded template"; "template" => &tpl, "error" => ?e)
                }
            }
        }
    }
}
