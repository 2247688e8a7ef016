//! The v2 stored-schema API: `/platform/register`, `/platform/{p}/schema`,
//! `/platform/{p}/schemas`, `/platform/{p}/databases`, `/platforms`,
//! `/database/create` and `/v2/migrate` (bounded parallelism, canary,
//! stop-on-error, NDJSON progress).
//!
//! New databases are cloned from a template database that holds each schema
//! version deployed once (`CREATE DATABASE … TEMPLATE`), so creating one takes
//! a file copy instead of a deployment; if the template cannot be built or
//! used, the database gets a full deployment instead. Tracking tables are
//! identical either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Bytes;
use slog::{info, warn};
use stonescriptdb_shared::error::{ErrorBody, ErrorCode};
use stonescriptdb_shared::names::{self, quote_ident};
use stonescriptdb_shared::wire::{
    DatabaseCreateRequest, DatabaseCreateResponse, DatabaseInfo, DatabaseListResponse,
    DeploymentReport, PlatformRegisterRequest, PlatformRegisterResponse, PlatformSummary,
    PlatformsResponse, SchemaInfo, SchemaListResponse, SchemaUploadResponse, SchemaValidation,
    SeederResult, V2MigrateRequest, V2MigrateResponse, Verification,
};
use tokio::sync::{mpsc, Mutex, Semaphore};

use crate::archive;
use crate::deploy::{Mode, Options};
use crate::error::MigratorError;
use crate::handlers::{json, read_archive, text_field, Answer};
use crate::multipart::Field;
use crate::registry::{now_rfc3339, DatabaseEntry, SchemaVersion};
use crate::schema::{self, sha256_hex, Parsed};
use crate::server::State;

