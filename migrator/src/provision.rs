//! The one orchestration every route that deploys goes through (v1 and v2
//! alike): deploy into a database the catalog says the platform owns,
//! create a database (recorded under a lease, dropped again if its first
//! deployment fails), clone one from a template, or preview a new one in a
//! throwaway database. Every deployment is recorded in the catalog with who
//! asked, and one that changed a database is announced to routers.
//!
//! Uploaded SQL always runs as the platform's owner role, dry runs
//! included: only extensions are installed by the admin role, before a
//! real deployment (as the real deployment a dry run previews would).

use std::time::Instant;

use slog::{info, warn};
use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::names::quote_ident;
use stonescriptdb_shared::wire::{DeployStatus, DeploymentReport, Operation};
use tokio_postgres::Client;

use crate::catalog::{
    Caller, CreateRefused, Creation, Database, DeploymentStart, NewDatabase, Outcome, Platform,
    SCRATCH_PREFIX,
};
use crate::deploy::{self, Mode, Options};
use crate::error::MigratorError;
use crate::roles;
use crate::schema::Parsed;
use crate::state::State;

/// The database `name` if the catalog records it as `platform`'s, ready,
/// and of one of `kinds`; anything else (missing, another platform's, being
/// created) answers exactly like a missing database.
pub async fn owned(
    state: &State,
    platform: &str,
    name: &str,
    kinds: &[DbKind],
) -> Result<Database, MigratorError> {
    match state.catalog()?.database(name).await? {
        Some(d)
            if d.platform == platform && d.state == DbState::Ready && kinds.contains(&d.kind) =>
        {
            Ok(d)
        }
        _ => Err(MigratorError::DatabaseNotFound(name.to_owned())),
    }
}

/// The platform as recorded, or 404 `platform_not_found`.
pub async fn known_platform(state: &State, name: &str) -> Result<Platform, MigratorError> {
    state.catalog()?.platform(name).await?.ok_or_else(|| {
        MigratorError::PlatformNotFound(format!(
            "platform {name} is not known to the gateway (register it first)"
        ))
    })
}

/// What a deployment record says about the request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub operation: Operation,
    pub archive_sha256: Option<&'a str>,
    pub caller: &'a Caller,
    /// The database was created for this deployment (a dry run's: would
    /// be): it is answered and recorded `created` (`would_create`).
    pub new_database: bool,
}

fn counts(report: &DeploymentReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("plan");
        o.remove("database");
        o.remove("status");
    }
    v
}

/// The v2 schema version a deployment brings its database to, and whether
/// the database is pinned there (None: as it was).
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub version: i32,
    pub pinned: Option<bool>,
}

/// Deploy into `database`, which exists and belongs to `platform`, as the
/// platform's owner role; record the deployment (and announce a change),
/// with the v2 schema version it brings the database to and its pin (`at`)
/// in the transaction that records the outcome. Hands back the connection
/// the deployment ran on, for verification.
pub async fn deploy_existing(
    state: &State,
    platform: &Platform,
    database: &str,
    parsed: &Parsed,
    opts: Options,
    req: Request<'_>,
    at: Option<At>,
) -> Result<(DeploymentReport, Client), MigratorError> {
    deploy_as(state, platform, database, database, parsed, opts, req, at).await
}

