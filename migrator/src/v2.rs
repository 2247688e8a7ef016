//! The v2 stored-schema API (docs/API.md, "v2"): `/platform/register`,
//! `/platform/{p}/schema`, `/platform/{p}/schemas`, `/platform/{p}/databases`,
//! `/platforms`, `/database/create` and `/v2/migrate` (bounded parallelism,
//! canary, stop-on-error, NDJSON progress, dry run), and
//! `/platform/{p}/schemas/{name}/versions`. Schemas, their versions and the
//! databases made from them live in the control catalog.
//!
//! Versions: without `version` a request deploys the latest stored version
//! and a run leaves pinned databases where they are; a number deploys that
//! version and pins the database there; `"latest"` deploys the latest and
//! unpins. A version older than the database's is a rollback
//! ([`crate::step::Options::rollback`]).
//!
//! New databases are copies of their schema version's template database
//! ([`crate::templates`]), made through the one existing-or-new decision
//! ([`crate::placement`]); `/v2/migrate` is a run of [`crate::fleet`]. A
//! stored version is parsed once and kept ([`State::parsed_versions`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Bytes;
use slog::info;
use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::error::{ErrorBody, ErrorCode};
use stonescriptdb_shared::names;
use stonescriptdb_shared::wire::{
    AdminDatabaseCreateRequest, DatabaseCreateRequest, DatabaseCreateResponse, DatabaseInfo,
    DatabaseListResponse, DeployStatus, DeploymentReport, PlatformRegisterRequest,
    PlatformRegisterResponse, PlatformSummary, PlatformsResponse, RequestStatus, SchemaInfo,
    SchemaListResponse, SchemaUploadResponse, SchemaValidation, SchemaVersionInfo,
    SchemaVersionsResponse, SeederResult, V2MigrateRequest, V2MigrateResponse, Verification,
    VersionChoice, SCHEMA_UPLOAD_FIELDS,
};
use stonescriptdb_shared::wire::{Operation, RegisterStatus};
use tokio::sync::mpsc;

use crate::catalog::{Database, Platform, SchemaVersion};
use crate::deploy::{self, Options};
use crate::error::{bad_name, MigratorError};
use crate::fleet;
use crate::form::Form;
use crate::placement::{self, FromSchema, Owner, Wanted};
use crate::provision::{self, Request};
use crate::schema::{self, sha256_hex, Parsed};
use crate::state::{json, Answer, Reply, Req, State};
use crate::step::is_rollback;

/// The platform, registered through the v2 API, or 404.
pub(crate) async fn v2_platform(state: &State, name: &str) -> Result<Platform, MigratorError> {
    match state.catalog()?.platform(name).await? {
        Some(p) if p.v2 => Ok(p),
        _ => Err(MigratorError::PlatformNotFound(format!(
            "platform {name} is not registered (POST /platform/register first)"
        ))),
    }
}

/// `POST /platform/register {platform}` → 201; a platform already
/// registered for v2 → 409 `platform_already_registered` (what
/// StoneScriptPHP's CLI expects on a second run); a platform known only
/// from v1 `/register` → 201, and it is then v1 and v2.
pub async fn platform_register(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let body: PlatformRegisterRequest = r.json("platform register")?;
    names::validate_platform(&body.platform).map_err(bad_name)?;
    r.grant.may(&body.platform)?;
    let admin = state.admin.connect(None).await?;
    crate::roles::ensure_platform(state, &admin, &r.grant, &body.platform).await?;
    if !state.catalog()?.mark_v2(&body.platform).await? {
        return Err(MigratorError::PlatformAlreadyRegistered(body.platform));
    }
    info!(state.log, "platform registered"; "platform" => &body.platform);
    Ok(json(
        201,
        &PlatformRegisterResponse {
            status: RegisterStatus::Registered,
            message: format!(
                "Platform registered. Use POST /platform/{}/schema to add schemas.",
                body.platform
            ),
            platform: body.platform,
        },
    ))
}

