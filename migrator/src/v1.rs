//! The v1 schema routes (seeds 000/001): `/register`, `/migrate`,
//! `/admin/databases`, `/admin/create-tenant`. Each reads its request
//! strictly, checks the caller's token against the platform, resolves
//! databases through the control catalog (never by name prefix), and hands
//! the work to [`crate::provision`].

use std::sync::Arc;
use std::time::Instant;

use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::error::{ErrorBody, ErrorCode};
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::{
    AdminDatabasesResponse, CreateTenantRequest, DeployResponse, RequestStatus, UPLOAD_FIELDS,
};
use stonescriptdb_shared::wire::{DeploymentReport, Operation};

use crate::catalog::Database;
use crate::deploy::{Mode, Options};
use crate::error::{bad_name, MigratorError};
use crate::fleet;
use crate::form::Form;
use crate::placement::{self, Owner, Wanted};
use crate::provision::{self, Request};
use crate::schema::{self, sha256_hex, Parsed};
use crate::state::{json, Answer, Req, State};

/// The fields of a `/register` or `/migrate` upload.
struct Upload {
    platform: String,
    tenant: Option<String>,
    force: bool,
    dry_run: bool,
    parsed: Arc<Parsed>,
    raw: Vec<u8>,
    sha256: String,
}

impl Upload {
    fn read(state: &State, r: &Req) -> Result<Upload, MigratorError> {
        let mut form = Form::parse(&r.content_type, &r.body, UPLOAD_FIELDS)?;
        let platform = form
            .text("platform")?
            .ok_or_else(|| MigratorError::BadRequest("missing field platform".into()))?;
        names::validate_platform(&platform).map_err(bad_name)?;
        r.grant.may(&platform)?;
        let tenant = form.text("tenant_id")?;
        if let Some(t) = &tenant {
            names::validate_tenant_id(t).map_err(bad_name)?;
        }
        let force = form.flag("force")?;
        let dry_run = form.flag("dry_run")?;
        let raw = form.file("schema", "schema")?;
        let parsed = schema::from_upload(&raw, &state.limits)?;
        Ok(Upload {
            sha256: sha256_hex(&raw),
            platform,
            tenant,
            force,
            dry_run,
            parsed: Arc::new(parsed),
            raw,
        })
    }
}

/// `POST /register`: create the database if missing and deploy everything.
pub async fn register(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let up = Upload::read(state, r)?;
    let database = names::v1_database_name(&up.platform, up.tenant.as_deref()).map_err(bad_name)?;
    let req = Request {
        operation: Operation::Register,
        archive_sha256: Some(&up.sha256),
        caller: &r.caller,
        new_database: false,
    };
    let wanted = Wanted {
        name: database,
        kind: DbKind::V1,
        tenant_id: up.tenant.clone(),
        schema: None,
        deploy_existing: true,
        dry_run: up.dry_run,
        force: up.force,
    };
    let owner = Owner::FirstUse(&up.platform, &r.grant);
    let report = placement::deploy(state, owner, wanted, &up.parsed, req).await?;
    if !up.dry_run {
        state
            .catalog()?
            .save_v1_schema(&up.platform, &up.raw, &up.sha256)
            .await?;
    }
    Ok(one_database(
        200,
        up.dry_run,
        RequestStatus::Ready,
        up.platform,
        report,
        started,
    ))
}

/// The answer of a route that deployed one database: `status` (or
/// `dry_run`), with `code` (200 for a dry run).
fn one_database(
    code: u16,
    dry_run: bool,
    status: RequestStatus,
    platform: String,
    report: DeploymentReport,
    started: Instant,
) -> Answer {
    let (code, status) = if dry_run {
        (200, RequestStatus::DryRun)
    } else {
        (code, status)
    };
    json(
        code,
        &DeployResponse {
            status,
            platform,
            databases: vec![report],
            execution_time_ms: started.elapsed().as_millis() as u64,
        },
    )
}

/// The databases a `/migrate` goes through: the tenant's, or every v1 (and
/// adopted) database of the platform.
async fn targets(state: &State, up: &Upload) -> Result<Vec<Database>, MigratorError> {
    if let Some(t) = &up.tenant {
        let name = names::v1_database_name(&up.platform, Some(t)).map_err(bad_name)?;
        return Ok(vec![
            provision::owned(state, &up.platform, &name, &[DbKind::V1]).await?,
        ]);
    }
    let dbs = state
        .catalog()?
        .databases(&up.platform, &[DbKind::V1, DbKind::Adopted], None)
        .await?;
    if dbs.is_empty() {
        return Err(MigratorError::PlatformNotFound(format!(
            "platform {} has no databases (register it first)",
            up.platform
        )));
    }
    Ok(dbs)
}