fn bad_name(e: names::NameError) -> MigratorError {
    MigratorError::BadRequest(e.to_string())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, MigratorError> {
    serde_json::from_slice(body)
        .map_err(|e| MigratorError::BadRequest(format!("invalid {what} body: {e}")))
}

/// `POST /platform/register {platform}` → 201.
pub async fn platform_register(state: &State, body: &[u8]) -> Result<Answer, MigratorError> {
    let req: PlatformRegisterRequest = parse_json(body, "platform register")?;
    names::validate_platform(&req.platform).map_err(bad_name)?;
    if !state.registry.register(&req.platform).await? {
        return Err(MigratorError::BadRequest(format!(
            "Platform '{}' is already registered",
            req.platform
        )));
    }
    info!(state.log, "platform registered"; "platform" => &req.platform);
    Ok(json(
        201,
        &PlatformRegisterResponse {
            status: "registered".into(),
            message: format!(
                "Platform registered. Use POST /platform/{}/schema to add schemas.",
                req.platform
            ),
            platform: req.platform,
        },
    ))
}

/// `POST /platform/{platform}/schema` (multipart `schema_name`|`name`, `schema`|`file`) → 201.
pub async fn schema_upload(
    state: &State,
    platform: &str,
    fields: HashMap<String, Field>,
) -> Result<Answer, MigratorError> {
    names::validate_platform(platform).map_err(bad_name)?;
    state.registry.get(platform)?;
    let schema_name = match text_field(&fields, "schema_name")? {
        Some(n) => n,
        None => text_field(&fields, "name")?.ok_or_else(|| {
            MigratorError::BadRequest("missing field schema_name (or name)".into())
        })?,
    };
    names::validate_schema_name(&schema_name).map_err(bad_name)?;
    let (raw, schema) = read_archive(state, &fields)?;
    schema::parse(&schema)?;
    let meta = SchemaVersion {
        version: 0,
        checksum: schema.checksum.clone(),
        uploaded_at: now_rfc3339(),
        has_tables: !schema.tables.is_empty(),
        has_functions: !schema.functions.is_empty(),
        has_migrations: !schema.migrations.is_empty(),
        has_seeders: !schema.seeders.is_empty(),
    };
    let stored = state
        .registry
        .add_version(platform, &schema_name, &raw, meta)
        .await?;
    info!(state.log, "schema stored"; "platform" => platform, "schema" => &schema_name, "version" => stored.version);
    Ok(json(
        201,
        &SchemaUploadResponse {
            status: "registered".into(),
            platform: platform.to_owned(),
            schema_name,
            has_tables: stored.has_tables,
            has_functions: stored.has_functions,
            has_migrations: stored.has_migrations,
            checksum: stored.checksum,
        },
    ))
}

/// `GET /platform/{platform}/schemas`.
pub async fn schemas(state: &State, platform: &str) -> Result<Answer, MigratorError> {
    let file = state.registry.get(platform)?;
    let schemas: Vec<SchemaInfo> = file
        .schemas
        .iter()
        .filter_map(|(name, e)| {
            e.latest().map(|v| SchemaInfo {
                name: name.clone(),
                has_tables: v.has_tables,
                has_functions: v.has_functions,
                has_migrations: v.has_migrations,
                has_seeders: v.has_seeders,
            })
        })
        .collect();
    Ok(json(
        200,
        &SchemaListResponse {
            platform: platform.to_owned(),
            count: schemas.len(),
            schemas,
        },
    ))
}

fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// `GET /platform/{platform}/databases[?schema=]`. Databases recorded in the
/// registry but missing from PostgreSQL, and databases that look like this
/// platform's v2 databases but are not recorded, are reported, not hidden.
pub async fn databases(
    state: &State,
    platform: &str,
    query: Option<&str>,
) -> Result<Answer, MigratorError> {
    let file = state.registry.get(platform)?;
    let filter = query_param(query, "schema");
    let databases: Vec<DatabaseInfo> = file
        .databases
        .values()
        .filter(|d| filter.is_none_or(|f| d.schema_name == f))
        .map(|d| DatabaseInfo {
            id: d.id.clone(),
            database_name: d.database_name.clone(),
            schema_name: d.schema_name.clone(),
            created_at: d.created_at.clone(),
        })
        .collect();
    let admin = state.admin.connect(None).await?;
    let existing = state.admin.platform_databases(&admin, platform).await?;
    let missing: Vec<String> = databases
        .iter()
        .map(|d| d.database_name.clone())
        .filter(|n| !existing.iter().any(|e| e == n))
        .collect();
    let unrecorded: Vec<&String> = existing
        .iter()
        .filter(|e| {
            !file.databases.contains_key(*e)
                && file.schemas.keys().any(|s| {
                    e.strip_prefix(&format!("{platform}_{s}_"))
                        .is_some_and(|rest| {
                            filter.is_none_or(|f| f == s)
                                && names::validate_database_id(rest).is_ok()
                        })
                })
        })
        .collect();
    let mut body = serde_json::to_value(DatabaseListResponse {
        platform: platform.to_owned(),
        count: databases.len(),
        databases,
    })
    .map_err(|e| MigratorError::Internal(e.to_string()))?;
    if !missing.is_empty() || !unrecorded.is_empty() {
        body["inconsistencies"] = serde_json::json!({
            "recorded_but_missing": missing,
            "present_but_unrecorded": unrecorded,
        });
    }
    Ok(json(200, &body))
}

/// `GET /platforms`.
pub async fn platforms(state: &State) -> Result<Answer, MigratorError> {
    let platforms: Vec<PlatformSummary> = state
        .registry
        .platforms()?
        .into_iter()
        .map(|p| PlatformSummary {
            schemas: p.schemas.len(),
            databases: p.databases.len(),
            name: p.name,
        })
        .collect();
    Ok(json(
        200,
        &PlatformsResponse {
            count: platforms.len(),
            platforms,
        },
    ))
}

/// The stored schema (latest version) of a platform, parsed.
fn stored_schema(
    state: &State,
    platform: &str,
    schema_name: &str,
) -> Result<(SchemaVersion, Parsed), MigratorError> {
    let file = state.registry.get(platform)?;
    let version = file
        .schemas
        .get(schema_name)
        .and_then(|e| e.latest())
        .cloned()
        .ok_or_else(|| {
            MigratorError::SchemaNotFound(format!(
                "platform {platform} has no schema {schema_name} (POST /platform/{platform}/schema first)"
            ))
        })?;
    let raw = state
        .registry
        .archive(platform, schema_name, version.version)?;
    let schema = archive::read_schema(&raw, &state.limits).map_err(|e| {
        MigratorError::Internal(format!(
            "stored schema {platform}/{schema_name} is unreadable: {e}"
        ))
    })?;
    Ok((version, schema::parse(&schema)?))
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
    platform: &str,
    schema_name: &str,
    v: &SchemaVersion,
    parsed: &Parsed,
) -> Option<(String, DeploymentReport)> {
    let name = template_name(platform, schema_name, v);
    let lock = {
        let mut locks = state.template_locks.lock().await;
        locks
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    };
    let _guard = lock.lock().await;
    let report_path = state
        .registry
        .archive_path(platform, schema_name, v.version)
        .with_extension("template.json");
    let admin = state.admin.connect(None).await.ok()?;
    if let Ok(data) = std::fs::read(&report_path) {
        if let Ok(report) = serde_json::from_slice::<DeploymentReport>(&data) {
            if state.admin.exists(&admin, &name).await.unwrap_or(false) {
                return Some((name, report));
            }
        }
    }
    let built = async {
        drop_template(state, &admin, &name).await?;
        // owned by the platform's role, deployed as it, like any of its databases
        let report = crate::handlers::deploy_new(state, platform, &name, parsed).await?;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                quote_ident(&name)
            ))
            .await
            .map_err(|e| MigratorError::Internal(crate::error::pg_message(&e)))?;
        let data =
            serde_json::to_vec(&report).map_err(|e| MigratorError::Internal(e.to_string()))?;
        crate::store::write_atomic(&report_path, &data)
            .map_err(|e| MigratorError::Internal(e.to_string()))?;
        Ok::<_, MigratorError>(report)
    }
    .await;
    match built {
        Ok(report) => {
            info!(state.log, "template built"; "template" => &name, "platform" => platform, "schema" => schema_name);
            Some((name, report))
        }
        Err(e) => {
            warn!(state.log, "template could not be built; deploying in full"; "template" => &name, "error" => ?e);
            let _ = drop_template(state, &admin, &name).await;
            None
        }
    }
}