/// `POST /platform/{platform}/schema` (multipart `schema_name`|`name`, `schema`|`file`) → 201.
pub async fn schema_upload(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platform = r.path_platform()?.to_owned();
    r.grant.may(&platform)?;
    let mut form = Form::parse(&r.content_type, &r.body, SCHEMA_UPLOAD_FIELDS)?;
    v2_platform(state, &platform).await?;
    let schema_name = form
        .text_either("schema_name", "name")?
        .ok_or_else(|| MigratorError::BadRequest("missing field schema_name (or name)".into()))?;
    names::validate_schema_name(&schema_name).map_err(bad_name)?;
    // Its databases `{platform}_{schema}_…` must not fall under another
    // registered platform's names (`shop` + schema `admin` is `shop_admin`'s).
    let prefix = format!("{platform}_{schema_name}");
    if state.catalog()?.platform_under(&prefix, &platform).await? {
        return Err(MigratorError::NameReserved(format!("{prefix}_…")));
    }
    let raw = form.file("schema", "file")?;
    let parsed = schema::from_upload(&raw, &state.limits)?;
    // An extension the platform may not have is refused now, not in each
    // database it would be deployed to.
    let uses = crate::deploy::extension_uses(&parsed, &[]);
    if !uses.is_empty() {
        let admin = state.admin.connect(None).await?;
        crate::deploy::check_extensions(&admin, &uses, &state.extensions_allowed).await?;
    }
    let meta = SchemaVersion {
        version: 0,
        checksum: parsed.checksum.clone(),
        archive_sha256: sha256_hex(&raw),
        uploaded_at: String::new(),
        has_tables: !parsed.tables.is_empty(),
        has_functions: !parsed.functions.is_empty(),
        has_migrations: !parsed.migrations.is_empty(),
        has_seeders: !parsed.seeders.is_empty(),
    };
    let (stored, new_version) = state
        .catalog()?
        .add_schema_version(&platform, &schema_name, &raw, &meta)
        .await?;
    info!(state.log, "schema stored"; "platform" => &platform, "schema" => &schema_name,
          "version" => stored.version, "new_version" => new_version);
    // read once: the databases made from or migrated to it use this
    if stored.checksum == parsed.checksum {
        let weight = parsed.text_bytes();
        state
            .parsed_versions
            .keep(&stored.checksum, weight, Arc::new(parsed));
    }
    Ok(json(
        201,
        &SchemaUploadResponse {
            status: RegisterStatus::Registered,
            platform,
            schema_name,
            has_tables: stored.has_tables,
            has_functions: stored.has_functions,
            has_migrations: stored.has_migrations,
            checksum: stored.checksum,
            version: stored.version,
            new_version,
        },
    ))
}

/// `GET /platform/{platform}/schemas/{name}/versions`: every stored
/// version, oldest first, with how many ready databases run it.
pub async fn schema_versions(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platform = r.path_platform()?.to_owned();
    let schema_name = r.params.get(1).cloned().unwrap_or_default();
    names::validate_schema_name(&schema_name).map_err(bad_name)?;
    r.grant.may(&platform)?;
    v2_platform(state, &platform).await?;
    let stored = state
        .catalog()?
        .schema_versions(&platform, &schema_name)
        .await?;
    let latest = stored
        .last()
        .map(|v| v.version.version)
        .ok_or_else(|| no_schema(&platform, &schema_name))?;
    let versions: Vec<SchemaVersionInfo> = stored
        .into_iter()
        .map(|v| SchemaVersionInfo {
            latest: v.version.version == latest,
            version: v.version.version,
            checksum: v.version.checksum,
            archive_sha256: v.version.archive_sha256,
            uploaded_at: v.version.uploaded_at,
            size: u64::try_from(v.size).unwrap_or(0),
            databases: u64::try_from(v.databases).unwrap_or(0),
        })
        .collect();
    Ok(json(
        200,
        &SchemaVersionsResponse {
            platform,
            schema_name,
            latest,
            count: versions.len(),
            versions,
        },
    ))
}

fn no_schema(platform: &str, schema_name: &str) -> MigratorError {
    MigratorError::SchemaNotFound(format!(
        "platform {platform} has no schema {schema_name} (POST /platform/{platform}/schema first)"
    ))
}

/// `GET /platform/{platform}/schemas`.
pub async fn schemas(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platform = r.path_platform()?.to_owned();
    r.grant.may(&platform)?;
    v2_platform(state, &platform).await?;
    let schemas: Vec<SchemaInfo> = state
        .catalog()?
        .schemas(&platform)
        .await?
        .into_iter()
        .map(|(name, v)| SchemaInfo {
            name,
            has_tables: v.has_tables,
            has_functions: v.has_functions,
            has_migrations: v.has_migrations,
            has_seeders: v.has_seeders,
        })
        .collect();
    Ok(json(
        200,
        &SchemaListResponse {
            platform,
            count: schemas.len(),
            schemas,
        },
    ))
}