/// [`deploy_existing`] into `target`, reported (and recorded) as `label`:
/// the two differ for a dry run into a scratch database.
#[allow(clippy::too_many_arguments)]
async fn deploy_as(
    state: &State,
    platform: &Platform,
    target: &str,
    label: &str,
    parsed: &Parsed,
    opts: Options,
    req: Request<'_>,
    at: Option<At>,
) -> Result<(DeploymentReport, Client), MigratorError> {
    let started = Instant::now();
    let schema_version = at.map(|a| a.version);
    let record = state
        .catalog()?
        .begin_deployment(DeploymentStart {
            database: label.to_owned(),
            platform: platform.name.clone(),
            operation: req.operation,
            dry_run: opts.dry_run,
            force: opts.force,
            archive_sha256: req.archive_sha256.map(str::to_owned),
            schema_version,
            caller: req.caller.clone(),
        })
        .await?;
    let result = async {
        let mut client = state
            .admin
            .connect_as(target, &platform.owner_role, &platform.owner_password)
            .await
            .map_err(|e| match e {
                MigratorError::DatabaseNotFound(_) => {
                    MigratorError::DatabaseNotFound(label.to_owned())
                }
                other => other,
            })?;
        // Refused statements and extensions: 400 before anything runs.
        deploy::precheck(&client, parsed, &state.extensions_allowed).await?;
        let mut preinstalled = 0;
        // A dry run installs nothing for real: it runs as the owner role
        // only, which can install trusted extensions inside its rolled-back
        // transaction and reports the others.
        if !opts.dry_run && !parsed.extensions.is_empty() {
            let admin_db = state.admin.connect(Some(target)).await?;
            preinstalled = deploy::preinstall(&admin_db, label, parsed).await?.len() as u64;
        }
        let mut report = deploy::deploy(&mut client, label, parsed, opts, &state.log).await?;
        report.extensions_installed += preinstalled;
        if req.new_database && report.status != DeployStatus::Blocked {
            report.status = if opts.dry_run {
                DeployStatus::WouldCreate
            } else {
                DeployStatus::Created
            };
        }
        Ok::<_, MigratorError>((report, client))
    }
    .await;
    let outcome = match &result {
        Ok((report, _)) => Outcome {
            status: report.status,
            counts: Some(counts(report)),
            error: None,
            changed: !opts.dry_run && report.status.changed(),
            schema_version: schema_version.filter(|_| !opts.dry_run),
            pinned: at.and_then(|a| a.pinned).filter(|_| !opts.dry_run),
        },
        Err(e) => Outcome {
            status: DeployStatus::Failed,
            counts: None,
            error: serde_json::to_value(e.to_wire().1).ok(),
            changed: false,
            schema_version: None,
            pinned: None,
        },
    };
    if !opts.dry_run {
        state.metrics.deployment(result.is_ok(), started.elapsed());
    }
    if let Err(e) = state.catalog()?.finish_deployment(record, &outcome).await {
        // The database has the deployment; routers learn of it from the
        // lease this left behind (POLL_SQL) or the next migrator start.
        warn!(state.log, "could not record a deployment in the catalog"; "database" => label, "error" => ?e);
    }
    match &result {
        Ok((r, _)) => {
            info!(state.log, "deployed"; "database" => label, "status" => r.status.as_str(), "ms" => r.execution_time_ms)
        }
        Err(e) => warn!(state.log, "deployment failed"; "database" => label, "error" => ?e),
    }
    result
}

fn refused(name: &str, r: CreateRefused) -> MigratorError {
    match r {
        // Owned by this platform, another one, or nobody the catalog knows:
        // one answer, never naming another platform.
        CreateRefused::Recorded | CreateRefused::Unrecorded => {
            MigratorError::DatabaseAlreadyExists(name.to_owned())
        }
        CreateRefused::Reserved => MigratorError::NameReserved(name.to_owned()),
        CreateRefused::Failed(e) => e,
    }
}

