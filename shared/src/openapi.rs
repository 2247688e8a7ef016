//! The OpenAPI document of the HTTP API, generated from the code: component
//! schemas from the wire types' derives (fields, required fields, enums,
//! `additionalProperties: false` for `deny_unknown_fields`), name constraints
//! from [`crate::names`]' rules, paths from [`crate::routes::ROUTES`] and the
//! operation of each route's id ([`operation_of`]), form fields from the
//! constants the migrator parses forms with. Only the tests crate compiles
//! this module (feature `openapi`): a test writes `docs/openapi.json`, fails
//! when it was stale, and sends real requests to every route to check the
//! answers against it; the router serves that file.

use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};

use utoipa::ToSchema;

use crate::error::{ErrorBody, ErrorCode, SchemaValidation};
use crate::names::{self, NameRule};
use crate::routes::{MigratorRoute as M, RouteId, RouterRoute as R, Served, ROUTES};
use crate::wire::*;

fn apply_rule(v: &mut Value, rule: &NameRule) {
    v["pattern"] = json!(rule.pattern);
    v["maxLength"] = json!(rule.max_len);
}

/// Name rules by property name (of the schema `of`: `/v2/migrate` takes
/// a uuid in either spelling), applied to request bodies, forms and
/// parameters.
fn rule_of(of: &str, property: &str) -> Option<&'static NameRule> {
    Some(match property {
        "uuid" if of == "V2MigrateRequest" => &names::UUID_EITHER,
        "platform" => &names::PLATFORM,
        // `schema`: the query parameter (the form's file field is binary)
        "schema_name" | "name" | "schema" => &names::SCHEMA_NAME,
        "tenant_id" => &names::TENANT_ID,
        "database_id" => &names::DATABASE_ID,
        "uuid" => &names::UUID,
        "database" | "databases" => &names::DATABASE,
        "function" => &names::FUNCTION,
        _ => return None,
    })
}

/// The closed word lists of request properties that serde reads as enums.
fn words_of(property: &str) -> Option<Vec<&'static str>> {
    match property {
        "allow" => Some(AllowClass::ALL.iter().map(|c| c.as_str()).collect()),
        _ => None,
    }
}

/// Add the naming rules to every plain string property of a request schema
/// (named `of`), and their words to the closed lists.
fn constrain(object: &mut Value, of: &str) {
    let Some(props) = object.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, prop) in props.iter_mut() {
        if let Some(words) = words_of(name) {
            match prop.get("type") == Some(&json!("array")) {
                true => prop["items"]["enum"] = json!(words),
                false => prop["enum"] = json!(words),
            }
        }
        let Some(rule) = rule_of(of, name) else {
            continue;
        };
        let target = if prop.get("type") == Some(&json!("array")) {
            &mut prop["items"]
        } else {
            prop
        };
        let is_string = matches!(target.get("type"), Some(t) if t == "string" || t == &json!(["string", "null"]));
        if is_string && target.get("format").is_none() {
            apply_rule(target, rule);
        }
    }
}

type Entry = (String, RefOr<Schema>);

fn add<T: ToSchema>(out: &mut Vec<Entry>) {
    T::schemas(out);
    out.push((T::name().into_owned(), T::schema()));
}

fn components() -> Map<String, Value> {
    let mut all = Vec::new();
    add::<ErrorBody>(&mut all);
    add::<ErrorCode>(&mut all);
    add::<SchemaValidation>(&mut all);
    add::<CallRequest>(&mut all);
    add::<CallResponse>(&mut all);
    add::<HealthResponse>(&mut all);
    add::<PoolsStats>(&mut all);
    add::<PoolStats>(&mut all);
    add::<ProbeResponse>(&mut all);
    add::<CreateTenantRequest>(&mut all);
    add::<AdoptRequest>(&mut all);
    add::<AdoptedDatabase>(&mut all);
    add::<AdoptResponse>(&mut all);
    add::<RefreshRequest>(&mut all);
    add::<RefreshResponse>(&mut all);
    add::<DeploymentRecord>(&mut all);
    add::<DeploymentsResponse>(&mut all);
    add::<SeederResult>(&mut all);
    add::<PlanStep>(&mut all);
    add::<Verification>(&mut all);
    add::<DeployStatus>(&mut all);
    add::<RequestStatus>(&mut all);
    add::<DeploymentReport>(&mut all);
    add::<DeployResponse>(&mut all);
    add::<AdminDatabasesResponse>(&mut all);
    add::<DatabaseItem>(&mut all);
    add::<LastDeployment>(&mut all);
    add::<PlatformRegisterRequest>(&mut all);
    add::<PlatformRegisterResponse>(&mut all);
    add::<SchemaUploadResponse>(&mut all);
    add::<SchemaInfo>(&mut all);
    add::<SchemaListResponse>(&mut all);
    add::<DatabaseInfo>(&mut all);
    add::<DatabaseListResponse>(&mut all);
    add::<PlatformSummary>(&mut all);
    add::<PlatformsResponse>(&mut all);
    add::<DatabaseCreateRequest>(&mut all);
    add::<AdminDatabaseCreateRequest>(&mut all);
    add::<PlatformTokenRequest>(&mut all);
    add::<PlatformTokenResponse>(&mut all);
    add::<DatabaseCreateResponse>(&mut all);
    add::<V2MigrateRequest>(&mut all);
    add::<V2MigrateResponse>(&mut all);
    add::<MigrateAllRequest>(&mut all);
    add::<MigrateAllStarted>(&mut all);
    add::<JobResult>(&mut all);
    add::<MigrateAllJob>(&mut all);
    add::<FunctionsResponse>(&mut all);
    add::<FunctionInfo>(&mut all);
    add::<FunctionArgument>(&mut all);
    add::<FunctionColumn>(&mut all);
    add::<DroppedDatabase>(&mut all);
    add::<DropResponse>(&mut all);
    add::<OffboardResponse>(&mut all);
    add::<SchemaVersionInfo>(&mut all);
    add::<SchemaVersionsResponse>(&mut all);
    add::<Kept>(&mut all);
    add::<KeptKind>(&mut all);
    add::<V1VersionInfo>(&mut all);
    add::<V1VersionsResponse>(&mut all);
    let mut map = Map::new();
    for (name, s) in all {
        let mut v = serde_json::to_value(s).expect("schemas serialize");
        if name.ends_with("Request") {
            constrain(&mut v, &name);
        }
        map.insert(name, v);
    }
    map.insert("UploadForm".into(), upload_form());
    map.insert("SchemaUploadForm".into(), schema_upload_form());
    map.insert("MigrateForm".into(), migrate_form());
    map
}