/// `GET /platform/{platform}/databases[?schema=]`. A database the catalog
/// records that PostgreSQL no longer has is reported, not hidden.
pub async fn databases(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platform = r.path_platform()?.to_owned();
    let schema = r.query("schema");
    if let Some(s) = &schema {
        names::validate_schema_name(s).map_err(bad_name)?;
    }
    r.grant.may(&platform)?;
    v2_platform(state, &platform).await?;
    let recorded = state
        .catalog()?
        .databases(&platform, &[DbKind::V2], schema.as_deref())
        .await?;
    let admin = state.admin.connect(None).await?;
    let existing = state.admin.all_databases(&admin).await?;
    let missing: Vec<&String> = recorded
        .iter()
        .map(|d| &d.name)
        .filter(|n| existing.binary_search(n).is_err())
        .collect();
    let databases: Vec<DatabaseInfo> = recorded
        .iter()
        .map(|d| DatabaseInfo {
            id: d.database_id.clone().unwrap_or_default(),
            database_name: d.name.clone(),
            schema_name: d.schema_name.clone().unwrap_or_default(),
            created_at: d.created_at.clone(),
        })
        .collect();
    let mut body = serde_json::to_value(DatabaseListResponse {
        platform,
        count: databases.len(),
        databases,
    })
    .map_err(|e| MigratorError::Internal(e.to_string()))?;
    if !missing.is_empty() {
        body["inconsistencies"] = serde_json::json!({ "recorded_but_missing": missing });
    }
    Ok(json(200, &body))
}

/// `GET /platforms`: every platform with the API it uses (a deploy token
/// sees its own only).
pub async fn platforms(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let platforms: Vec<PlatformSummary> = state
        .catalog()?
        .platforms()
        .await?
        .into_iter()
        .filter(|p| r.grant.may(&p.name).is_ok())
        .collect();
    Ok(json(
        200,
        &PlatformsResponse {
            count: platforms.len(),
            platforms,
        },
    ))
}

/// A stored version of a schema, parsed, and whether it is the latest.
pub struct Stored {
    pub version: SchemaVersion,
    pub parsed: Arc<Parsed>,
    pub latest: bool,
}

/// The version `choice` names of a stored schema (None or `"latest"`: the
/// latest), parsed: once per version, then kept
/// ([`State::parsed_versions`], by the checksum the catalog records). A
/// version the schema does not have is 404 `schema_not_found` saying so.
pub(crate) async fn stored_schema(
    state: &State,
    platform: &str,
    schema_name: &str,
    choice: Option<VersionChoice>,
) -> Result<Stored, MigratorError> {
    let catalog = state.catalog()?;
    let not_found = || no_schema(platform, schema_name);
    let latest = catalog
        .latest_schema(platform, schema_name)
        .await?
        .ok_or_else(not_found)?;
    let version = match choice {
        Some(VersionChoice::Number(n)) if n != latest.version => catalog
            .schema_version(platform, schema_name, n)
            .await?
            .ok_or_else(|| {
                MigratorError::SchemaNotFound(format!(
                    "schema {schema_name} of platform {platform} has no version {n} (its latest is {}; GET /platform/{platform}/schemas/{schema_name}/versions lists them)",
                    latest.version
                ))
            })?,
        _ => latest.clone(),
    };
    let is_latest = version.version == latest.version;
    let parsed = parsed_version(state, platform, schema_name, &version).await?;
    Ok(Stored {
        version,
        parsed,
        latest: is_latest,
    })
}

/// A stored version's archive, parsed once and then kept.
async fn parsed_version(
    state: &State,
    platform: &str,
    schema_name: &str,
    version: &SchemaVersion,
) -> Result<Arc<Parsed>, MigratorError> {
    let catalog = state.catalog()?;
    let not_found = || no_schema(platform, schema_name);
    if let Some(parsed) = state.parsed_versions.get(&version.checksum) {
        return Ok(parsed);
    }
    let raw = catalog
        .schema_archive(platform, schema_name, version.version)
        .await?
        .ok_or_else(not_found)?;
    let parsed = Arc::new(schema::from_stored(
        &raw,
        &state.limits,
        &format!("stored schema {platform}/{schema_name}"),
    )?);
    state
        .parsed_versions
        .keep(&version.checksum, parsed.text_bytes(), parsed.clone());
    Ok(parsed)
}