/// Record `new` as being created, create it owned by the platform's
/// owner role, and deploy the schema into it. A failure drops it again and
/// forgets it. A template database is closed to connections before it is
/// marked ready.
pub async fn create_new(
    state: &State,
    platform: &Platform,
    new: NewDatabase,
    parsed: &Parsed,
    req: Request<'_>,
) -> Result<DeploymentReport, MigratorError> {
    let admin = state.admin.connect(None).await?;
    roles::ensure_roles(&admin, platform, state.platform_connection_limit).await?;
    let creation = start(state, &admin, &new, None).await?;
    let opts = Options {
        mode: Mode::Register,
        force: false,
        allow: crate::step::Allowed::NONE,
        dry_run: false,
        rollback: false,
    };
    let deployed = async {
        let (report, client) = deploy_existing(
            state,
            platform,
            &new.name,
            parsed,
            opts,
            Request {
                new_database: true,
                ..req
            },
            new.schema_version.map(|version| At {
                version,
                pinned: None,
            }),
        )
        .await?;
        drop(client);
        if new.kind == DbKind::Template {
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                    quote_ident(&new.name)
                ))
                .await
                .map_err(|e| MigratorError::Internal(crate::error::pg_message(&e)))?;
        }
        Ok::<_, MigratorError>(report)
    }
    .await;
    finish(state, &admin, creation, deployed).await
}

/// Record `new` as being created (under a lease) and create it: `CREATE
/// DATABASE … OWNER`, optionally as a copy of `template`, closed to PUBLIC.
/// A database someone created by hand meanwhile is not ours: 409, and it is
/// left alone (only the record goes).
async fn start(
    state: &State,
    admin: &Client,
    new: &NewDatabase,
    template: Option<&str>,
) -> Result<Creation, MigratorError> {
    let catalog = state.catalog()?;
    let creation = catalog
        .begin_creation(new, admin)
        .await
        .map_err(|r| refused(&new.name, r))?;
    let created = state
        .admin
        .create(admin, &new.name, Some(&new.owner_role), template)
        .await;
    match created {
        Ok(true) => Ok(creation),
        Ok(false) => {
            let _ = catalog.abort_creation(creation).await;
            Err(MigratorError::DatabaseAlreadyExists(new.name.clone()))
        }
        Err(e) => {
            let _ = catalog.abort_creation(creation).await;
            Err(e)
        }
    }
}

/// Mark a creation ready (or drop and forget it when `result` failed).
async fn finish(
    state: &State,
    admin: &Client,
    creation: Creation,
    result: Result<DeploymentReport, MigratorError>,
) -> Result<DeploymentReport, MigratorError> {
    match result {
        Ok(report) => {
            state.catalog()?.finish_creation(creation).await?;
            state.metrics.database_created();
            Ok(report)
        }
        Err(e) => {
            let name = creation.name.clone();
            match drop_database(state, admin, &name).await {
                Ok(()) => {
                    let _ = state.catalog()?.abort_creation(creation).await;
                }
                // Left recorded as `creating` under a lease this drop
                // frees: the next creation of that name or migrator start
                // drops it.
                Err(drop_err) => {
                    warn!(state.log, "could not drop the database of a failed creation";
                          "database" => &name, "error" => ?drop_err)
                }
            }
            Err(e)
        }
    }
}

/// Drop a database (a template first loses its template flag).
pub async fn drop_database(state: &State, admin: &Client, name: &str) -> Result<(), MigratorError> {
    let _ = admin
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE false ALLOW_CONNECTIONS true",
            quote_ident(name)
        ))
        .await;
    state.admin.drop(admin, name).await
}