/// `POST /migrate`: one tenant, or every v1 (and adopted) database of the
/// platform, one after the other ([`crate::fleet`]).
pub async fn migrate(state: &Arc<State>, r: &mut Req) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let up = Upload::read(state, r)?;
    let databases = targets(state, &up).await?;
    let total = databases.len();
    let platform = Arc::new(provision::known_platform(state, &up.platform).await?);
    let run = fleet::Run {
        databases,
        canary: false,
        stop_on_error: false,
        concurrency: 1,
    };
    let step = {
        let opts = Options {
            mode: Mode::Migrate,
            force: up.force,
            allow: crate::step::Allowed::NONE,
            dry_run: up.dry_run,
            rollback: false,
        };
        let (state, parsed) = (state.clone(), up.parsed.clone());
        let (sha, caller) = (Arc::new(up.sha256.clone()), Arc::new(r.caller.clone()));
        move |db: Database| {
            let (state, platform, parsed) = (state.clone(), platform.clone(), parsed.clone());
            let (sha, caller) = (sha.clone(), caller.clone());
            async move {
                let req = Request {
                    operation: Operation::Migrate,
                    archive_sha256: Some(&sha),
                    caller: &caller,
                    new_database: false,
                };
                let deployed = provision::deploy_existing(
                    &state, &platform, &db.name, &parsed, opts, req, None,
                )
                .await?;
                Ok((deployed.0, None))
            }
        }
    };
    let finished = fleet::in_order(fleet::start(state.clone(), run, step)).await;
    let failed = finished.iter().filter(|f| f.failed()).count();
    let mut reports = Vec::with_capacity(total);
    for f in finished {
        if total == 1 {
            // one database: its own error, as it always was
            reports.push(f.into_result()?.0);
        } else {
            reports.push(f.into_report().0);
        }
    }
    let resp = DeployResponse {
        status: RequestStatus::of_migration(up.dry_run, failed, total),
        platform: up.platform,
        databases: reports,
        execution_time_ms: started.elapsed().as_millis() as u64,
    };
    if failed == 0 {
        if !up.dry_run {
            state
                .catalog()?
                .save_v1_schema(&resp.platform, &up.raw, &up.sha256)
                .await?;
        }
        return Ok(json(200, &resp));
    }
    let code = ErrorCode::MigrationFailed;
    let migrated = total - failed;
    let mut body = ErrorBody::new(
        code,
        format!(
            "{failed} of {total} databases failed to migrate (each is as it was); {migrated} were migrated"
        ),
    );
    body.details = serde_json::to_value(&resp).ok();
    Ok(json(code.status(), &body))
}

/// `GET /admin/databases?platform=[&size=true]`: the names of the
/// platform's ready databases (the seeds' shape), and `items`: every
/// database recorded for it with kind, ids, schema version, pinning, state
/// and newest deployment; sizes only when asked (a query per database).
pub async fn databases(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platform = r
        .query("platform")
        .ok_or_else(|| MigratorError::BadRequest("missing query parameter platform".into()))?;
    names::validate_platform(&platform).map_err(bad_name)?;
    let size = r.query_flag("size")?;
    r.grant.may(&platform)?;
    let mut items = state.catalog()?.database_items(&platform).await?;
    if size {
        let admin = state.admin.connect(None).await?;
        for item in items.iter_mut() {
            item.size_bytes = state.admin.size(&admin, &item.name).await?;
        }
    }
    let databases: Vec<String> = items
        .iter()
        .filter(|d| d.state == DbState::Ready)
        .map(|d| d.name.clone())
        .collect();
    Ok(json(
        200,
        &AdminDatabasesResponse {
            count: databases.len(),
            platform,
            databases,
            items,
        },
    ))
}

/// `POST /admin/create-tenant {platform, tenant_id, dry_run?}`: a new tenant
/// database with the platform's most recently registered schema.
pub async fn create_tenant(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let body: CreateTenantRequest = r.json("create-tenant")?;
    let database =
        names::v1_database_name(&body.platform, Some(&body.tenant_id)).map_err(bad_name)?;
    r.grant.may(&body.platform)?;
    let platform = provision::known_platform(state, &body.platform).await?;
    let raw = state
        .catalog()?
        .v1_schema(&body.platform)
        .await?
        .ok_or_else(|| {
            MigratorError::SchemaNotFound(format!(
                "platform {} has no registered schema (POST /register first)",
                body.platform
            ))
        })?;
    let parsed = schema::from_stored(
        &raw,
        &state.limits,
        &format!("the stored schema of {}", body.platform),
    )?;
    let sha = sha256_hex(&raw);
    let req = Request {
        operation: Operation::CreateTenant,
        archive_sha256: Some(&sha),
        caller: &r.caller,
        new_database: false,
    };
    let wanted = Wanted {
        name: database,
        kind: DbKind::V1,
        tenant_id: Some(body.tenant_id.clone()),
        schema: None,
        deploy_existing: false,
        dry_run: body.dry_run,
        force: false,
    };
    let report = placement::deploy(state, Owner::Known(&platform), wanted, &parsed, req).await?;
    Ok(one_database(
        201,
        body.dry_run,
        RequestStatus::Created,
        body.platform,
        report,
        started,
    ))
}