/// A form boolean: `true`, `false`, `1` or `0` in any case
/// ([`crate::request::form_flag`]); anything else, empty included, is 400.
fn flag_property(description: &str) -> Value {
    let any_case = |w: &str| -> String {
        w.chars()
            .map(|c| match c.is_ascii_alphabetic() {
                true => format!("[{}{}]", c.to_ascii_uppercase(), c),
                false => c.to_string(),
            })
            .collect()
    };
    let words: Vec<String> = FLAG_TRUE
        .iter()
        .chain(FLAG_FALSE)
        .map(|w| any_case(w))
        .collect();
    let listed: Vec<&str> = FLAG_TRUE.iter().chain(FLAG_FALSE).copied().collect();
    json!({
        "type": "string",
        "pattern": format!("^({})$", words.join("|")),
        "description": format!("{description} One of {} (any case); absent = false; anything else, empty included, is refused (400).", listed.join(", "))
    })
}

/// The multipart form of `/register` and `/migrate` (fields: [`UPLOAD_FIELDS`]).
fn upload_form() -> Value {
    let mut form = json!({
        "type": "object",
        "description": "multipart/form-data. A field the route does not define, or a field given twice, is refused (400).",
        "additionalProperties": false,
        "required": ["platform", "schema"],
        "properties": {
            "platform": {"type": "string"},
            "tenant_id": {"type": "string", "description": "The tenant's database `{platform}_{tenant_id}`; absent = `{platform}_main` (`/register`), or every database of the platform (`/migrate`). The joined name must fit PostgreSQL's 63 bytes."},
            "schema": {"type": "string", "format": "binary", "description": "tar.gz of the postgresql/ folder"},
            "force": flag_property("Apply dataloss/incompatible tables/ changes; accept edited migrations."),
            "dry_run": flag_property("Answer with the plan; change nothing.")
        }
    });
    debug_assert_eq!(keys(&form), sorted(UPLOAD_FIELDS));
    constrain(&mut form, "");
    form
}

/// The multipart form of `/migrate` ([`MIGRATE_FIELDS`]): `/register`'s,
/// and `version` instead of the `schema` file.
fn migrate_form() -> Value {
    let mut form = upload_form();
    form["description"] = json!("multipart/form-data: `schema` (a new archive) or `version` (a kept one, GET /platform/{platform}/versions), not both. A field the route does not define, or a field given twice, is refused (400).");
    form["required"] = json!(["platform"]);
    form["properties"]["version"] = json!({
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "Redeploy the kept archive of this number (a positive integer; 400 otherwise, and with a `schema` file; 404 version_not_found when it is not kept). Redeploying an older archive is a rollback; it then becomes the latest, under the next number (`redeployed_from` says which)."
    });
    debug_assert_eq!(keys(&form), sorted(MIGRATE_FIELDS));
    form
}

/// The multipart form of `POST /platform/{platform}/schema` ([`SCHEMA_UPLOAD_FIELDS`]).
fn schema_upload_form() -> Value {
    let mut form = json!({
        "type": "object",
        "description": "multipart/form-data: `schema_name` (or its alias `name`) and `schema` (or its alias `file`), one of each pair. A field the route does not define, or a field given twice, is refused (400).",
        "additionalProperties": false,
        "properties": {
            "schema_name": {"type": "string"},
            "name": {"type": "string", "description": "alias of schema_name"},
            "schema": {"type": "string", "format": "binary", "description": "tar.gz of the postgresql/ folder"},
            "file": {"type": "string", "format": "binary", "description": "alias of schema"}
        }
    });
    debug_assert_eq!(keys(&form), sorted(SCHEMA_UPLOAD_FIELDS));
    constrain(&mut form, "");
    form
}