async fn drop_template(
    state: &State,
    admin: &tokio_postgres::Client,
    name: &str,
) -> Result<(), MigratorError> {
    if state.admin.exists(admin, name).await? {
        let _ = admin
            .batch_execute(&format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE false ALLOW_CONNECTIONS true",
                quote_ident(name)
            ))
            .await;
        state.admin.drop(admin, name).await?;
    }
    Ok(())
}

/// `POST /database/create {platform, schema_name, database_id}` → 201.
pub async fn database_create(state: &State, body: &[u8]) -> Result<Answer, MigratorError> {
    let started = Instant::now();
    let req: DatabaseCreateRequest = parse_json(body, "database create")?;
    let database = names::v2_database_name(&req.platform, &req.schema_name, &req.database_id)
        .map_err(bad_name)?;
    let (version, parsed) = stored_schema(state, &req.platform, &req.schema_name)?;
    let report = match template(state, &req.platform, &req.schema_name, &version, &parsed).await {
        Some((tpl, tpl_report)) => {
            let admin = state.admin.connect(None).await?;
            let creds = state.roles.ensure(&admin, &req.platform).await?;
            let sql_text = format!(
                "CREATE DATABASE {} TEMPLATE {} OWNER {}",
                quote_ident(&database),
                quote_ident(&tpl),
                quote_ident(&creds.owner_role)
            );
            match admin.batch_execute(&sql_text).await {
                Ok(()) => {
                    state.admin.restrict(&admin, &database).await?;
                    state.roles.add_database(&req.platform, &database).await?;
                    state.metrics.database_created();
                    DeploymentReport {
                        database: database.clone(),
                        status: "created".into(),
                        ..tpl_report
                    }
                }
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) =>
                {
                    return Err(MigratorError::DatabaseAlreadyExists(database));
                }
                Err(e) => {
                    warn!(state.log, "clone from template failed; deploying in full"; "database" => &database, "error" => %e);
                    crate::handlers::deploy_new(state, &req.platform, &database, &parsed).await?
                }
            }
        }
        None => crate::handlers::deploy_new(state, &req.platform, &database, &parsed).await?,
    };
    let entry = DatabaseEntry {
        id: req.database_id.clone(),
        database_name: database.clone(),
        schema_name: req.schema_name.clone(),
        created_at: now_rfc3339(),
        version: version.version,
    };
    state
        .registry
        .update(&req.platform, |f| {
            f.databases.insert(database.clone(), entry);
            Ok(())
        })
        .await?;
    info!(state.log, "database created"; "database" => &database, "ms" => started.elapsed().as_millis() as u64);
    Ok(json(
        201,
        &DatabaseCreateResponse {
            status: "created".into(),
            platform: req.platform,
            schema_name: req.schema_name,
            database_name: database,
            extensions_installed: report.extensions_installed,
            types_deployed: report.types_deployed,
            tables_created: report.tables_created,
            functions_deployed: report.functions_created + report.functions_updated,
            seeders: report.seeders,
            execution_time_ms: started.elapsed().as_millis() as u64,
        },
    ))
}

