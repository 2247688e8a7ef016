//! The v1 schema routes (seeds 000/001): `/register`, `/migrate`,
//! `/admin/databases`, `/admin/create-tenant`, and the archives a platform
//! keeps (`/platform/{platform}/versions`, `/migrate` with `version`). Each
//! reads its request strictly, checks the caller's token against the
//! platform, resolves databases through the control catalog (never by name
//! prefix), and hands the work to [`crate::provision`]. An archive deployed
//! for real is kept as the platform's next version ([`keep`]).

use std::sync::Arc;
use std::time::Instant;

use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::error::{ErrorBody, ErrorCode};
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::{
    AdminDatabasesResponse, CreateTenantRequest, DeployResponse, RequestStatus, V1VersionInfo,
    V1VersionsResponse, MIGRATE_FIELDS, UPLOAD_FIELDS,
};
use stonescriptdb_shared::wire::{DeploymentReport, Operation};

use crate::catalog::{Database, V1Archive};
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
    source: Source,
}

/// Where the archive an upload deploys comes from.
enum Source {
    /// Sent as the `schema` file.
    Shipped(Archive),
    /// `version`: the kept archive of that number (`/migrate` only).
    Kept(i32),
}

/// An archive to deploy, parsed.
struct Archive {
    parsed: Arc<Parsed>,
    raw: Vec<u8>,
    sha256: String,
    /// The number it is kept under already (a redeployed one).
    kept_as: Option<i32>,
}

impl Upload {
    /// Read a form of `fields` (`version` is one only for `/migrate`).
    fn read(state: &State, r: &Req, fields: &[&str]) -> Result<Upload, MigratorError> {
        let mut form = Form::parse(&r.content_type, &r.body, fields)?;
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
        let version = form.positive("version")?;
        let source = match (form.optional_file("schema"), version) {
            (Some(_), Some(_)) => {
                return Err(MigratorError::BadRequest(
                    "give field schema (a new archive) or version (a kept one), not both".into(),
                ))
            }
            (None, Some(v)) => Source::Kept(v),
            (Some(raw), None) => Source::Shipped(Archive {
                parsed: Arc::new(schema::from_upload(&raw, &state.limits)?),
                sha256: sha256_hex(&raw),
                raw,
                kept_as: None,
            }),
            (None, None) if fields.contains(&"version") => {
                return Err(MigratorError::BadRequest(
                    "missing the schema file field (schema), or the version field naming a kept archive".into(),
                ))
            }
            (None, None) => {
                return Err(MigratorError::BadRequest(
                    "missing the schema file field (schema)".into(),
                ))
            }
        };
        Ok(Upload {
            platform,
            tenant,
            force,
            dry_run,
            source,
        })
    }
}

/// The archive an upload deploys: the shipped one, or the kept one read
/// from the catalog (404 `version_not_found` when no kept archive has that
/// number).
async fn resolve(state: &State, platform: &str, source: Source) -> Result<Archive, MigratorError> {
    let n = match source {
        Source::Shipped(a) => return Ok(a),
        Source::Kept(n) => n,
    };
    let (meta, raw) = state
        .catalog()?
        .v1_archive(platform, Some(n))
        .await?
        .ok_or_else(|| {
            MigratorError::VersionNotFound(format!(
                "platform {platform} keeps no archive version {n} (GET /platform/{platform}/versions lists the kept ones)"
            ))
        })?;
    kept(state, platform, meta, raw)
}

/// A kept archive, parsed for deployment.
fn kept(
    state: &State,
    platform: &str,
    meta: V1Archive,
    raw: Vec<u8>,
) -> Result<Archive, MigratorError> {
    let what = format!("archive version {} of {platform}", meta.version);
    Ok(Archive {
        parsed: Arc::new(schema::from_stored(&raw, &state.limits, &what)?),
        sha256: sha256_hex(&raw),
        raw,
        kept_as: Some(meta.version),
    })
}

/// Keep an archive deployed for real as the platform's next version (an
/// archive equal to the latest is not kept twice); its number.
async fn keep(state: &State, platform: &str, archive: &Archive) -> Result<i32, MigratorError> {
    let latest = state
        .catalog()?
        .keep_v1_archive(
            platform,
            &archive.raw,
            &archive.sha256,
            archive.kept_as,
            state.v1_archives_kept,
        )
        .await?;
    Ok(latest.version)
}

/// `POST /register`: create the database if missing and deploy everything.
pub async fn register(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let up = Upload::read(state, r, UPLOAD_FIELDS)?;
    let archive = resolve(state, &up.platform, up.source).await?;
    let database = names::v1_database_name(&up.platform, up.tenant.as_deref()).map_err(bad_name)?;
    let req = Request {
        operation: Operation::Register,
        archive_sha256: Some(&archive.sha256),
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
    let report = placement::deploy(state, owner, wanted, &archive.parsed, req).await?;
    let version = match up.dry_run {
        true => None,
        false => Some(keep(state, &up.platform, &archive).await?),
    };
    Ok(one_database(
        200,
        up.dry_run,
        RequestStatus::Ready,
        up.platform,
        report,
        started,
        version,
    ))
}

/// The answer of a route that deployed one database: `status` (or
/// `dry_run`), with `code` (200 for a dry run), and the number the
/// archive is kept under.
fn one_database(
    code: u16,
    dry_run: bool,
    status: RequestStatus,
    platform: String,
    report: DeploymentReport,
    started: Instant,
    version: Option<i32>,
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
            version,
        },
    )
}