fn keys(form: &Value) -> Vec<String> {
    form["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn sorted(fields: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Who may call an operation once tokens are configured.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    /// Nobody is asked for a token.
    Open,
    /// `CALL_TOKENS`.
    Call,
    /// `ADMIN_TOKEN` (`/metrics`).
    Metrics,
    /// A deploy token of the platform, or the admin token.
    Deploy,
    /// The admin token only (operator routes).
    Admin,
}

enum Body {
    None,
    Json(&'static str),
    Form(&'static str),
}

struct Op {
    id: &'static str,
    summary: &'static str,
    description: &'static str,
    auth: Auth,
    body: Body,
    /// (name, in, required, description)
    params: &'static [(&'static str, &'static str, bool, &'static str)],
    ok: (u16, &'static str, &'static str),
    /// Route-specific answers: (status, description).
    errors: &'static [(u16, &'static str)],
}

const NAMES_TEXT: &str = "Names: platform and schema names match `[a-z][a-z0-9_]*` (a platform at most 53 bytes, for its role names), tenant and database ids `[a-z0-9_-]+`, database names `[a-z][a-z0-9_-]*`, at most 63 bytes each; a database name joined from parts (`{platform}_{tenant_id}`, `{platform}_{schema_name}_{database_id}`) must fit 63 bytes too (400, never truncated).";