/// What `/v2/migrate` answers: a full body, or NDJSON lines as they come.
pub enum Reply {
    Full(Answer),
    Stream(mpsc::Receiver<Bytes>),
}

struct Job {
    platform: String,
    entry: DatabaseEntry,
}

/// Migrate one database of the fleet; returns its report (status `failed`
/// with `error` on failure).
async fn migrate_one(
    state: Arc<State>,
    parsed: Arc<Parsed>,
    job: Job,
    target: u32,
    force: bool,
) -> (DeploymentReport, Option<Verification>) {
    let db = job.entry.database_name.clone();
    if job.entry.version == target && !force {
        return (
            DeploymentReport {
                database: db,
                status: "skipped".into(),
                ..DeploymentReport::default()
            },
            None,
        );
    }
    let opts = Options {
        mode: Mode::Migrate,
        force,
        dry_run: false,
    };
    let result = async {
        let (mut report, verification) =
            crate::handlers::deploy_existing_verified(&state, &job.platform, &db, &parsed, opts)
                .await?;
        if report.status == "unchanged" {
            report.status = "updated".into();
        }
        Ok::<_, MigratorError>((report, verification))
    }
    .await;
    match result {
        Ok((report, verification)) => (report, Some(verification)),
        Err(e) => {
            let (_, body) = e.to_wire();
            (
                DeploymentReport {
                    database: db,
                    status: "failed".into(),
                    error: Some(body),
                    ..DeploymentReport::default()
                },
                None,
            )
        }
    }
}