/// `POST /database/create {platform, schema_name, database_id, dry_run?}` → 201.
pub async fn database_create(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let body: DatabaseCreateRequest = r.json("database create")?;
    let database = names::v2_database_name(&body.platform, &body.schema_name, &body.database_id)
        .map_err(bad_name)?;
    r.grant.may(&body.platform)?;
    let new = Creation {
        platform: &body.platform,
        schema_name: &body.schema_name,
        database_id: Some(&body.database_id),
        database,
        dry_run: body.dry_run,
        version: body.version,
    };
    create_from_schema(state, r, new).await
}

/// `POST /admin/database/create {platform, schema_name, uuid? | database_id?,
/// dry_run?}` (today's StoneScriptPHP): the same operation as
/// `/database/create`, the tenant as a uuid (`uuid`, or `database_id` as
/// 5.5.1 sends it, under the one uuid rule), no id for the schema's own
/// database. 409 `database_already_exists` means only that this platform's
/// database of that schema and uuid is there and ready; a name anything
/// else holds is 422 `database_name_collision`; one being created, 503.
pub async fn admin_database_create(state: &State, r: &mut Req) -> Result<Answer, MigratorError> {
    let body: AdminDatabaseCreateRequest = r.json("database create")?;
    let uuid = match (&body.uuid, &body.database_id) {
        (Some(_), Some(_)) => {
            return Err(MigratorError::BadRequest(
                "give uuid or database_id (the same tenant id), not both".into(),
            ))
        }
        (u, d) => u.as_deref().or(d.as_deref()),
    };
    let database =
        names::uuid_database_name(&body.platform, &body.schema_name, uuid).map_err(bad_name)?;
    r.grant.may(&body.platform)?;
    let id = uuid.map(|u| u.replace('-', "_"));
    let catalog = state.catalog()?;
    match catalog.database(&database).await? {
        Some(d)
            if d.platform == body.platform
                && d.kind == DbKind::V2
                && d.schema_name.as_deref() == Some(body.schema_name.as_str())
                && d.database_id == id =>
        {
            return Err(if d.state == DbState::Ready {
                MigratorError::DatabaseAlreadyExists(database)
            } else {
                MigratorError::BeingCreated(database)
            });
        }
        Some(_) => return Err(MigratorError::NameCollision(database)),
        None => {}
    }
    let admin = state.admin.connect(None).await?;
    let taken = state.admin.all_databases(&admin).await?.contains(&database);
    if taken || catalog.reserved(&database, &body.platform).await? {
        return Err(MigratorError::NameCollision(database));
    }
    drop(admin);
    let new = Creation {
        platform: &body.platform,
        schema_name: &body.schema_name,
        database_id: id.as_deref(),
        database,
        dry_run: body.dry_run,
        version: body.version,
    };
    match create_from_schema(state, r, new).await {
        // a platform whose prefix covers the name registered meanwhile
        Err(MigratorError::NameReserved(db)) => Err(MigratorError::NameCollision(db)),
        other => other,
    }
}

/// A v2 database to create from a stored version of its schema.
struct Creation<'a> {
    platform: &'a str,
    schema_name: &'a str,
    /// None: the schema's own database `{platform}_{schema_name}`.
    database_id: Option<&'a str>,
    database: String,
    dry_run: bool,
    /// A number: that version, pinned; None or `"latest"`: the latest.
    version: Option<VersionChoice>,
}