/// The operation of a route: one arm per [`RouteId`], so a route without
/// its documentation does not compile.
fn operation_of(id: RouteId) -> Op {
    match id {
        RouteId::Router(R::Call) => Op {
            id: "call",
            summary: "Call a stored function",
            description: "Runs `SELECT * FROM function(params)` in the database named by `tenant_id` (a v1 tenant, `{platform}_{tenant_id}`; absent = `{platform}_main`) or by `database` (a full name the platform owns), not both. Answers every row as a JSON object. A database another platform owns answers exactly like a missing one.",
            auth: Auth::Call,
            body: Body::Json("CallRequest"),
            params: &[],
            ok: (200, "Rows as JSON objects", "CallResponse"),
            errors: &[
                (400, "invalid_request (unknown or repeated field, a named argument given twice in `params`, bad name, `tenant_id` and `database` both given, arguments that match no overload, a query parameter), not_callable (the name is a procedure: a function may CALL it), or database_error with `sqlstate` for an error the caller caused (classes 22, 23, 2F, 44, P0: bad input, constraint violations, RAISE EXCEPTION)"),
                (404, "database_not_found (also for a database another platform owns) or function_not_found"),
                (500, "database_error: any other error PostgreSQL raised while running the function (`sqlstate` says which)"),
                (503, "pool_exhausted (no connection within POOL_WAIT_TIMEOUT_MS) or database_unavailable (PostgreSQL refused or is unreachable)"),
                (504, "statement_timeout: the function ran longer than the platform's call timeout (CALL_TIMEOUT_MS, CALL_TIMEOUTS) and PostgreSQL cancelled it; `cause` is PostgreSQL's message, `sqlstate` 57014"),
            ],
        },
        RouteId::Router(R::Health) => Op {
            id: "health",
            summary: "Health and pool figures",
            description: "Whether PostgreSQL and the migrator answer, and the connection pools' figures: `healthy`; `degraded` (200) when the migrator is down; `unhealthy` (503) when PostgreSQL is unreachable. Databases are named in `pools.databases` only for the admin token when ADMIN_TOKEN is set.",
            auth: Auth::Open,
            body: Body::None,
            params: &[],
            ok: (200, "Healthy, or degraded (the migrator is down: schema routes answer 503, /call works)", "HealthResponse"),
            errors: &[(503, "PostgreSQL unreachable (the body is still a HealthResponse)")],
        },
        RouteId::Router(R::HealthLive) => Op {
            id: "live",
            summary: "Liveness: the process answers",
            description: "Always 200 `alive` while the router runs; checks nothing else (for an orchestrator's liveness probe).",
            auth: Auth::Open,
            body: Body::None,
            params: &[],
            ok: (200, "Alive", "ProbeResponse"),
            errors: &[],
        },
        RouteId::Router(R::HealthReady) => Op {
            id: "ready",
            summary: "Readiness: this router can serve /call",
            description: "200 `ready` when PostgreSQL answers, 503 `not_ready` when it does not. A stopped migrator never makes a router unready: /call works without it (see /health for the migrator).",
            auth: Auth::Open,
            body: Body::None,
            params: &[],
            ok: (200, "Ready", "ProbeResponse"),
            errors: &[(503, "PostgreSQL unreachable")],
        },
        RouteId::Router(R::Metrics) => Op {
            id: "metrics",
            summary: "Prometheus metrics (router and migrator)",
            description: "Text exposition format. Requires the admin token when ADMIN_TOKEN is set.",
            auth: Auth::Metrics,
            body: Body::None,
            params: &[],
            ok: (200, "Text exposition format", "text/plain"),
            errors: &[],
        },
        RouteId::Router(R::OpenApi) => Op {
            id: "openapi",
            summary: "This document",
            description: "Generated from the code (`docs/openapi.json`).",
            auth: Auth::Open,
            body: Body::None,
            params: &[],
            ok: (200, "OpenAPI 3.1 document", "object"),
            errors: &[],
        },
        RouteId::Migrator(M::Register) => Op {
            id: "register",
            summary: "Create the database if missing and deploy a schema archive",
            description: "Creates the platform's roles if needed, then `{platform}_{tenant_id}` (or `{platform}_main`) if missing, and deploys the archive into it in one transaction: nothing is changed unless everything applied.",
            auth: Auth::Deploy,
            body: Body::Form("UploadForm"),
            params: &[],
            ok: (200, "Deployed (or, with dry_run, the plan)", "DeployResponse"),
            errors: &[
                (400, "invalid_request: a bad form, name or archive (the message names the file and line)"),
                (409, "database_already_exists (another platform owns the name), migration_failed (nothing was changed), or schema_validation_failed (dataloss or incompatible tables/ changes without force; `schema_validation` lists them)"),
            ],
        },
        RouteId::Migrator(M::Migrate) => Op {
            id: "migrate",
            summary: "Deploy a schema archive to one tenant or every database of the platform",
            description: "Deploys into `{platform}_{tenant_id}`, or, without tenant_id, into every database the platform owns, each in its own transaction: the archive sent as `schema`, or the kept archive numbered `version`.",
            auth: Auth::Deploy,
            body: Body::Form("MigrateForm"),
            params: &[],
            ok: (200, "Deployed (or, with dry_run, the plans)", "DeployResponse"),
            errors: &[
                (400, "invalid_request: a bad form, name or archive; `version` not a positive integer, or given with a `schema` file"),
                (404, "database_not_found (also for a database another platform owns), platform_not_found, or version_not_found (no kept archive has that number)"),
                (409, "migration_failed or schema_validation_failed (`details` holds the per-database results)"),
            ],
        },
        RouteId::Migrator(M::AdminDatabases) => Op {
            id: "adminDatabases",
            summary: "Databases of a platform",
            description: "Every database the control catalog attributes to the platform: `databases` names the ready ones (the seeds' shape); `items` lists every recorded one (v1, v2, adopted; creating, ready or dropping) with kind, tenant id or schema and id, schema version, pinning, state, creation time and newest deployment record, and its size in bytes with `size=true` (a query per database).",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[
                ("platform", "query", true, "The platform"),
                ("size", "query", false, "true, false, 1 or 0: add each database's size (pg_database_size)"),
            ],
            ok: (200, "Database names and items", "AdminDatabasesResponse"),
            errors: &[(400, "invalid_request: platform missing or not a valid name, size not a boolean, or an unknown query parameter")],
        },
        RouteId::Migrator(M::AdminCreateTenant) => Op {
            id: "createTenant",
            summary: "Create a tenant database with the platform's last registered schema",
            description: "Creates `{platform}_{tenant_id}` and deploys the archive the platform last registered into it.",
            auth: Auth::Deploy,
            body: Body::Json("CreateTenantRequest"),
            params: &[],
            ok: (201, "Created", "DeployResponse"),
            errors: &[
                (200, "dry_run: the plan (status would_create); nothing created"),
                (404, "schema_not_found: the platform registered no schema yet (or is unknown)"),
                (409, "database_already_exists or migration_failed"),
            ],
        },
        RouteId::Migrator(M::AdminAdopt) => Op {
            id: "adopt",
            summary: "Attribute existing databases to a platform and hand them to its roles (operator)",
            description: "Records each database as the platform's in the control catalog and reassigns what the gateway's admin role owns in it to the platform's owner role.",
            auth: Auth::Admin,
            body: Body::Json("AdoptRequest"),
            params: &[],
            ok: (200, "Adopted", "AdoptResponse"),
            errors: &[
                (400, "invalid_request (also: a database the gateway keeps for itself)"),
                (404, "database_not_found or platform_not_found"),
                (409, "database_already_exists (another platform owns it)"),
            ],
        },
        RouteId::Migrator(M::AdminRefresh) => Op {
            id: "refresh",
            summary: "Make every router drop what it cached about a database (or a platform's databases) after DDL run by hand (operator)",
            description: "Give `database` or `platform`. Announces a new generation of each database; every router drops its pool and function catalog for them.",
            auth: Auth::Admin,
            body: Body::Json("RefreshRequest"),
            params: &[],
            ok: (200, "Announced", "RefreshResponse"),
            errors: &[(404, "database_not_found or platform_not_found")],
        },
        RouteId::Migrator(M::AdminDeployments) => Op {
            id: "deployments",
            summary: "Deployment history, newest first (a deploy token sees its own platform's)",
            description: "Every deployment and dry run the control catalog recorded.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[
                ("platform", "query", false, "Only this platform's"),
                ("database", "query", false, "Only this database's"),
                ("limit", "query", false, "At most this many (default 100, at most 10000)"),
            ],
            ok: (200, "Deployments", "DeploymentsResponse"),
            errors: &[],
        },
        RouteId::Migrator(M::Platforms) => Op {
            id: "platforms",
            summary: "Registered platforms (v2)",
            description: "Every platform, with how many schemas it stored and databases it owns. A deploy token sees its own platform only.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[],
            ok: (200, "Platforms", "PlatformsResponse"),
            errors: &[],
        },
        RouteId::Migrator(M::PlatformRegister) => Op {
            id: "platformRegister",
            summary: "Register a platform (v2)",
            description: "Records the platform and creates its PostgreSQL roles.",
            auth: Auth::Deploy,
            body: Body::Json("PlatformRegisterRequest"),
            params: &[],
            ok: (201, "Registered (also a platform known only from v1 /register: it is then v1 and v2)", "PlatformRegisterResponse"),
            errors: &[
                (400, "invalid_request: a bad name"),
                (409, "platform_already_registered: the platform is registered for v2 already (nothing changed)"),
            ],
        },
        RouteId::Migrator(M::SchemaUpload) => Op {
            id: "schemaUpload",
            summary: "Upload a schema version (v2)",
            description: "Stores the archive under `schema_name` after checking it (it is deployed by /database/create and /v2/migrate).",
            auth: Auth::Deploy,
            body: Body::Form("SchemaUploadForm"),
            params: &[("platform", "path", true, "The platform")],
            ok: (201, "Stored", "SchemaUploadResponse"),
            errors: &[
                (400, "invalid_request: a bad form, name or archive"),
                (404, "platform_not_found"),
            ],
        },
        RouteId::Migrator(M::Schemas) => Op {
            id: "schemas",
            summary: "Stored schemas (v2)",
            description: "The schemas stored for the platform.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[("platform", "path", true, "The platform")],
            ok: (200, "Schemas", "SchemaListResponse"),
            errors: &[(404, "platform_not_found")],
        },
        RouteId::Migrator(M::PlatformDatabases) => Op {
            id: "databases",
            summary: "Databases created from stored schemas (v2)",
            description: "The databases the platform created with /database/create, optionally of one schema.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[
                ("platform", "path", true, "The platform"),
                ("schema", "query", false, "Only databases of this schema"),
            ],
            ok: (200, "Databases", "DatabaseListResponse"),
            errors: &[(404, "platform_not_found")],
        },
        RouteId::Migrator(M::DatabaseCreate) => Op {
            id: "databaseCreate",
            summary: "Create a database from a stored schema (v2)",
            description: "Creates `{platform}_{schema_name}_{database_id}` and deploys the stored schema into it: the latest version (copied from its template), or the stored `version` asked for, which pins the database to it (a version other than the latest has no template: a full deployment, `full_deployment: true`).",
            auth: Auth::Deploy,
            body: Body::Json("DatabaseCreateRequest"),
            params: &[],
            ok: (201, "Created", "DatabaseCreateResponse"),
            errors: &[
                (200, "dry_run: status would_create (deployed into a throwaway database and dropped); nothing created"),
                (404, "platform_not_found or schema_not_found (also: the schema has no such `version`; nothing created)"),
                (409, "database_already_exists or migration_failed"),
            ],
        },
        RouteId::Migrator(M::AdminDatabaseCreate) => Op {
            id: "adminDatabaseCreate",
            summary: "Create a tenant's database from a stored schema (today's StoneScriptPHP)",
            description: "Creates `{platform}_{schema_name}_{uuid, hyphens as underscores}` (`uuid`, or `database_id` as StoneScriptPHP 5.5.1 sends it: the same rule), or `{platform}_{schema_name}` without an id, and deploys the stored schema into it — the database `/call` reaches with `schema_name` and `uuid`. 409 `database_already_exists` means only that this platform's database of that schema and uuid exists and is ready.",
            auth: Auth::Deploy,
            body: Body::Json("AdminDatabaseCreateRequest"),
            params: &[],
            ok: (201, "Created", "DatabaseCreateResponse"),
            errors: &[
                (200, "dry_run: status would_create (deployed into a throwaway database and dropped); nothing created"),
                (404, "platform_not_found or schema_not_found"),
                (409, "database_already_exists (this platform's ready database of that schema and uuid) or migration_failed"),
                (422, "database_name_collision: the name is held by anything else (another platform, a reserved name space, a v1 or adopted database)"),
                (503, "the database is still being created (Retry-After)"),
            ],
        },
        RouteId::Migrator(M::AdminPlatformToken) => Op {
            id: "platformToken",
            summary: "The platform's token (today's StoneScriptPHP)",
            description: "Answers the platform's bearer token, which acts for it like a DEPLOY_TOKENS entry on every route a deploy token may use: the same token every time, until `rotate: true` issues a new one (the old one stops working at once). With the admin token or one of the platform's own; on a gateway without schema tokens, anyone. Issuing a token does not turn token checks on.",
            auth: Auth::Deploy,
            body: Body::Json("PlatformTokenRequest"),
            params: &[],
            ok: (201, "The token", "PlatformTokenResponse"),
            errors: &[(404, "platform_not_found")],
        },
        RouteId::Migrator(M::V2Migrate) => Op {
            id: "v2Migrate",
            summary: "Migrate the databases of a stored schema (v2)",
            description: "Deploys the stored schema into one database (`database_id`) or every database created from it, each in its own transaction. Without `version`, the latest version, and pinned databases are left where they are (status `pinned`); with a stored version number, every targeted database moves to it and is pinned there (a version older than the database's is a rollback: migrations recorded in it are skipped whatever their checksum, and what cannot be undone in place is listed under `kept`); `\"latest\"` moves them to the latest and unpins them. With `Accept: application/x-ndjson` the answer streams one DeploymentReport line per database, then the summary line.",
            auth: Auth::Deploy,
            body: Body::Json("V2MigrateRequest"),
            params: &[],
            ok: (200, "All migrated (or dry_run plans)", "V2MigrateResponse"),
            errors: &[
                (404, "platform_not_found, schema_not_found (also: the schema has no such `version`) or database_not_found"),
                (409, "migration_failed or schema_validation_failed: `details` holds the V2MigrateResponse"),
            ],
        },
        RouteId::Migrator(M::MigrateAll) => Op {
            id: "migrateAll",
            summary: "Start migrating every tenant database of a stored schema (today's StoneScriptPHP)",
            description: "Starts a job that deploys the stored schema into every tenant database of `schema_name` (not the schema's own database `{platform}_{schema_name}`), each in its own transaction, and answers at once; poll GET /v2/migrate-all/{job_id}. One job runs per platform and schema at a time. `version` works as on /v2/migrate: without it pinned databases stay (result `completed`).",
            auth: Auth::Deploy,
            body: Body::Json("MigrateAllRequest"),
            params: &[],
            ok: (202, "The job started", "MigrateAllStarted"),
            errors: &[
                (204, "The schema has no tenant database: no job"),
                (404, "platform_not_found or schema_not_found"),
                (409, "job_already_running: a job of this platform and schema is running; `job_id` names it"),
            ],
        },
        RouteId::Migrator(M::PlatformFunctions) => Op {
            id: "functions",
            summary: "Functions /call can reach in a database",
            description: "Every function of the database that `/call` resolves (platform-created functions in any non-system schema; not procedures, extension or gateway functions), each overload once: schema, name, signature, the arguments a caller passes (name, type, mode, default expression), the result type, its columns (OUT, INOUT and TABLE arguments), whether it returns a set, volatility, variadic. The database is addressed like `/call`: `tenant_id`, `database`, or `schema_name` with `uuid`; none of them is `{platform}_main`. A database another platform owns answers exactly like a missing one.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[
                ("platform", "path", true, "The platform"),
                ("tenant_id", "query", false, "A v1 tenant: `{platform}_{tenant_id}`"),
                ("database", "query", false, "A full database name the platform owns"),
                ("schema_name", "query", false, "With `uuid`: `{platform}_{schema_name}[_{uuid}]`"),
                ("uuid", "query", false, "With `schema_name`"),
            ],
            ok: (200, "The callable functions", "FunctionsResponse"),
            errors: &[
                (400, "invalid_request: a bad name, or more than one way of naming the database"),
                (404, "database_not_found (also for a database another platform owns, or one being created or dropped)"),
            ],
        },
        RouteId::Migrator(M::MigrateAllJob) => Op {
            id: "migrateAllJob",
            summary: "A /v2/migrate-all job (today's StoneScriptPHP)",
            description: "The job as it is now: `queued`, `running`, then `completed`, `partial`, `failed` or `interrupted` (the migrator running it stopped), with each finished database's result. Jobs are kept at least 24 hours after they end.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[("job_id", "path", true, "The job, as POST /v2/migrate-all answered it")],
            ok: (200, "The job", "MigrateAllJob"),
            errors: &[(404, "job_not_found: no such job (also for another platform's job)")],
        },
        RouteId::Migrator(M::DropDatabase) => Op {
            id: "dropDatabase",
            summary: "Drop a tenant, v2 or adopted database",
            description: "Drops the database from PostgreSQL (`DROP DATABASE … WITH (FORCE)`: open connections are closed) and the control catalog; every router drops its pool at once and a `/call` to it answers 404. The admin token, or a deploy or platform token of the platform the catalog says owns it; another platform's database answers exactly like a missing one. `confirm` must repeat the database name exactly (missing, empty or different: 400, nothing changes). With `backup=true` a `pg_dump` custom-format file is written to BACKUP_DIR first (restore with `pg_restore`); a backup that fails drops nothing. The deployment history keeps a `drop` record (who asked, from where, the backup file).",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[
                ("database", "path", true, "The database, e.g. `myapp_t1` or `myapp_orders_42`"),
                ("confirm", "query", true, "The database name again, exactly"),
                ("backup", "query", false, "Back the database up with pg_dump before dropping it"),
            ],
            ok: (200, "Dropped", "DropResponse"),
            errors: &[
                (400, "invalid_request: `confirm` missing, empty or not the name exactly; a body (confirm is a query parameter); a template or scratch database (not droppable here); `backup` not a boolean"),
                (404, "database_not_found (also for a database another platform owns)"),
                (409, "deployment_running: a deployment of the database ran on for 5 s; nothing was dropped"),
                (500, "backup_failed: pg_dump is missing or failed (its error in the message); nothing was dropped"),
            ],
        },
        RouteId::Migrator(M::Offboard) => Op {
            id: "offboard",
            summary: "Offboard a platform: all its databases, its roles and its catalog rows (operator)",
            description: "Drops every database the catalog records as the platform's (v1, v2, adopted, templates, scratch databases left behind), its two PostgreSQL roles, and its catalog rows (platform, stored schema versions, jobs, platform token); the deployment history is kept, with a `drop` record per database. `confirm` must repeat the platform name exactly. With `backup=true` each database holding data is backed up with pg_dump first. A platform whose name extends this one (`myapp_admin` for `myapp`) is another platform and is not touched. Interrupted, the next migrator finishes it.",
            auth: Auth::Admin,
            body: Body::None,
            params: &[
                ("platform", "path", true, "The platform"),
                ("confirm", "query", true, "The platform name again, exactly"),
                ("backup", "query", false, "Back each database up with pg_dump before dropping it"),
            ],
            ok: (200, "Offboarded", "OffboardResponse"),
            errors: &[
                (400, "invalid_request: `confirm` missing, empty or not the name exactly; a body; `backup` not a boolean"),
                (404, "platform_not_found"),
                (409, "job_already_running (a /v2/migrate-all job of the platform runs; nothing was changed) or deployment_running (a deployment of one of its databases ran on; the platform stays marked and the offboarding ends when asked again)"),
                (500, "backup_failed: pg_dump is missing or failed; that database was not dropped"),
            ],
        },
        RouteId::Migrator(M::SchemaVersions) => Op {
            id: "schemaVersions",
            summary: "The stored versions of a schema (v2)",
            description: "Every stored version of the schema, oldest first: its number, content checksum, archive SHA-256, when it was uploaded, the archive's size, how many ready databases run it, and which is the latest. A version is what `version` names on /database/create, /v2/migrate and /v2/migrate-all.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[
                ("platform", "path", true, "The platform"),
                ("name", "path", true, "The schema's name"),
            ],
            ok: (200, "Versions", "SchemaVersionsResponse"),
            errors: &[
                (400, "invalid_request: a bad schema name"),
                (404, "platform_not_found or schema_not_found"),
            ],
        },
        RouteId::Migrator(M::Export) => Op {
            id: "export",
            summary: "Export a live database as a schema folder (operator)",
            description: "Any database on the gateway's server (the control catalog, the admin database, PostgreSQL's own and the gateway's template and scratch databases excepted) as a gzip tar: `postgresql/` holding `extensions/`, `types/`, `tables/` (declarative: each table with its sequences, defaults, constraints, indexes, comments), `functions/`, and `migrations/000_exported.sql` for what has no folder of its own (views, materialized views, triggers, policies, schemas, rules, grants) and for what tables, types, views, triggers, policies or indexes need from a later folder (the functions they use, and then the types and tables using those, the tables referencing a moved table, and objects outside `public`), in pg_dump's order; and `export-report.json`: every object moved to the migration and why, and what was not exported (grants to the gateway's own roles, an extension's own comment). Registering the folder into an empty database gives the same schema. Read with `pg_dump --schema-only`; the gateway's tracking tables are left out. `POST /admin/adopt` takes over the database itself.",
            auth: Auth::Admin,
            body: Body::None,
            params: &[("database", "path", true, "The database")],
            ok: (200, "The schema folder (gzip tar)", "application/gzip"),
            errors: &[
                (400, "invalid_request: a bad database name, or a database the gateway does not export (the catalog, its admin database, PostgreSQL's own, templates, scratch databases)"),
                (404, "database_not_found"),
                (500, "internal_error: pg_dump is missing or failed (its error in the message; a table locked past DEPLOY_LOCK_TIMEOUT_MS, say)"),
            ],
        },
        RouteId::Migrator(M::V1Versions) => Op {
            id: "v1Versions",
            summary: "The v1 archives a platform keeps",
            description: "The last V1_ARCHIVES_KEPT archives /register and /migrate deployed (an archive equal to the latest is not kept twice), oldest first, each with its number, sha256, size, when it was kept and whether it is the latest (the one /admin/create-tenant deploys). POST /migrate with `version` redeploys one. A platform without a v1 archive has an empty list. A deploy token lists its own platform only.",
            auth: Auth::Deploy,
            body: Body::None,
            params: &[("platform", "path", true, "The platform")],
            ok: (200, "Kept archives", "V1VersionsResponse"),
            errors: &[(404, "platform_not_found")],
        },
    }
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_response(description: String) -> Value {
    json!({"description": description, "content": json_content(reference("ErrorBody"))})
}