fn ndjson_line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// `POST /v2/migrate`.
pub async fn v2_migrate(
    state: Arc<State>,
    body: &[u8],
    stream: bool,
) -> Result<Reply, MigratorError> {
    let started = Instant::now();
    let req: V2MigrateRequest = parse_json(body, "v2 migrate")?;
    names::validate_platform(&req.platform).map_err(bad_name)?;
    names::validate_schema_name(&req.schema_name).map_err(bad_name)?;
    let (version, parsed) = stored_schema(&state, &req.platform, &req.schema_name)?;
    let file = state.registry.get(&req.platform)?;
    let mut jobs: Vec<Job> = file
        .databases
        .values()
        .filter(|d| d.schema_name == req.schema_name)
        .filter(|d| req.database_id.as_deref().is_none_or(|id| d.id == id))
        .map(|d| Job {
            platform: req.platform.clone(),
            entry: d.clone(),
        })
        .collect();
    if let Some(id) = &req.database_id {
        if jobs.is_empty() {
            let db =
                names::v2_database_name(&req.platform, &req.schema_name, id).map_err(bad_name)?;
            return Err(MigratorError::DatabaseNotFound(db));
        }
    }
    jobs.sort_by(|a, b| a.entry.database_name.cmp(&b.entry.database_name));
    let parsed = Arc::new(parsed);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let target = version.version;
    let run_state = state.clone();
    let task = tokio::spawn(async move {
        let state = run_state;
        let total = jobs.len();
        let mut results: BTreeMap<String, (DeploymentReport, Option<Verification>)> =
            BTreeMap::new();
        let mut queue = jobs.into_iter();
        // canary: the first database alone
        let mut stop = false;
        if req.canary {
            if let Some(first) = queue.next() {
                let (r, v) =
                    migrate_one(state.clone(), parsed.clone(), first, target, req.force).await;
                let _ = tx.send(ndjson_line(&r)).await;
                stop = r.status == "failed";
                results.insert(r.database.clone(), (r, v));
            }
        }
        let limit = Arc::new(Semaphore::new(state.migrate_concurrency));
        let mut set: tokio::task::JoinSet<(DeploymentReport, Option<Verification>)> =
            tokio::task::JoinSet::new();
        let mut failed_seen = stop;
        for job in queue.by_ref() {
            let permit = if stop || (req.stop_on_error && failed_seen) {
                None
            } else {
                limit.clone().acquire_owned().await.ok()
            };
            // collect finished ones without blocking, to learn about failures early
            while let Some(done) = set.try_join_next() {
                if let Ok((r, v)) = done {
                    failed_seen |= r.status == "failed";
                    let _ = tx.send(ndjson_line(&r)).await;
                    results.insert(r.database.clone(), (r, v));
                }
            }
            let Some(permit) = permit.filter(|_| !(req.stop_on_error && failed_seen)) else {
                let r = DeploymentReport {
                    database: job.entry.database_name.clone(),
                    status: "not_attempted".into(),
                    ..DeploymentReport::default()
                };
                let _ = tx.send(ndjson_line(&r)).await;
                results.insert(r.database.clone(), (r, None));
                continue;
            };
            let (st, p, force) = (state.clone(), parsed.clone(), req.force);
            set.spawn(async move {
                let out = migrate_one(st, p, job, target, force).await;
                drop(permit);
                out
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((r, v)) = done {
                let _ = tx.send(ndjson_line(&r)).await;
                results.insert(r.database.clone(), (r, v));
            }
        }
        // record versions of the databases that are now at the target
        let done: Vec<String> = results
            .values()
            .filter(|(r, _)| r.status == "updated" || r.status == "unchanged")
            .map(|(r, _)| r.database.clone())
            .collect();
        if !done.is_empty() {
            let _ = state
                .registry
                .update(&req.platform, |f| {
                    for db in &done {
                        if let Some(e) = f.databases.get_mut(db) {
                            e.version = target;
                        }
                    }
                    Ok(())
                })
                .await;
        }
        let failed = results
            .values()
            .filter(|(r, _)| r.status == "failed")
            .count();
        let verifications: Vec<&Verification> =
            results.values().filter_map(|(_, v)| v.as_ref()).collect();
        let all = |f: fn(&Verification) -> bool| verifications.iter().all(|v| f(v));
        let verification = Verification {
            passed: failed == 0 && all(|v| v.passed),
            extensions_verified: all(|v| v.extensions_verified),
            types_verified: all(|v| v.types_verified),
            tables_verified: all(|v| v.tables_verified),
            seeders_verified: all(|v| v.seeders_verified),
        };
        let reports: Vec<DeploymentReport> = results.into_values().map(|(r, _)| r).collect();
        let summary = V2MigrateResponse {
            status: if failed == 0 {
                "completed"
            } else if failed == total {
                "failed"
            } else {
                "partial"
            }
            .into(),
            platform: req.platform.clone(),
            schema_name: req.schema_name.clone(),
            databases_updated: reports
                .iter()
                .filter(|r| r.status == "updated")
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
    });
    if stream {
        let (line_tx, line_rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let mut rx = rx;
            let forward = async {
                while let Some(line) = rx.recv().await {
                    if line_tx.send(line).await.is_err() {
                        break;
                    }
                }
            };
            forward.await;
            if let Ok((summary, _)) = task.await {
                let _ = line_tx.send(ndjson_line(&summary)).await;
            }
        });
        return Ok(Reply::Stream(line_rx));
    }
    // Not streaming: drain progress lines, answer with the summary.
    let drain = tokio::spawn(async move {
        let mut rx = rx;
        while rx.recv().await.is_some() {}
    });
    let (summary, failed) = task
        .await
        .map_err(|e| MigratorError::Internal(format!("migration task failed: {e}")))?;
    let _ = drain.await;
    if failed == 0 {
        return Ok(Reply::Full(json(200, &summary)));
    }
    let code = ErrorCode::MigrationFailed;
    let mut body = ErrorBody::new(
        code,
        format!(
            "{failed} of {} databases failed to migrate",
            summary.results.len()
        ),
    );
    body.details = serde_json::to_value(&summary).ok();
    Ok(Reply::Full(json(code.status(), &body)))
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