/// Create (or, as a dry run, preview) a v2 database: a copy of the
/// schema version's template when it can, else a full deployment.
async fn create_from_schema(
    state: &State,
    r: &Req,
    c: Creation<'_>,
) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let database = c.database;
    let platform = v2_platform(state, c.platform).await?;
    let stored = stored_schema(state, c.platform, c.schema_name, c.version).await?;
    let (version, parsed) = (&stored.version, &stored.parsed);
    let pinned = matches!(c.version, Some(VersionChoice::Number(_)));
    let req = Request {
        operation: Operation::DatabaseCreate,
        archive_sha256: Some(&version.archive_sha256),
        caller: &r.caller,
        new_database: false,
    };
    let wanted = Wanted {
        name: database.clone(),
        kind: DbKind::V2,
        tenant_id: None,
        schema: Some(FromSchema {
            name: c.schema_name,
            version,
            database_id: c.database_id,
            pinned,
            latest: stored.latest,
        }),
        deploy_existing: false,
        dry_run: c.dry_run,
        force: false,
    };
    let report = placement::deploy(state, Owner::Known(&platform), wanted, parsed, req).await?;
    info!(state.log, "database created"; "database" => &database, "dry_run" => c.dry_run,
          "version" => version.version, "pinned" => pinned,
          "ms" => started.elapsed().as_millis() as u64);
    Ok(json(
        if c.dry_run { 200 } else { 201 },
        &DatabaseCreateResponse {
            status: if c.dry_run {
                RequestStatus::WouldCreate
            } else {
                RequestStatus::Created
            },
            platform: c.platform.to_owned(),
            schema_name: c.schema_name.to_owned(),
            database_name: database,
            extensions_installed: report.extensions_installed,
            types_deployed: report.types_deployed,
            tables_created: report.tables_created,
            functions_deployed: report.functions_created + report.functions_updated,
            seeders: report.seeders,
            execution_time_ms: started.elapsed().as_millis() as u64,
            version: version.version,
            pinned,
            // (a dry run previews in a throwaway database: whether the
            // real creation would copy a template)
            full_deployment: if c.dry_run {
                !stored.latest
            } else {
                !report.from_template
            },
        },
    ))
}

/// One database of a run over a schema's databases, with its platform
/// (not a `/v2/migrate-all` job, which is a whole run).
pub struct Member {
    pub platform: Arc<Platform>,
    pub db: Database,
}

/// One database's migration, as [`migrate_one`] does it.
pub type StepFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<fleet::Done, MigratorError>> + Send>>;

/// What a run over a schema's databases brings them to: a stored version
/// and what the request said of pinning.
pub struct Target {
    pub version: SchemaVersion,
    pub parsed: Arc<Parsed>,
    /// `version` named: `Some(true)` a number (pin there), `Some(false)`
    /// `"latest"` (unpin); None: not named, pinned databases stay.
    pub pin: Option<bool>,
}

/// The target of a run as its request's `version` names it (see
/// [`stored_schema`] for a version the schema does not have).
pub(crate) async fn target(
    state: &State,
    platform: &str,
    schema_name: &str,
    choice: Option<VersionChoice>,
) -> Result<Target, MigratorError> {
    let stored = stored_schema(state, platform, schema_name, choice).await?;
    Ok(Target {
        version: stored.version,
        parsed: stored.parsed,
        pin: choice.map(|c| matches!(c, VersionChoice::Number(_))),
    })
}

/// The step of a run over a schema's databases (`/v2/migrate`, a
/// `/v2/migrate-all` job): each database migrated by [`migrate_one`] to
/// `target` with `opts`, as `caller` asked.
pub fn migrate_step(
    state: &Arc<State>,
    platform: Arc<Platform>,
    target: Target,
    opts: Options,
    caller: &crate::catalog::Caller,
) -> impl Fn(Database) -> StepFuture + Send + Sync + 'static {
    let (state, target, caller) = (state.clone(), Arc::new(target), Arc::new(caller.clone()));
    move |db: Database| {
        let member = Member {
            platform: platform.clone(),
            db,
        };
        Box::pin(migrate_one(
            state.clone(),
            member,
            target.clone(),
            opts,
            caller.clone(),
        ))
    }
}