/// Every status an operation is documented to answer, with its description.
fn responses(op: &Op, method: &str, served: Served) -> Map<String, Value> {
    let mut out = Map::new();
    let (status, text, what) = op.ok;
    let content = match what {
        "text/plain" => json!({"text/plain": {"schema": {"type": "string"}}}),
        "application/gzip" => {
            json!({"application/gzip": {"schema": {"type": "string", "contentMediaType": "application/gzip"}}})
        }
        "object" => json_content(json!({"type": "object"})),
        name if op.id == "v2Migrate" => json!({
            "application/json": {"schema": reference(name)},
            "application/x-ndjson": {"schema": {"type": "string"}}
        }),
        name => json_content(reference(name)),
    };
    out.insert(
        status.to_string(),
        json!({"description": text, "content": content}),
    );
    for (status, text) in op.errors {
        if *status == 204 {
            out.insert(status.to_string(), json!({ "description": text }));
            continue;
        }
        let body = match op.id {
            // another success (a dry run's 200): the same body as `ok`
            _ if *status < 300 => op.ok.2,
            "health" => "HealthResponse",
            "ready" => "ProbeResponse",
            _ => "ErrorBody",
        };
        out.insert(
            status.to_string(),
            json!({"description": text, "content": json_content(reference(body))}),
        );
    }
    let mut add = |status: u16, text: String| {
        out.entry(status.to_string())
            .or_insert_with(|| error_response(text));
    };
    if served == Served::Migrator {
        add(400, "invalid_request: a field, form field or query parameter the route does not define (named, with the accepted ones), an empty query parameter, a field or JSON key given twice, a wrongly typed value (a form boolean other than true, false, 1 or 0), a name breaking the naming rules".into());
        add(503, "migrator_unavailable (the router cannot reach the migrator), or database_unavailable (the control catalog is not reachable)".into());
    }
    add(
        400,
        "invalid_request: a query parameter the route does not define (this route takes none)"
            .into(),
    );
    match op.auth {
        Auth::Open => {}
        Auth::Call => add(401, "unauthorized: CALL_TOKENS is set and the request has no token of this platform (a platform CALL_TOKENS does not list is refused too, unless CALL_OPEN_PLATFORMS lists it)".into()),
        Auth::Metrics => add(401, "unauthorized: ADMIN_TOKEN is set and the request lacks it".into()),
        Auth::Deploy | Auth::Admin => add(401, "unauthorized: ADMIN_TOKEN or DEPLOY_TOKENS is set and the request has no token configured there".into()),
    }
    add(
        403,
        match op.auth {
            Auth::Deploy => "forbidden: the client is outside ALLOWED_NETWORKS, or the deploy token is another platform's",
            Auth::Admin => "forbidden: the client is outside ALLOWED_NETWORKS, or the token is not the admin token",
            _ => "forbidden: the client is outside ALLOWED_NETWORKS",
        }
        .into(),
    );
    add(
        405,
        "method_not_allowed (the Allow header lists the methods)".into(),
    );
    if method == "post" {
        add(
            413,
            match op.body {
                Body::Form(_) => "payload_too_large: the archive is over ARCHIVE_MAX_COMPRESSED_BYTES, or expands over a cap",
                _ if op.id == "call" => "payload_too_large: the body is over 1 MiB",
                _ => "payload_too_large: the body is over 64 KiB",
            }
            .into(),
        );
    }
    match op.body {
        Body::Form(_) => add(
            415,
            "unsupported_media_type: not multipart/form-data".into(),
        ),
        Body::Json(_) if op.id == "call" => {
            add(415, "unsupported_media_type: not application/json".into())
        }
        _ => {}
    }
    let mut sorted: Vec<(String, Value)> = out.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().collect()
}

