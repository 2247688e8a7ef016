//! The v1 schema routes: `/register`, `/migrate`, `/admin/databases`,
//! `/admin/create-tenant`. Each parses its input, calls the deployment
//! pipeline and maps the result to the wire.

use std::collections::HashMap;
use std::time::Instant;

use slog::{info, warn};
use stonescriptdb_shared::error::{ErrorBody, ErrorCode};
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::{
    AdminDatabasesResponse, CreateTenantRequest, DeployResponse, DeploymentReport, Verification,
};

use crate::archive::{self, ArchiveError};
use crate::deploy::{self, Mode, Options};
use crate::error::MigratorError;
use crate::multipart::Field;
use crate::schema::{self, Parsed};
use crate::server::State;
use tokio_postgres::Client;

/// A handler's answer: status and JSON body.
pub type Answer = (u16, Vec<u8>);

pub fn json<T: serde::Serialize>(status: u16, body: &T) -> Answer {
    (status, serde_json::to_vec(body).unwrap_or_default())
}

pub fn text_field(
    fields: &HashMap<String, Field>,
    name: &str,
) -> Result<Option<String>, MigratorError> {
    match fields.get(name) {
        None => Ok(None),
        Some(f) => String::from_utf8(f.data.clone())
            .map(|s| Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
            .map_err(|_| MigratorError::BadRequest(format!("field {name} is not UTF-8 text"))),
    }
}

fn flag(fields: &HashMap<String, Field>, name: &str) -> Result<bool, MigratorError> {
    match text_field(fields, name)?.as_deref() {
        None | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(MigratorError::BadRequest(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

fn bad_name(e: names::NameError) -> MigratorError {
    MigratorError::BadRequest(e.to_string())
}

/// Read the uploaded archive (`schema`, or `file` as in the v2 API) under
/// the caps; returns the raw bytes and the files.
pub fn read_archive(
    state: &State,
    fields: &HashMap<String, Field>,
) -> Result<(Vec<u8>, archive::Schema), MigratorError> {
    let field = fields
        .get("schema")
        .or_else(|| fields.get("file"))
        .ok_or_else(|| {
            MigratorError::BadRequest("missing the schema file field (schema)".into())
        })?;
    let schema = archive::read_schema(&field.data, &state.limits).map_err(|e| match e {
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
    Ok((field.data.clone(), schema))
}

/// Read and parse the uploaded archive.
fn schema_from(
    state: &State,
    fields: &HashMap<String, Field>,
) -> Result<(Parsed, Vec<u8>), MigratorError> {
    let (raw, schema) = read_archive(state, fields)?;
    Ok((schema::parse(&schema)?, raw))
}

/// Full deployment into a database that must not exist yet.
pub async fn deploy_new(
    state: &State,
    platform: &str,
    database: &str,
    parsed: &Parsed,
) -> Result<DeploymentReport, MigratorError> {
    let opts = Options {
        mode: Mode::Register,
        force: false,
        dry_run: false,
    };
    deploy_one(state, platform, database, parsed, opts, Target::CreateNew).await
}

/// Which database a deployment may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Create it if missing (register).
    CreateIfMissing,
    /// It must not exist yet (create-tenant).
    CreateNew,
    /// It must exist (migrate).
    Existing,
}

/// Deploy into one database; a database this call created is dropped again
/// if the deployment fails. New databases are owned by the platform's own
/// role and its uploaded SQL runs as that role (see [`crate::roles`]);
/// databases from before roles existed keep the admin role.
async fn deploy_one(
    state: &State,
    platform: &str,
    database: &str,
    parsed: &Parsed,
    opts: Options,
    target: Target,
) -> Result<DeploymentReport, MigratorError> {
    deploy_into(state, platform, database, parsed, opts, target)
        .await
        .map(|(report, _)| report)
}

/// Deployment into an existing database, then the verification of what it
/// declares, on the same connection.
pub async fn deploy_existing_verified(
    state: &State,
    platform: &str,
    database: &str,
    parsed: &Parsed,
    opts: Options,
) -> Result<(DeploymentReport, Verification), MigratorError> {
    let (report, client) =
        deploy_into(state, platform, database, parsed, opts, Target::Existing).await?;
    let mut client = match client {
        Some(c) => c,
        None => state.admin.connect(Some(database)).await?,
    };
    let verification = deploy::verify(&mut client, parsed).await?;
    Ok((report, verification))
}

/// [`deploy_one`], also handing back the connection the deployment ran on
/// (none for a dry run of a database that does not exist). Every connection
/// costs PostgreSQL a backend start, which is most of what migrating a fleet
/// of small databases costs: an existing database gets one connection (two
/// when the schema has extensions), no admin-database round trip.
async fn deploy_into(
    state: &State,
    platform: &str,
    database: &str,
    parsed: &Parsed,
    opts: Options,
    target: Target,
) -> Result<(DeploymentReport, Option<Client>), MigratorError> {
    if opts.dry_run {
        // Nothing may change: no database, role or credentials are created.
        let admin = state.admin.connect(None).await?;
        if !state.admin.exists(&admin, database).await? {
            if target == Target::Existing {
                return Err(MigratorError::DatabaseNotFound(database.to_owned()));
            }
            return Ok((deploy::new_database_plan(database, parsed), None));
        }
        drop(admin);
        return deploy_dry_run(state, database, parsed, opts).await;
    }
    // An existing database is not looked up first: connecting to it answers
    // DatabaseNotFound when it is missing.
    let (admin, creds, created) = match target {
        Target::Existing => (None, state.roles.load(platform)?, false),
        Target::CreateIfMissing | Target::CreateNew => {
            let admin = state.admin.connect(None).await?;
            let creds = state.roles.ensure(&admin, platform).await?;
            let created = state
                .admin
                .create(&admin, database, Some(creds.owner_role.as_str()))
                .await?;
            if target == Target::CreateNew && !created {
                return Err(MigratorError::DatabaseAlreadyExists(database.to_owned()));
            }
            (Some(admin), Some(creds), created)
        }
    };
    if created {
        state.roles.add_database(platform, database).await?;
    }
    let own = creds
        .as_ref()
        .filter(|c| created || c.databases.contains(database));
    let started = Instant::now();
    let result = async {
        let (mut client, preinstalled) = match own {
            // Only extensions need the admin role; everything else runs as
            // the platform's owner role.
            Some(c) => {
                let mut preinstalled = 0;
                if !parsed.extensions.is_empty() {
                    let admin_db = state.admin.connect(Some(database)).await?;
                    preinstalled =
                        deploy::preinstall_extensions(&admin_db, database, parsed).await?;
                }
                let client = state
                    .admin
                    .connect_as(database, &c.owner_role, &c.owner_password)
                    .await?;
                (client, preinstalled)
            }
            None => (state.admin.connect(Some(database)).await?, 0),
        };
        let mut report = deploy::deploy(&mut client, database, parsed, opts, &state.log).await?;
        report.extensions_installed += preinstalled;
        Ok::<_, MigratorError>((report, client))
    }
    .await;
    let result = match result {
        // Nothing was deployed: not a failed deployment.
        Err(e @ MigratorError::DatabaseNotFound(_)) => return Err(e),
        other => other,
    };
    state.metrics.deployment(result.is_ok(), started.elapsed());
    if created && result.is_ok() {
        state.metrics.database_created();
    }
    match result {
        Ok((mut report, client)) => {
            if created {
                report.status = "created".into();
            }
            info!(state.log, "deployed"; "database" => database, "status" => &report.status,
                  "ms" => report.execution_time_ms);
            Ok((report, Some(client)))
        }
        Err(e) => {
            warn!(state.log, "deployment failed"; "database" => database, "error" => ?e);
            if let (true, Some(admin)) = (created, &admin) {
                if let Err(drop_err) = state.admin.drop(admin, database).await {
                    warn!(state.log, "could not drop the database created for a failed register";
                          "database" => database, "error" => ?drop_err);
                } else if let Err(e) = state.roles.remove_database(platform, database).await {
                    warn!(state.log, "could not update the platform's credentials file"; "error" => ?e);
                }
            }
            Err(e)
        }
    }
}

/// A dry run into an existing database: everything runs in the deployment
/// transaction, which is rolled back; the report carries the plan.
async fn deploy_dry_run(
    state: &State,
    database: &str,
    parsed: &Parsed,
    opts: Options,
) -> Result<(DeploymentReport, Option<Client>), MigratorError> {
    // As admin: extensions need it, and nothing is committed.
    let mut client = state.admin.connect(Some(database)).await?;
    let report = deploy::deploy(&mut client, database, parsed, opts, &state.log).await?;
    Ok((report, Some(client)))
}

/// The fields of a `/register` or `/migrate` upload.
struct Upload {
    platform: String,
    tenant: Option<String>,
    force: bool,
    dry_run: bool,
    parsed: Parsed,
    raw: Vec<u8>,
}

impl Upload {
    fn read(state: &State, fields: &HashMap<String, Field>) -> Result<Upload, MigratorError> {
        let platform = text_field(fields, "platform")?
            .ok_or_else(|| MigratorError::BadRequest("missing field platform".into()))?;
        names::validate_platform(&platform).map_err(bad_name)?;
        let tenant = text_field(fields, "tenant_id")?;
        if let Some(t) = &tenant {
            names::validate_tenant_id(t).map_err(bad_name)?;
        }
        let force = flag(fields, "force")?;
        let dry_run = flag(fields, "dry_run")?;
        let (parsed, raw) = schema_from(state, fields)?;
        Ok(Upload {
            platform,
            tenant,
            force,
            dry_run,
            parsed,
            raw,
        })
    }
}

/// `POST /register`.
pub async fn register(
    state: &State,
    fields: HashMap<String, Field>,
) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let Upload {
        platform,
        tenant,
        force,
        dry_run,
        parsed,
        raw,
    } = Upload::read(state, &fields)?;
    let database = names::v1_database_name(&platform, tenant.as_deref()).map_err(bad_name)?;
    let opts = Options {
        mode: Mode::Register,
        force,
        dry_run,
    };
    let report = deploy_one(
        state,
        &platform,
        &database,
        &parsed,
        opts,
        Target::CreateIfMissing,
    )
    .await?;
    if !dry_run {
        state.store.save_v1(&platform, &raw)?;
    }
    Ok(json(
        200,
        &DeployResponse {
            status: if dry_run { "dry_run" } else { "ready" }.into(),
            platform,
            databases: vec![report],
            execution_time_ms: started.elapsed().as_millis() as u64,
        },
    ))
}

/// `POST /migrate`: one tenant, or every database of the platform.
pub async fn migrate(
    state: &State,
    fields: HashMap<String, Field>,
) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let Upload {
        platform,
        tenant,
        force,
        dry_run,
        parsed,
        raw,
    } = Upload::read(state, &fields)?;
    let opts = Options {
        mode: Mode::Migrate,
        force,
        dry_run,
    };
    let databases = match &tenant {
        Some(t) => vec![names::v1_database_name(&platform, Some(t)).map_err(bad_name)?],
        None => {
            let admin = state.admin.connect(None).await?;
            let dbs = state.admin.platform_databases(&admin, &platform).await?;
            if dbs.is_empty() {
                return Err(MigratorError::PlatformNotFound(format!(
                    "platform {platform} has no databases (register it first)"
                )));
            }
            dbs
        }
    };
    if databases.len() == 1 {
        let report = deploy_one(
            state,
            &platform,
            &databases[0],
            &parsed,
            opts,
            Target::Existing,
        )
        .await?;
        if !dry_run {
            state.store.save_v1(&platform, &raw)?;
        }
        return Ok(json(
            200,
            &DeployResponse {
                status: if dry_run { "dry_run" } else { "completed" }.into(),
                platform,
                databases: vec![report],
                execution_time_ms: started.elapsed().as_millis() as u64,
            },
        ));
    }
    let mut reports = Vec::new();
    let mut failed = 0;
    for db in &databases {
        match deploy_one(state, &platform, db, &parsed, opts, Target::Existing).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                failed += 1;
                let (_, body) = e.to_wire();
                reports.push(DeploymentReport {
                    database: db.clone(),
                    status: "failed".into(),
                    error: Some(body),
                    ..DeploymentReport::default()
                });
            }
        }
    }
    let resp = DeployResponse {
        status: match (dry_run, failed) {
            (true, _) => "dry_run",
            (false, 0) => "completed",
            _ => "partial",
        }
        .into(),
        platform,
        databases: reports,
        execution_time_ms: started.elapsed().as_millis() as u64,
    };
    if failed == 0 {
        if !dry_run {
            state.store.save_v1(&resp.platform, &raw)?;
        }
        return Ok(json(200, &resp));
    }
    let code = ErrorCode::MigrationFailed;
    let mut body = ErrorBody::new(
        code,
        format!(
            "{failed} of {} databases failed to migrate; the others were migrated",
            databases.len()
        ),
    );
    body.details = serde_json::to_value(&resp).ok();
    Ok(json(code.status(), &body))
}

/// `GET /admin/databases?platform=`.
pub async fn databases(state: &State, query: Option<&str>) -> Result<Answer, MigratorError> {
    let platform = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("platform="))
        .map(str::to_owned)
        .ok_or_else(|| MigratorError::BadRequest("missing query parameter platform".into()))?;
    names::validate_platform(&platform).map_err(bad_name)?;
    let admin = state.admin.connect(None).await?;
    let databases = state.admin.platform_databases(&admin, &platform).await?;
    Ok(json(
        200,
        &AdminDatabasesResponse {
            count: databases.len(),
            platform,
            databases,
        },
    ))
}

/// `POST /admin/create-tenant {platform, tenant_id}`: a new tenant database
/// with the platform's most recently registered schema.
pub async fn create_tenant(state: &State, body: &[u8]) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let req: CreateTenantRequest = serde_json::from_slice(body)
        .map_err(|e| MigratorError::BadRequest(format!("invalid create-tenant body: {e}")))?;
    let database =
        names::v1_database_name(&req.platform, Some(&req.tenant_id)).map_err(bad_name)?;
    let raw = state.store.load_v1(&req.platform)?.ok_or_else(|| {
        MigratorError::SchemaNotFound(format!(
            "platform {} has no registered schema (POST /register first)",
            req.platform
        ))
    })?;
    let schema = archive::read_schema(&raw, &state.limits).map_err(|e| {
        MigratorError::Internal(format!(
            "stored schema of {} is unreadable: {e}",
            req.platform
        ))
    })?;
    let parsed = schema::parse(&schema)?;
    let report = deploy_new(state, &req.platform, &database, &parsed).await?;
    Ok(json(
        201,
        &DeployResponse {
            status: "created".into(),
            platform: req.platform,
            databases: vec![report],
            execution_time_ms: started.elapsed().as_millis() as u64,
        },
    ))
}