/// Migrate one database of the fleet (the step of its [`fleet::Run`]);
/// returns its report and what verification found. A pinned database is
/// left where it is (status `pinned`) unless the request named a version.
/// A database already at the target version (and pin) is not deployed to
/// (unless `force`), but its declared objects and seeded rows are still
/// verified, read-only. A target older than the database's version is a
/// rollback ([`Options::rolling_back`]). `opts` carries `force`, the
/// `allow`ed classes and `dry_run` ([`Options::migrate`]). The catalog
/// records the version and the pin with the deployment's outcome.
/// Verification is reported, never a failure (so `skip_verification`
/// changes nothing here).
pub async fn migrate_one(
    state: Arc<State>,
    member: Member,
    target: Arc<Target>,
    opts: Options,
    caller: Arc<crate::catalog::Caller>,
) -> Result<fleet::Done, MigratorError> {
    let db = member.db.name.clone();
    let parsed = &target.parsed;
    let version = target.version.version;
    if target.pin.is_none() && member.db.pinned {
        let at = member
            .db
            .schema_version
            .map_or_else(|| "its version".to_owned(), |v| format!("version {v}"));
        let report = DeploymentReport {
            database: db,
            status: DeployStatus::Pinned,
            notes: vec![format!(
                "pinned at {at}: left there; migrate it with \"version\" to move it (\"latest\" unpins it)"
            )],
            ..DeploymentReport::default()
        };
        return Ok((report, None));
    }
    let same_pin = target.pin.is_none_or(|p| p == member.db.pinned);
    let result = async {
        if member.db.schema_version == Some(version) && same_pin && !opts.force {
            let mut client = state
                .admin
                .connect_as(
                    &db,
                    &member.platform.owner_role,
                    &member.platform.owner_password,
                )
                .await?;
            let (verification, seeders) = deploy::verify(&mut client, parsed).await?;
            let report = DeploymentReport {
                database: db.clone(),
                status: DeployStatus::Skipped,
                seeders,
                ..DeploymentReport::default()
            };
            return Ok::<_, MigratorError>((report, verification));
        }
        let req = Request {
            operation: Operation::V2Migrate,
            archive_sha256: Some(&target.version.archive_sha256),
            caller: &caller,
            new_database: false,
        };
        let opts = opts.rolling_back(is_rollback(member.db.schema_version, version));
        let at = provision::At {
            version,
            pinned: target.pin,
        };
        let (report, mut client) =
            provision::deploy_existing(&state, &member.platform, &db, parsed, opts, req, Some(at))
                .await?;
        let (verification, _) = deploy::verify(&mut client, parsed).await?;
        Ok((report, verification))
    }
    .await;
    result.map(|(report, verification)| (report, Some(verification)))
}

fn ndjson_line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A run's outcomes as they come in, each also sent to `lines` as one
/// NDJSON line (when the caller streams), kept by database for the summary.
async fn collect(
    mut outcomes: mpsc::Receiver<fleet::Finished>,
    lines: Option<&mpsc::Sender<Bytes>>,
) -> BTreeMap<String, fleet::Done> {
    let mut results = BTreeMap::new();
    while let Some(finished) = outcomes.recv().await {
        let (r, v) = finished.into_report();
        if let Some(tx) = lines {
            // a client gone stops nothing: the run goes on
            let _ = tx.send(ndjson_line(&r)).await;
        }
        results.insert(r.database.clone(), (r, v));
    }
    results
}

/// The one database a `/v2/migrate` names (by `database_id`, or by
/// `uuid` in either spelling), None for every database of the schema.
fn named_database(req: &V2MigrateRequest) -> Result<Option<String>, MigratorError> {
    let name = match (&req.database_id, &req.uuid) {
        (Some(_), Some(_)) => {
            return Err(MigratorError::BadRequest(
                "give uuid or database_id (the same database), not both".into(),
            ))
        }
        (Some(id), None) => names::v2_database_name(&req.platform, &req.schema_name, id),
        (None, Some(uuid)) => {
            names::uuid_either_database_name(&req.platform, &req.schema_name, uuid)
        }
        (None, None) => return Ok(None),
    };
    name.map(Some).map_err(bad_name)
}

/// The databases a `/v2/migrate` goes through: the one it names, or every
/// one of the schema.
async fn targets(
    state: &State,
    req: &V2MigrateRequest,
    named: Option<String>,
) -> Result<Vec<Database>, MigratorError> {
    let Some(name) = named else {
        return state
            .catalog()?
            .databases(&req.platform, &[DbKind::V2], Some(&req.schema_name))
            .await;
    };
    let db = provision::owned(state, &req.platform, &name, &[DbKind::V2]).await?;
    if db.schema_name.as_deref() != Some(req.schema_name.as_str()) {
        return Err(MigratorError::DatabaseNotFound(name));
    }
    Ok(vec![db])
}