fn operation(op: &Op, method: &str, served: Served) -> Value {
    let mut o = json!({
        "operationId": op.id,
        "summary": op.summary,
        "description": op.description,
        "responses": responses(op, method, served),
    });
    if op.auth != Auth::Open {
        o["security"] = json!([{}, {"bearer": []}]);
    }
    if !op.params.is_empty() {
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|(name, place, required, text)| {
                let mut schema = json!({"type": "string"});
                if *name == "limit" {
                    schema = json!({"type": "integer", "minimum": 1, "maximum": 10000});
                } else if *name == "backup" {
                    schema = flag_property("");
                } else if let Some(rule) = rule_of("", name) {
                    apply_rule(&mut schema, rule);
                }
                json!({"name": name, "in": place, "required": required, "description": text, "schema": schema})
            })
            .collect();
        o["parameters"] = Value::Array(params);
    }
    match op.body {
        Body::None => {}
        Body::Json(name) => {
            o["requestBody"] = json!({"required": true, "content": json_content(reference(name))})
        }
        Body::Form(name) => {
            o["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": reference(name)}}})
        }
    }
    o
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let op = &operation_of(route.id);
        let documented: Vec<&str> = op
            .params
            .iter()
            .filter(|(_, place, ..)| *place == "query")
            .map(|(name, ..)| *name)
            .collect();
        assert_eq!(
            documented, route.query,
            "{}: the query parameters documented are not the ones the route takes",
            route.pattern
        );
        let mut item = Map::new();
        for method in route.methods {
            let method = method.to_ascii_lowercase();
            item.insert(method.clone(), operation(op, &method, route.served()));
        }
        paths.insert(route.pattern.to_owned(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "StoneScriptDB Gateway",
            "version": crate::VERSION,
            "license": {"name": "MIT", "identifier": "MIT"},
            "description": format!("PostgreSQL gateway and schema orchestrator for function-based platforms. /call, /health, /metrics and /openapi.json are served by stonescriptdb-router; every other route by stonescriptdb-migrator behind it. Every route answers 403 forbidden to clients outside ALLOWED_NETWORKS. Errors are an ErrorBody whose `error` is one of ErrorCode. Requests are strict: a body field, form field or query parameter a route does not define is refused (400, naming it), POST routes included, and so is an empty query parameter, a JSON key given twice (top-level, or a named argument in `/call`'s params) and a form boolean other than true, false, 1 or 0 (any case). {NAMES_TEXT} This document is generated from the code (`cargo test -p stonescriptdb-tests --test openapi` rewrites docs/openapi.json).")
        },
        "servers": [{"url": "http://127.0.0.1:9000"}],
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Optional. CALL_TOKENS (per platform) for /call; DEPLOY_TOKENS (per platform) or ADMIN_TOKEN for schema routes once either is configured; ADMIN_TOKEN for operator routes and /metrics."
                }
            }
        }
    })
}