/// A new v2 database as a copy of the schema version's template (a file
/// copy instead of a deployment), recorded like any creation.
pub async fn clone_template(
    state: &State,
    platform: &Platform,
    new: NewDatabase,
    template: &str,
    template_report: DeploymentReport,
    req: Request<'_>,
) -> Result<DeploymentReport, MigratorError> {
    let admin = state.admin.connect(None).await?;
    roles::ensure_roles(&admin, platform, state.platform_connection_limit).await?;
    let creation = start(state, &admin, &new, Some(template)).await?;
    let report = DeploymentReport {
        database: new.name.clone(),
        status: DeployStatus::Created,
        plan: Vec::new(),
        from_template: true,
        ..template_report
    };
    let record = state
        .catalog()?
        .begin_deployment(DeploymentStart {
            database: new.name.clone(),
            platform: platform.name.clone(),
            operation: req.operation,
            dry_run: false,
            force: false,
            archive_sha256: req.archive_sha256.map(str::to_owned),
            schema_version: new.schema_version,
            caller: req.caller.clone(),
        })
        .await;
    if let Ok(record) = record {
        let outcome = Outcome {
            status: DeployStatus::Created,
            counts: Some(counts(&report)),
            error: None,
            changed: true,
            schema_version: new.schema_version,
            pinned: None,
        };
        if let Err(e) = state.catalog()?.finish_deployment(record, &outcome).await {
            warn!(state.log, "could not record a deployment in the catalog"; "database" => &new.name, "error" => ?e);
        }
    }
    finish(state, &admin, creation, Ok(report)).await
}

/// Preview a new database: deploy into a throwaway one, owned by the
/// platform's owner role (or, for a platform not recorded yet, by a
/// throwaway role with the same attributes), then drop it. PostgreSQL
/// validates the whole plan with exactly the rights the real deployment
/// would have; nothing remains.
pub async fn dry_run_new(
    state: &State,
    platform_name: &str,
    platform: Option<&Platform>,
    would_be: &str,
    parsed: &Parsed,
    force: bool,
    req: Request<'_>,
) -> Result<DeploymentReport, MigratorError> {
    if state.catalog()?.reserved(would_be, platform_name).await? {
        return Err(MigratorError::NameReserved(would_be.to_owned()));
    }
    let admin = state.admin.connect(None).await?;
    let owner = match platform {
        Some(p) => {
            roles::ensure_roles(&admin, p, state.platform_connection_limit).await?;
            p.clone()
        }
        None => {
            let (role, password) = roles::throwaway_role(&admin).await?;
            Platform {
                name: platform_name.to_owned(),
                owner_role: role.clone(),
                owner_password: password,
                app_role: role,
                app_password: String::new(),
                v2: false,
            }
        }
    };
    let throwaway_role = platform.is_none();
    let scratch = NewDatabase::new(
        &format!("{SCRATCH_PREFIX}{}", &roles::random_hex()?[..16]),
        platform.map(|p| p.name.as_str()).unwrap_or(""),
        DbKind::Scratch,
        &owner.owner_role,
    );
    let result = async {
        let creation = start(state, &admin, &scratch, None).await?;
        let deployed = async {
            let mut preinstalled = Vec::new();
            if !parsed.extensions.is_empty() {
                let admin_db = state.admin.connect(Some(&scratch.name)).await?;
                // (what deploy_as checks, before anything is installed here)
                deploy::precheck(&admin_db, parsed, &state.extensions_allowed).await?;
                preinstalled = deploy::preinstall(&admin_db, would_be, parsed).await?;
            }
            let opts = Options {
                mode: Mode::Register,
                force,
                allow: crate::step::Allowed::NONE,
                dry_run: true,
                rollback: false,
            };
            let (mut report, client) = deploy_as(
                state,
                &owner,
                &scratch.name,
                would_be,
                parsed,
                opts,
                Request {
                    new_database: true,
                    ..req
                },
                None,
            )
            .await?;
            drop(client);
            // what the admin role installed first is the plan's first step,
            // counted like the ones installed in the transaction
            report.extensions_installed += preinstalled.len() as u64;
            report.plan.splice(0..0, preinstalled);
            Ok::<_, MigratorError>(report)
        }
        .await;
        match drop_database(state, &admin, &scratch.name).await {
            Ok(()) => {
                let _ = state.catalog()?.abort_creation(creation).await;
            }
            Err(e) => warn!(state.log, "could not drop a dry run's scratch database";
                            "database" => &scratch.name, "error" => ?e),
        }
        deployed
    }
    .await;
    if throwaway_role {
        roles::drop_role(&admin, &owner.owner_role).await;
    }
    result
}