/// `POST /v2/migrate`.
pub async fn v2_migrate(state: Arc<State>, r: Req) -> Result<Reply, MigratorError> {
    let started = Instant::now();
    let req: V2MigrateRequest = r.json("v2 migrate")?;
    names::validate_platform(&req.platform).map_err(bad_name)?;
    names::validate_schema_name(&req.schema_name).map_err(bad_name)?;
    let named = named_database(&req)?;
    r.grant.may(&req.platform)?;
    let platform = Arc::new(v2_platform(&state, &req.platform).await?);
    let target = target(&state, &req.platform, &req.schema_name, req.version).await?;
    let databases = targets(&state, &req, named).await?;
    let run = fleet::Run {
        databases,
        canary: req.canary,
        stop_on_error: req.stop_on_error,
        concurrency: state.migrate_concurrency,
    };
    let opts = Options::migrate(req.force, &req.allow, req.dry_run);
    let step = migrate_step(&state, platform, target, opts, &r.caller);
    let outcomes = fleet::start(state.clone(), run, step);
    if r.stream {
        let (line_tx, line_rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let results = collect(outcomes, Some(&line_tx)).await;
            let (summary, _) = summarize(&req, results, started);
            let _ = line_tx.send(ndjson_line(&summary)).await;
        });
        return Ok(Reply::Stream(line_rx));
    }
    // Not streaming: the summary only.
    let results = collect(outcomes, None).await;
    let (summary, failed) = summarize(&req, results, started);
    if failed == 0 {
        return Ok(Reply::Full(json(200, &summary)));
    }
    let code = ErrorCode::MigrationFailed;
    let migrated = summary.results.len() - failed;
    let mut body = ErrorBody::new(
        code,
        format!(
            "{failed} of {} databases failed to migrate (each is as it was); {migrated} were migrated or skipped",
            summary.results.len()
        ),
    );
    body.details = serde_json::to_value(&summary).ok();
    Ok(Reply::Full(json(code.status(), &body)))
}

/// The answer to a `/v2/migrate` (the last NDJSON line when streamed), and
/// how many databases failed.
fn summarize(
    req: &V2MigrateRequest,
    results: BTreeMap<String, fleet::Done>,
    started: Instant,
) -> (V2MigrateResponse, usize) {
    let total = results.len();
    let failed = results
        .values()
        .filter(|(r, _)| r.status == DeployStatus::Failed)
        .count();
    // verified means: every database reported on was verified and passed
    // (a pinned database left where it was is not reported on)
    let verifications: Vec<&Verification> =
        results.values().filter_map(|(_, v)| v.as_ref()).collect();
    let left = results
        .values()
        .filter(|(r, _)| r.status == DeployStatus::Pinned)
        .count();
    let every = verifications.len() + left == results.len();
    let all = |f: fn(&Verification) -> bool| every && verifications.iter().all(|v| f(v));
    let verification = Verification {
        passed: failed == 0 && all(|v| v.passed),
        extensions_verified: all(|v| v.extensions_verified),
        types_verified: all(|v| v.types_verified),
        tables_verified: all(|v| v.tables_verified),
        seeders_verified: all(|v| v.seeders_verified),
    };
    let reports: Vec<DeploymentReport> = results.into_values().map(|(r, _)| r).collect();
    let summary = V2MigrateResponse {
        status: RequestStatus::of_migration(req.dry_run, failed, total),
        platform: req.platform.clone(),
        schema_name: req.schema_name.clone(),
        databases_updated: reports
            .iter()
            .filter(|r| r.status == DeployStatus::Updated)
            .map(|r| r.database.clone())
            .collect(),
        migrations_applied: reports.iter().map(|r| r.migrations_applied).sum(),
        functions_updated: reports
            .iter()
            .map(|r| r.functions_updated + r.functions_created + r.functions_dropped)
            .sum(),
        seeder_validations: reports
            .iter()
            .flat_map(|r| r.seeders.iter().cloned())
            .collect::<Vec<SeederResult>>(),
        schema_validation: merged_validation(&reports),
        verification,
        results: reports,
        execution_time_ms: started.elapsed().as_millis() as u64,
    };
    (summary, failed)
}

/// Each distinct change of the databases' `schema_validation`, once, in
/// order of first appearance (tenant databases of one schema usually report
/// the same changes).
fn merged_validation(reports: &[DeploymentReport]) -> SchemaValidation {
    let mut out = SchemaValidation::default();
    let add = |list: &mut Vec<String>, from: &[String]| {
        for c in from {
            if !list.contains(c) {
                list.push(c.clone());
            }
        }
    };
    for r in reports {
        let v = &r.schema_validation;
        add(&mut out.safe_changes, &v.safe_changes);
        add(&mut out.dataloss_changes, &v.dataloss_changes);
        add(&mut out.incompatible_changes, &v.incompatible_changes);
    }
    out
}