/// The databases a `/migrate` goes through: the tenant's, or every v1 (and
/// adopted) database of the platform.
async fn targets(
    state: &State,
    platform: &str,
    tenant: Option<&str>,
) -> Result<Vec<Database>, MigratorError> {
    if let Some(t) = tenant {
        let name = names::v1_database_name(platform, Some(t)).map_err(bad_name)?;
        return Ok(vec![
            provision::owned(state, platform, &name, &[DbKind::V1]).await?,
        ]);
    }
    let dbs = state
        .catalog()?
        .databases(platform, &[DbKind::V1, DbKind::Adopted], None)
        .await?;
    if dbs.is_empty() {
        return Err(MigratorError::PlatformNotFound(format!(
            "platform {platform} has no databases (register it first)"
        )));
    }
    Ok(dbs)
}

/// `POST /migrate`: one tenant, or every v1 (and adopted) database of the
/// platform, one after the other ([`crate::fleet`]), with the archive
/// shipped or the kept one `version` names.
pub async fn migrate(state: &Arc<State>, r: &mut Req) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let up = Upload::read(state, r, MIGRATE_FIELDS)?;
    let databases = targets(state, &up.platform, up.tenant.as_deref()).await?;
    let archive = resolve(state, &up.platform, up.source).await?;
    let total = databases.len();
    let platform = Arc::new(provision::known_platform(state, &up.platform).await?);
    let run = fleet::Run {
        databases,
        canary: false,
        stop_on_error: false,
        concurrency: 1,
    };
    // A kept archive older than the latest is a rollback: migrations
    // recorded since are skipped whatever their checksum (they run forward
    // only), and the report lists what stays.
    let rollback = match archive.kept_as {
        Some(n) => {
            let kept = state.catalog()?.v1_archives(&up.platform).await?;
            crate::step::is_rollback(kept.iter().map(|a| a.version).max(), n)
        }
        None => false,
    };
    let step = {
        let opts = Options {
            mode: Mode::Migrate,
            force: up.force,
            allow: crate::step::Allowed::NONE,
            dry_run: up.dry_run,
            rollback,
        };
        let (state, parsed) = (state.clone(), archive.parsed.clone());
        let (sha, caller) = (Arc::new(archive.sha256.clone()), Arc::new(r.caller.clone()));
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
    let mut resp = DeployResponse {
        status: RequestStatus::of_migration(up.dry_run, failed, total),
        platform: up.platform,
        databases: reports,
        execution_time_ms: started.elapsed().as_millis() as u64,
        version: None,
    };
    if failed == 0 {
        if !up.dry_run {
            resp.version = Some(keep(state, &resp.platform, &archive).await?);
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
    let (meta, raw) = state
        .catalog()?
        .v1_archive(&body.platform, None)
        .await?
        .ok_or_else(|| {
            MigratorError::SchemaNotFound(format!(
                "platform {} has no registered schema (POST /register first)",
                body.platform
            ))
        })?;
    let latest = meta.version;
    let archive = kept(state, &body.platform, meta, raw)?;
    let req = Request {
        operation: Operation::CreateTenant,
        archive_sha256: Some(&archive.sha256),
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
    let report =
        placement::deploy(state, Owner::Known(&platform), wanted, &archive.parsed, req).await?;
    Ok(one_database(
        201,
        body.dry_run,
        RequestStatus::Created,
        body.platform,
        report,
        started,
        (!body.dry_run).then_some(latest),
    ))
}

/// `GET /platform/{platform}/versions`: the archives the platform keeps,
/// oldest first; the last is the latest. A platform without a v1 archive
/// has none.
pub async fn versions(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platform = r.path_platform()?.to_owned();
    r.grant.may(&platform)?;
    provision::known_platform(state, &platform).await?;
    let kept = state.catalog()?.v1_archives(&platform).await?;
    let latest = kept.iter().map(|a| a.version).max();
    let versions: Vec<V1VersionInfo> = kept
        .into_iter()
        .map(|a| V1VersionInfo {
            latest: Some(a.version) == latest,
            version: a.version,
            archive_sha256: a.archive_sha256,
            size: a.size,
            uploaded_at: a.uploaded_at,
            redeployed_from: a.redeployed_from,
        })
        .collect();
    Ok(json(
        200,
        &V1VersionsResponse {
            platform,
            count: versions.len(),
            versions,
        },
    ))
}
