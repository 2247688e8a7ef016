//! Request and response bodies of the HTTP API, as serde types, so the router,
//! the migrator and the tests agree on every field.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::catalog::DbKind;

/// `POST /call`. Borrows from the request body: parsing allocates nothing for
/// plain strings, and `params` stays raw JSON so numbers keep their exact text
/// (a `numeric` argument beyond f64 precision reaches PostgreSQL unchanged).
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "`POST /call`: the function and where to run it. Give `tenant_id`, `database`, or `schema_name` with an optional `uuid` — one of them (400 otherwise); the database name must fit 63 bytes."
    )
)]
#[serde(deny_unknown_fields)]
pub struct CallRequest<'a> {
    #[serde(borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub platform: Cow<'a, str>,
    /// Tenant id; clients send it as a string or a number.
    #[serde(
        borrow,
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = doc::tenant_id_string_or_number))]
    pub tenant_id: Option<Cow<'a, str>>,
    /// A full name of a database this platform owns (a v2 database, an
    /// adopted one), instead of `tenant_id`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub database: Option<Cow<'a, str>>,
    /// Today's StoneScriptPHP addressing: the schema's database
    /// `{platform}_{schema_name}`, or with `uuid` the tenant's
    /// `{platform}_{schema_name}_{uuid, hyphens as underscores}`; instead of
    /// `tenant_id` and `database`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub schema_name: Option<Cow<'a, str>>,
    /// With `schema_name`: the tenant's uuid (`null` or absent: the schema's
    /// own database).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub uuid: Option<Cow<'a, str>>,
    /// `name` or `schema.name`.
    #[serde(borrow)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub function: Cow<'a, str>,
    /// A positional array or an object of named arguments; absent = none.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = doc::call_params))]
    pub params: Option<&'a RawValue>,
}

/// Schemas of the `CallRequest` fields serde reads by hand, for the OpenAPI
/// document.
#[cfg(feature = "openapi")]
mod doc {
    use serde_json::json;
    use utoipa::openapi::Schema;

    use crate::names::TENANT_ID;

    fn schema(v: serde_json::Value) -> Schema {
        serde_json::from_value(v).expect("a valid schema object")
    }

    /// A string or a non-negative integer (or null).
    pub fn tenant_id_string_or_number() -> Schema {
        schema(json!({
            "description": "Tenant id, as a string or a non-negative integer; absent or null with `database` absent = the platform's main database.",
            "oneOf": [
                {"type": "string", "pattern": TENANT_ID.pattern, "maxLength": TENANT_ID.max_len},
                {"type": "integer", "minimum": 0},
                {"type": "null"}
            ]
        }))
    }

    /// A positional array, an object of named arguments, or null.
    pub fn call_params() -> Schema {
        schema(json!({
            "description": "Arguments: a positional array, or an object of named arguments; absent or null = none.",
            "oneOf": [{"type": "array"}, {"type": "object"}, {"type": "null"}]
        }))
    }
}

fn string_or_number<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a non-negative integer")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom("tenant_id must not be negative"));
            }
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// The multipart form fields of `POST /register` and `POST /migrate`.
pub const UPLOAD_FIELDS: &[&str] = &["platform", "tenant_id", "schema", "force", "dry_run"];
/// The multipart form fields of `POST /migrate`: `/register`'s, and
/// `version` (a kept archive's number, redeployed instead of a `schema` file).
pub const MIGRATE_FIELDS: &[&str] = &[
    "platform",
    "tenant_id",
    "schema",
    "force",
    "dry_run",
    "version",
];
/// The multipart form fields of `POST /platform/{platform}/schema`: `name`
/// is an alias of `schema_name`, `file` of `schema`.
pub const SCHEMA_UPLOAD_FIELDS: &[&str] = &["schema_name", "name", "schema", "file"];
/// Values a true/false form field takes, in any case (absent = false;
/// anything else, empty included, is refused: `request::form_flag`).
pub const FLAG_TRUE: &[&str] = &["true", "1"];
pub const FLAG_FALSE: &[&str] = &["false", "0"];

/// `POST /call` success: one JSON object per row, keyed by column name.
/// (The router writes this shape directly from PostgreSQL's JSON text; the
/// struct is what clients and tests read it into.)
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "`POST /call` success: one JSON object per row, keyed by column name, and the number of rows."
    )
)]
pub struct CallResponse {
    pub rows: Vec<serde_json::Value>,
    pub row_count: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// `healthy`; `degraded` (answered with 200: the migrator is down, so
    /// schema routes answer 503, but `/call` works); or `unhealthy`
    /// (PostgreSQL unreachable; answered with 503).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: HealthStatus,
    /// `connected` or `unreachable`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub postgres: PostgresStatus,
    /// PostgreSQL's version number (`15.18`), when connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// `up`; `not_ready` (the migrator answers on its socket but cannot open
    /// its control catalog, e.g. PostgreSQL is unreachable from it: schema
    /// routes answer 503 until it can; it retries and logs each attempt); or
    /// `down` (nothing answers on its socket).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub migrator: MigratorStatus,
    pub version: String,
    pub pools: PoolsStats,
}

words! {
    /// `GET /health`: how the router is.
    pub enum HealthStatus {
        Healthy = "healthy",
        /// The migrator is down or not ready: schema routes answer 503,
        /// `/call` works (answered with 200).
        Degraded = "degraded",
        /// PostgreSQL is unreachable (answered with 503).
        Unhealthy = "unhealthy",
    }
}

words! {
    /// Does PostgreSQL answer (`/health`, the readiness probes)?
    pub enum PostgresStatus {
        Connected = "connected",
        Unreachable = "unreachable",
    }
}

words! {
    /// The migrator, as `GET /health` finds it on its socket.
    pub enum MigratorStatus {
        Up = "up",
        /// It answers but cannot open its control catalog.
        NotReady = "not_ready",
        /// Nothing answers on its socket.
        Down = "down",
    }
}

/// Where the migrator answers its own readiness on its socket (a
/// [`ProbeResponse`]: 200 `ready` once its control catalog is open, else 503
/// `not_ready` with the reason); the router's `/health` asks it.
pub const MIGRATOR_READY_PATH: &str = "/health/ready";

/// `GET /health/live` (the process answers: always `alive`) and
/// `GET /health/ready` (`ready`: this router can serve `/call`, PostgreSQL
/// answers; `not_ready`, with 503, when it does not). The migrator plays no
/// part in either: `/call` works without it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProbeResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: ProbeStatus,
    /// `/health/ready`: `connected` or `unreachable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub postgres: Option<PostgresStatus>,
    /// Why the migrator is not ready (its own probe, on its socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

words! {
    /// A probe's answer: `/health/live` (always `alive`), `/health/ready`
    /// (the router's and the migrator's).
    pub enum ProbeStatus {
        Alive = "alive",
        Ready = "ready",
        /// Answered with 503.
        NotReady = "not_ready",
    }
}

/// Connection-pool figures for `/health` (and later `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolsStats {
    /// Open connections across all pools.
    pub total_connections: usize,
    /// `MAX_TOTAL_CONNECTIONS`.
    pub max_total_connections: usize,
    /// `MAX_CONNECTIONS_PER_POOL`.
    pub max_connections_per_pool: usize,
    /// Requests answered 503 `pool_exhausted` since start.
    pub exhausted_total: u64,
    /// One entry per live pool, keyed by database name.
    pub databases: BTreeMap<String, PoolStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolStats {
    /// Open connections of this pool.
    pub size: usize,
    /// Of those, idle ones.
    pub available: usize,
    /// Requests waiting for a connection right now.
    pub waiting: usize,
    /// Requests of this database answered 503 `pool_exhausted` (no
    /// connection within `POOL_WAIT_TIMEOUT_MS`).
    #[serde(default)]
    pub exhausted: u64,
}

/// `POST /admin/create-tenant`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    pub platform: String,
    pub tenant_id: String,
    /// Answer with the plan (deployed into a throwaway database) and create nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /admin/adopt` (admin token): attribute existing databases to a
/// platform and hand them to its roles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    pub platform: String,
    pub databases: Vec<String>,
}

/// One database of an `/admin/adopt` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdoptedDatabase {
    pub database: String,
    /// `adopted` (now the platform's), or `unchanged` (it already was).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: AdoptStatus,
    /// `v1` when the name is one of the platform's v1 names, else `adopted`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: DbKind,
    /// Objects whose ownership moved to the platform's owner role.
    pub objects_reassigned: u64,
}

words! {
    /// `/admin/adopt`: of each database, and of the request.
    pub enum AdoptStatus {
        /// Now the platform's.
        Adopted = "adopted",
        /// It already was.
        Unchanged = "unchanged",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdoptResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: AdoptStatus,
    pub platform: String,
    pub databases: Vec<AdoptedDatabase>,
}

/// `POST /admin/refresh` (admin token): after DDL run by hand outside the
/// gateway, make every router drop what it cached about a database (or all
/// databases of a platform).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: RefreshStatus,
    pub databases: Vec<String>,
    /// The catalog generation the announcement carries.
    pub generation: i64,
}

words! {
    /// `/admin/refresh`: routers were told.
    pub enum RefreshStatus {
        Announced = "announced",
    }
}

/// One deployment in `GET /admin/deployments`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentRecord {
    pub id: i64,
    pub database: String,
    pub platform: String,
    /// `register`, `migrate`, `create_tenant`, `database_create`, `v2_migrate`, `template`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub operation: Operation,
    /// `running`, a report status (`created`, `updated`, `unchanged`,
    /// `dry_run`, `blocked`, `would_create`), `failed`, `interrupted`
    /// (the migrator stopped before it could record the outcome), or
    /// `dropped` (operation `drop`: the database is gone).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: RecordStatus,
    pub dry_run: bool,
    pub force: bool,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// sha256 of the uploaded archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
    /// Who asked: the token's name (`admin`, `deploy:<platform>`), or
    /// `anonymous` when no token is configured.
    pub requested_by: String,
    /// The client's address as the router saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// v2: the stored schema version deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    /// The `X-Request-Id` of the request that asked (the router sets one
    /// when the client did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// From start to end; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

words! {
    /// What a deployment was recorded for (`GET /admin/deployments`).
    pub enum Operation {
        /// `POST /register`.
        Register = "register",
        /// `POST /migrate`.
        Migrate = "migrate",
        /// `POST /admin/create-tenant`.
        CreateTenant = "create_tenant",
        /// `POST /database/create`, `POST /admin/database/create`.
        DatabaseCreate = "database_create",
        /// `POST /v2/migrate`.
        V2Migrate = "v2_migrate",
        /// The template database of a v2 schema version, built on its
        /// first database's creation.
        Template = "template",
        /// `DELETE /admin/databases/{name}`, `DELETE /admin/platforms/{platform}`:
        /// the database was dropped (recorded `dropped`).
        Drop = "drop",
    }
}

/// Where a recorded deployment is (`GET /admin/deployments`): running,
/// ended with its report's status (`failed` when it failed), or
/// interrupted. Written and read as one word, like [`DeployStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordStatus {
    Running,
    Ended(DeployStatus),
    /// The migrator stopped before it could record the outcome.
    Interrupted,
    /// A drop that ended with the database gone.
    Dropped,
}

impl RecordStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ended(s) => s.as_str(),
            Self::Interrupted => "interrupted",
            Self::Dropped => "dropped",
        }
    }
}

impl From<DeployStatus> for RecordStatus {
    fn from(s: DeployStatus) -> Self {
        Self::Ended(s)
    }
}

impl std::fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RecordStatus {
    type Err = crate::words::UnknownWord;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "running" => Ok(Self::Running),
            "interrupted" => Ok(Self::Interrupted),
            "dropped" => Ok(Self::Dropped),
            _ => s
                .parse()
                .map(Self::Ended)
                .map_err(|_| crate::words::UnknownWord {
                    what: "RecordStatus",
                    word: s.to_owned(),
                }),
        }
    }
}

impl Serialize for RecordStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RecordStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = Cow::<str>::deserialize(d)?;
        word.parse().map_err(de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentsResponse {
    pub deployments: Vec<DeploymentRecord>,
    pub count: usize,
}

words! {
    /// `DELETE /admin/databases/{name}` and `DELETE /admin/platforms/{platform}`.
    pub enum LifecycleStatus {
        /// The database is gone: from PostgreSQL, the catalog and every router's pools.
        Dropped = "dropped",
        /// The platform is gone: its databases, roles and catalog rows.
        Offboarded = "offboarded",
    }
}

/// One database a drop or an offboarding removed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DroppedDatabase {
    pub database: String,
    pub platform: String,
    /// `v1`, `v2`, `adopted`; offboarding also drops `template` and `scratch` ones.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: DbKind,
    /// With `backup=true`: the `pg_dump` custom-format file written before
    /// the drop (restore with `pg_restore`; templates and scratch databases
    /// hold no data and get none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

/// `DELETE /admin/databases/{name}?confirm={name}[&backup=true]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DropResponse {
    /// `dropped`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: LifecycleStatus,
    pub database: String,
    pub platform: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: DbKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

/// `DELETE /admin/platforms/{platform}?confirm={platform}[&backup=true]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OffboardResponse {
    /// `offboarded`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: LifecycleStatus,
    pub platform: String,
    /// Every database dropped, templates and scratch databases included.
    pub databases: Vec<DroppedDatabase>,
    /// The platform's PostgreSQL roles that were dropped.
    pub roles: Vec<String>,
    /// The backup files written (`backup=true`), one per database holding data.
    pub backups: Vec<String>,
}

// ---------------------------------------------------------------------------
// Schema routes (served by the migrator), as docs/API.md describes them.

/// Outcome of one seeder file for one table: rows it inserted, rows it
/// did not insert because they were there (`skipped`), and, checked row by
/// row, how many of its rows the table holds (`present`) or lacks (`missing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeederResult {
    pub table: String,
    pub inserted: u64,
    pub skipped: u64,
    #[serde(default)]
    pub present: u64,
    #[serde(default)]
    pub missing: u64,
    /// The seeder file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// How rows are matched: `primary_key` (the INSERT supplies the key),
    /// `columns` (every column the INSERT supplies), or `count` (`INSERT …
    /// SELECT`, or nothing to match on: only the number of rows is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub matched_on: Option<MatchedOn>,
    /// Keys of missing rows (at most 20), as `(col)=(value)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_rows: Vec<String>,
}

words! {
    /// How a seeder's rows are matched against its table.
    pub enum MatchedOn {
        /// The INSERT supplies the primary key.
        PrimaryKey = "primary_key",
        /// On every column the INSERT supplies.
        Columns = "columns",
        /// `INSERT … SELECT`, or nothing to match on: only the number of
        /// rows is checked.
        Count = "count",
    }
}

pub use crate::error::SchemaValidation;

words! {
    /// Where a plan step belongs in a deployment's order (docs/SCHEMA.md).
    #[derive(Default)]
    pub enum Phase {
        Extensions = "extensions",
        Types = "types",
        #[default]
        Tables = "tables",
        Migrations = "migrations",
        Functions = "functions",
        Seeders = "seeders",
        /// Statements PostgreSQL refuses in a transaction block, run after
        /// the commit.
        AfterCommit = "after_commit",
    }
}

/// One step of a deployment plan (`dry_run=true`), or of a schema
/// validation: the phase (`tables`, `migrations`, `functions`, ...), for
/// table changes their class (`safe`, `dataloss`, `incompatible`), the
/// object, why, and the SQL that runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanStep {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub class: Option<ChangeClass>,
    pub object: String,
    pub reason: String,
    pub sql: Vec<String>,
    /// The `allow` class that lets this change through on the v2 migrate
    /// routes; absent for a safe change and for one only `force` lets
    /// through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub allow: Option<AllowClass>,
}

words! {
    /// How a change to a table affects the data already in it
    /// (docs/SCHEMA.md); ordered from harmless to worst.
    pub enum ChangeClass {
        /// Keeps every row and value.
        Safe = "safe",
        /// Can lose rows, values or precision (drop table/column, narrowing,
        /// NOT NULL on a column with NULLs or without default).
        Dataloss = "dataloss",
        /// The type changes with no implicit cast between old and new.
        Incompatible = "incompatible",
    }
}

/// What a deployment checked in the database afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    pub passed: bool,
    pub extensions_verified: bool,
    pub types_verified: bool,
    pub tables_verified: bool,
    pub seeders_verified: bool,
}

words! {
    /// What happened to one database in a deployment (or would, in a dry run).
    #[derive(Default)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum DeployStatus {
        /// The database was created by this deployment.
        Created = "created",
        /// Something changed.
        Updated = "updated",
        /// Nothing needed changing (no DDL ran).
        #[default]
        Unchanged = "unchanged",
        /// `/v2/migrate`: already at the target version (verified, not deployed to).
        Skipped = "skipped",
        Failed = "failed",
        /// `/v2/migrate`: not started (canary failed, or stop_on_error).
        NotAttempted = "not_attempted",
        /// Dry run: the plan would apply.
        DryRun = "dry_run",
        /// Dry run: the deployment would be refused (`schema_validation_failed`).
        Blocked = "blocked",
        /// Dry run: the database does not exist yet; it would be created.
        WouldCreate = "would_create",
        /// `/v2/migrate` without `version`: the database is pinned to its
        /// version and was left there (not deployed to, not verified).
        Pinned = "pinned",
    }
}

impl DeployStatus {
    /// Did the deployment commit a change to the database?
    pub const fn changed(self) -> bool {
        matches!(self, Self::Created | Self::Updated)
    }
}

/// The outcome of a whole request that deploys (`/register`, `/migrate`,
/// `/admin/create-tenant`, `/database/create`, `/v2/migrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// `/register`: the database is deployed.
    Ready,
    /// `/admin/create-tenant`, `/database/create`.
    Created,
    /// A migration of every database asked for succeeded.
    Completed,
    /// Some databases failed, others did not.
    Partial,
    /// Every database failed.
    Failed,
    /// A dry run: nothing changed.
    DryRun,
    /// `/database/create` dry run.
    WouldCreate,
}

impl RequestStatus {
    /// A migration's outcome from how many of `total` databases failed.
    pub fn of_migration(dry_run: bool, failed: usize, total: usize) -> Self {
        match (dry_run, failed) {
            (true, _) => Self::DryRun,
            (false, 0) => Self::Completed,
            (false, f) if f == total => Self::Failed,
            _ => Self::Partial,
        }
    }
}

/// Counts of one database's deployment (`/register`, `/migrate`, v2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentReport {
    pub database: String,
    pub status: DeployStatus,
    pub extensions_installed: u64,
    pub types_deployed: u64,
    pub tables_created: u64,
    pub migrations_applied: u64,
    pub migrations_skipped: u64,
    pub functions_created: u64,
    pub functions_updated: u64,
    pub functions_dropped: u64,
    pub functions_unchanged: u64,
    pub seeders: Vec<SeederResult>,
    /// Changes to existing tables applied to match `tables/` after the
    /// migrations ran (reconciliation steps).
    #[serde(default)]
    pub tables_altered: u64,
    pub schema_validation: SchemaValidation,
    /// Every step the deployment ran, in order (`dry_run=true`: would run;
    /// nothing was changed), ending with the statements run after the commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlanStep>,
    /// Statements PostgreSQL refuses in a transaction block (`CREATE INDEX
    /// CONCURRENTLY`, `VACUUM`, ...), run after the commit: `file#statement`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_statements: Vec<String>,
    /// Where the deployment ran a file differently from its text, e.g. a
    /// whole-file `BEGIN;` … `COMMIT;` wrapper it did not run (the
    /// deployment has its own transaction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A rollback (a version older than the database's): what stayed in the
    /// database because it cannot be undone in place (migrations applied
    /// since, enum values added since, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    /// The database was created as a copy of its schema version's template
    /// (no deployment ran in it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_template: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorBody>,
    pub execution_time_ms: u64,
}

words! {
    /// What a rollback left in the database ([`Kept`]).
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum KeptKind {
        /// A migration recorded as applied that the deployed version does
        /// not have: migrations run forward only.
        Migration = "migration",
        /// An enum value the deployed version does not declare: PostgreSQL
        /// cannot remove one.
        EnumValue = "enum_value",
        /// A composite type or domain whose definition differs from the
        /// deployed version's: PostgreSQL cannot replace it in place.
        Type = "type",
        /// A type the deployed version does not declare: types are never
        /// dropped.
        UndeclaredType = "undeclared_type",
    }
}

/// One thing a rollback left in the database, and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Kept {
    pub kind: KeptKind,
    /// The migration's file name, the enum's `schema.name` and value
    /// (`public.mood 'sad'`), the type's `schema.name`.
    pub name: String,
    pub why: String,
}

/// `POST /register` and `POST /migrate` (v1) success.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployResponse {
    pub status: RequestStatus,
    pub platform: String,
    pub databases: Vec<DeploymentReport>,
    pub execution_time_ms: u64,
    /// The number the deployed archive is kept under (`GET
    /// /platform/{platform}/versions`); absent for a dry run and a failed
    /// migration, which keep nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
}

/// `GET /admin/databases?platform=`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminDatabasesResponse {
    pub platform: String,
    /// The names of the platform's ready databases (the seeds' shape).
    pub databases: Vec<String>,
    /// How many names `databases` holds.
    pub count: usize,
    /// Every database the catalog records for the platform (whatever its
    /// state), with what an operator asks about it.
    #[serde(default)]
    pub items: Vec<DatabaseItem>,
}

/// One database in `GET /admin/databases`' `items`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseItem {
    pub name: String,
    /// `v1`, `v2` or `adopted`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: DbKind,
    /// v1: the tenant (`null` for `{platform}_main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// v2: the stored schema and the database id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    /// v2: the stored schema version last deployed into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    /// v2: it stays on `schema_version` through `/v2/migrate` of the latest.
    pub pinned: bool,
    /// `ready`, or `creating` / `dropping` while that is under way.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: crate::catalog::DbState,
    /// RFC 3339.
    pub created_at: String,
    /// Its newest deployment record, if any (`GET /admin/deployments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployment: Option<LastDeployment>,
    /// `pg_database_size`, only with `?size=true` (a query per database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
}

/// A database's newest deployment record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastDeployment {
    /// When it started, RFC 3339.
    pub at: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub operation: Operation,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: RecordStatus,
    pub dry_run: bool,
}

/// `GET /platform/{platform}/functions`: the functions `/call` can reach
/// in one database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionsResponse {
    pub platform: String,
    pub database: String,
    pub functions: Vec<FunctionInfo>,
    pub count: usize,
}

/// One callable function (each overload is one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionInfo {
    pub schema: String,
    pub name: String,
    /// `schema.name(types)` or `name(types)` as PostgreSQL identifies it.
    pub signature: String,
    /// What a caller passes, in order (`in`, `inout`, `variadic`).
    pub arguments: Vec<FunctionArgument>,
    /// The result as PostgreSQL writes it (`integer`, `SETOF film`,
    /// `TABLE(id integer, title text)`, `void`).
    pub returns: String,
    /// Returns a set of rows.
    pub returns_set: bool,
    /// The result's named columns (`out`, `inout` and `table` arguments);
    /// empty for a result of a single type.
    pub columns: Vec<FunctionColumn>,
    /// `immutable`, `stable` or `volatile`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub volatility: Volatility,
    /// Its last argument is `VARIADIC` (positional params may spread it).
    pub variadic: bool,
}

/// An argument a caller passes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionArgument {
    /// `null` for an unnamed argument (pass it by position).
    pub name: Option<String>,
    /// The type as PostgreSQL writes it.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `in`, `inout` or `variadic`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mode: ArgMode,
    /// The default expression (the argument may be left out), or `null`.
    pub default: Option<String>,
}

/// A column of a function's result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionColumn {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub type_name: String,
}

words! {
    /// How an argument of a function is declared.
    pub enum ArgMode {
        In = "in",
        Out = "out",
        InOut = "inout",
        Variadic = "variadic",
        /// A column of `RETURNS TABLE (…)`.
        Table = "table",
    }
}

impl ArgMode {
    /// Does a caller pass it?
    pub const fn input(self) -> bool {
        matches!(self, Self::In | Self::InOut | Self::Variadic)
    }

    /// Is it a column of the result?
    pub const fn output(self) -> bool {
        matches!(self, Self::Out | Self::InOut | Self::Table)
    }
}

words! {
    /// A function's volatility (which replicas may answer it, what the
    /// planner may assume).
    pub enum Volatility {
        Immutable = "immutable",
        Stable = "stable",
        Volatile = "volatile",
    }
}

/// `POST /platform/register`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlatformRegisterRequest {
    pub platform: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformRegisterResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: RegisterStatus,
    pub platform: String,
    pub message: String,
}

words! {
    /// `POST /platform/register`, `POST /platform/{platform}/schema`: stored.
    pub enum RegisterStatus {
        Registered = "registered",
    }
}

/// `POST /platform/{platform}/schema` (201).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaUploadResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: RegisterStatus,
    pub platform: String,
    pub schema_name: String,
    pub has_tables: bool,
    pub has_functions: bool,
    pub has_migrations: bool,
    pub checksum: String,
    /// The stored version this content is (the latest).
    pub version: i32,
    /// False when the content equals the latest version, which was then
    /// not stored again.
    pub new_version: bool,
}

/// One stored version in `GET /platform/{platform}/schemas/{name}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaVersionInfo {
    pub version: i32,
    /// Checksum of the schema's files (the upload answer's `checksum`).
    pub checksum: String,
    /// SHA-256 of the archive as uploaded.
    pub archive_sha256: String,
    /// RFC 3339.
    pub uploaded_at: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// How many ready databases of the schema run this version.
    pub databases: u64,
    /// The latest version: what `/database/create` and `/v2/migrate` deploy
    /// without `version`.
    pub latest: bool,
}

/// `GET /platform/{platform}/schemas/{name}/versions`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaVersionsResponse {
    pub platform: String,
    pub schema_name: String,
    pub latest: i32,
    pub versions: Vec<SchemaVersionInfo>,
    pub count: usize,
}

/// A stored schema version a request asks for (`version`): a number ≥ 1,
/// or `"latest"`. Anything else (0, a negative or fractional number, a
/// number in a string, another word) is refused naming the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionChoice {
    Number(i32),
    Latest,
}

/// What [`VersionChoice`] accepts, as its errors say.
pub const VERSION_RULE: &str =
    "version must be a stored version number (a whole number >= 1, not in quotes) or \"latest\"";

impl Serialize for VersionChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VersionChoice::Number(n) => s.serialize_i32(*n),
            VersionChoice::Latest => s.serialize_str("latest"),
        }
    }
}

impl<'de> Deserialize<'de> for VersionChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = VersionChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(VERSION_RULE)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<VersionChoice, E> {
                match i32::try_from(n) {
                    Ok(n) if n >= 1 => Ok(VersionChoice::Number(n)),
                    _ => Err(E::custom(format!("{n}: {VERSION_RULE}"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<VersionChoice, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{n}: {VERSION_RULE}"))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<VersionChoice, E> {
                Err(E::custom(format!("{n}: {VERSION_RULE}")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<VersionChoice, E> {
                if s == "latest" {
                    Ok(VersionChoice::Latest)
                } else {
                    Err(E::custom(format!("{s:?}: {VERSION_RULE}")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaInfo {
    pub name: String,
    pub has_tables: bool,
    pub has_functions: bool,
    pub has_migrations: bool,
    pub has_seeders: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaListResponse {
    pub platform: String,
    pub schemas: Vec<SchemaInfo>,
    pub count: usize,
}

/// One database in `GET /platform/{platform}/databases`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseInfo {
    pub id: String,
    pub database_name: String,
    pub schema_name: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseListResponse {
    pub platform: String,
    pub databases: Vec<DatabaseInfo>,
    pub count: usize,
}

/// One platform in `GET /platforms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformSummary {
    pub name: String,
    /// Which API the platform uses: `v1` (`/register` tenants), `v2`
    /// (registered with `/platform/register`, stored schemas), or `both`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: PlatformKind,
    pub schemas: usize,
    pub databases: usize,
}

words! {
    /// Which API a platform uses (`GET /platforms`).
    pub enum PlatformKind {
        /// Tenant databases through `/register` and `/migrate` only.
        V1 = "v1",
        /// Registered with `/platform/register`; no v1 tenant database.
        V2 = "v2",
        /// Registered for v2 and holding v1 tenant databases too.
        Both = "both",
    }
}

impl PlatformKind {
    /// From whether the platform registered for v2 and holds v1 databases
    /// (a platform not registered for v2 is a v1 one, databases or not).
    pub const fn of(v2_registered: bool, has_v1_databases: bool) -> PlatformKind {
        match (v2_registered, has_v1_databases) {
            (false, _) => Self::V1,
            (true, false) => Self::V2,
            (true, true) => Self::Both,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformsResponse {
    pub platforms: Vec<PlatformSummary>,
    pub count: usize,
}

/// `POST /database/create`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DatabaseCreateRequest {
    pub platform: String,
    pub schema_name: String,
    pub database_id: String,
    /// Deploy into a throwaway database, answer with the plan, create nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The stored version to create it at (default: the latest). A number
    /// pins the database to that version (`/v2/migrate` without `version`
    /// leaves it there); `"latest"` is the default, unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub version: Option<VersionChoice>,
}

/// `POST /admin/database/create`: today's StoneScriptPHP `TenantProvisioner`
/// (7.x sends `uuid`, 5.5.1 the hyphenated uuid as `database_id`); no id
/// creates the schema's own database `{platform}_{schema_name}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdminDatabaseCreateRequest {
    pub platform: String,
    pub schema_name: String,
    /// The tenant's uuid (`[a-z0-9]+(-[a-z0-9]+)*`): the database is
    /// `{platform}_{schema_name}_{uuid, hyphens as underscores}`.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The same as `uuid`, under the name StoneScriptPHP 5.5.1 sends (the
    /// same rule; not both).
    #[serde(default)]
    pub database_id: Option<String>,
    /// Deploy into a throwaway database, answer with the plan, create nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// As on `/database/create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub version: Option<VersionChoice>,
}

/// `POST /admin/platform-token`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlatformTokenRequest {
    pub platform: String,
    /// Issue a new token; the old one stops working at once.
    #[serde(default)]
    pub rotate: bool,
}

/// `POST /admin/platform-token` (201): the same token until rotated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformTokenResponse {
    pub platform: String,
    /// A bearer token acting for this platform like a `DEPLOY_TOKENS` entry.
    pub token: String,
    /// When this token (its generation) was issued, RFC 3339.
    pub created_at: String,
}

/// `POST /database/create` (201).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseCreateResponse {
    /// `created`, or `would_create` for a dry run.
    pub status: RequestStatus,
    pub platform: String,
    pub schema_name: String,
    pub database_name: String,
    pub extensions_installed: u64,
    pub types_deployed: u64,
    pub tables_created: u64,
    pub functions_deployed: u64,
    pub seeders: Vec<SeederResult>,
    pub execution_time_ms: u64,
    /// The stored schema version it was created at.
    #[serde(default)]
    pub version: i32,
    /// Created with an explicit `version`: it stays there through
    /// `/v2/migrate` without `version`.
    #[serde(default)]
    pub pinned: bool,
    /// The schema was deployed into the new database statement by
    /// statement (a version other than the latest has no template), rather
    /// than copied from the version's template.
    #[serde(default)]
    pub full_deployment: bool,
}

/// `POST /v2/migrate`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct V2MigrateRequest {
    pub platform: String,
    pub schema_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    /// The one database `{platform}_{schema_name}_{uuid}` (today's
    /// StoneScriptPHP), hyphens or underscores alike; not with `database_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Let every dataloss or incompatible change through (and edited
    /// migrations, missing seeded rows).
    #[serde(default)]
    pub force: bool,
    /// Let these classes of table change through (the granular `force`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub allow: Vec<AllowClass>,
    /// Verification runs and is reported but never fails the migration.
    #[serde(default)]
    pub skip_verification: bool,
    /// Migrate the first database alone first and stop if it fails.
    #[serde(default)]
    pub canary: bool,
    /// After a failure, start no further database (running ones finish).
    #[serde(default)]
    pub stop_on_error: bool,
    /// Deploy into each database and roll back: the plans, nothing changed.
    #[serde(default)]
    pub dry_run: bool,
    /// Without it: the latest version, and pinned databases stay where they
    /// are (status `pinned`). A number: every targeted database moves to that
    /// stored version (older than its own: a rollback) and is pinned there.
    /// `"latest"`: they move to the latest version and are unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub version: Option<VersionChoice>,
}

words! {
    /// A class of table change `allow` lets through on the v2 migrate
    /// routes (StoneScriptPHP's granular form of `force`).
    pub enum AllowClass {
        DropTable = "drop_table",
        DropColumn = "drop_column",
        ModifyColumnType = "modify_column_type",
        AddNotNullColumn = "add_not_null_column",
        SetNotNull = "set_not_null",
    }
}

/// `POST /v2/migrate` response: the seed's summary plus per-database results.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct V2MigrateResponse {
    pub status: RequestStatus,
    pub platform: String,
    pub schema_name: String,
    pub databases_updated: Vec<String>,
    pub migrations_applied: u64,
    pub functions_updated: u64,
    pub seeder_validations: Vec<SeederResult>,
    pub schema_validation: SchemaValidation,
    pub verification: Verification,
    pub results: Vec<DeploymentReport>,
    pub execution_time_ms: u64,
}

/// `POST /v2/migrate-all`: every tenant database of a stored schema,
/// migrated by an asynchronous job (the schema's own database
/// `{platform}_{schema_name}` is not part of it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateAllRequest {
    pub platform: String,
    pub schema_name: String,
    #[serde(default)]
    pub force: bool,
    /// Classes of table change let through, as on `/v2/migrate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub allow: Vec<AllowClass>,
    #[serde(default)]
    pub skip_verification: bool,
    /// As on `/v2/migrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub version: Option<VersionChoice>,
}

words! {
    /// Where a `/v2/migrate-all` job is: `queued` → `running` → one of
    /// the four ends.
    pub enum JobStatus {
        Queued = "queued",
        Running = "running",
        /// Every database's result is `completed`.
        Completed = "completed",
        /// Some databases completed, some did not.
        Partial = "partial",
        /// No database completed, or the job itself failed (`error`).
        Failed = "failed",
        /// The migrator running it stopped before it ended; its slot is free.
        Interrupted = "interrupted",
    }
}

impl JobStatus {
    /// Is the job over (a poller stops here)?
    pub const fn ended(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// How a job that went through all its databases ended.
    pub const fn of_counts(succeeded: u64, failed: u64) -> JobStatus {
        match (succeeded, failed) {
            (_, 0) => Self::Completed,
            (0, _) => Self::Failed,
            _ => Self::Partial,
        }
    }
}

words! {
    /// One database's result in a `/v2/migrate-all` job, in
    /// StoneScriptPHP's words.
    pub enum JobResultStatus {
        /// Migrated, already up to date, or left as it was on purpose.
        Completed = "completed",
        /// Its migration failed (`error` says why); it is as it was.
        Failed = "failed",
        /// Not attempted.
        Skipped = "skipped",
    }
}

impl JobResultStatus {
    /// A deployment's status in a job's words.
    pub const fn of(status: DeployStatus) -> JobResultStatus {
        match status {
            DeployStatus::Created
            | DeployStatus::Updated
            | DeployStatus::Unchanged
            | DeployStatus::Skipped
            | DeployStatus::DryRun
            | DeployStatus::WouldCreate
            | DeployStatus::Pinned => Self::Completed,
            DeployStatus::Failed | DeployStatus::Blocked => Self::Failed,
            DeployStatus::NotAttempted => Self::Skipped,
        }
    }
}

/// `POST /v2/migrate-all` → 202: the job started.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrateAllStarted {
    pub job_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: JobStatus,
    pub total_databases: u64,
}

/// One database of a `/v2/migrate-all` job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobResult {
    pub database: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: JobResultStatus,
    pub migrations_applied: u64,
    pub functions_updated: u64,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v2/migrate-all/{job_id}`: the job as it is now (results arrive
/// as databases finish).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrateAllJob {
    pub job_id: String,
    pub platform: String,
    pub schema_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: JobStatus,
    pub total_databases: u64,
    /// Results `completed`.
    pub succeeded: u64,
    /// Results `failed` or `skipped`.
    pub failed: u64,
    pub results: Vec<JobResult>,
    /// From start to end (or to now while it runs).
    pub execution_time_ms: u64,
    /// Why the job failed, partly failed or was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// One kept v1 archive in `GET /platform/{platform}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct V1VersionInfo {
    /// Its number (`POST /migrate` `version`); numbers are never given twice.
    pub version: i32,
    /// sha256 of the archive as it was shipped (hex).
    pub archive_sha256: String,
    /// Its size in bytes (compressed).
    pub size: i64,
    /// RFC 3339.
    pub uploaded_at: String,
    /// The archive `/admin/create-tenant` deploys: the one the platform
    /// shipped (or redeployed) last.
    pub latest: bool,
    /// The number this archive was kept under before `POST /migrate`
    /// `version` redeployed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeployed_from: Option<i32>,
}

/// `GET /platform/{platform}/versions`: the v1 archives the platform
/// keeps, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct V1VersionsResponse {
    pub platform: String,
    pub versions: Vec<V1VersionInfo>,
    pub count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_is_v1_until_it_registers_for_v2() {
        assert_eq!(PlatformKind::of(false, false), PlatformKind::V1);
        assert_eq!(PlatformKind::of(false, true), PlatformKind::V1);
        assert_eq!(PlatformKind::of(true, false), PlatformKind::V2);
        assert_eq!(PlatformKind::of(true, true), PlatformKind::Both);
    }

    #[test]
    fn an_argument_is_passed_a_column_returned_or_both() {
        let passed: Vec<_> = ArgMode::ALL.iter().filter(|m| m.input()).collect();
        let returned: Vec<_> = ArgMode::ALL.iter().filter(|m| m.output()).collect();
        assert_eq!(passed, [&ArgMode::In, &ArgMode::InOut, &ArgMode::Variadic]);
        assert_eq!(returned, [&ArgMode::Out, &ArgMode::InOut, &ArgMode::Table]);
    }

    #[test]
    fn call_request_borrows_and_keeps_raw_params() {
        let body = r#"{"platform":"app","tenant_id":42,"function":"f","params":[1.000000000000000000001,"x"]}"#;
        let req: CallRequest = serde_json::from_str(body).unwrap();
        assert!(matches!(req.platform, Cow::Borrowed("app")));
        assert_eq!(req.tenant_id.as_deref(), Some("42"));
        assert_eq!(
            req.params.unwrap().get(),
            r#"[1.000000000000000000001,"x"]"#
        );
        let req: CallRequest =
            serde_json::from_str(r#"{"platform":"app","tenant_id":null,"function":"f"}"#).unwrap();
        assert!(req.tenant_id.is_none() && req.params.is_none());
        assert!(serde_json::from_str::<CallRequest>(
            r#"{"platform":"app","tenant_id":-1,"function":"f"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<CallRequest>(r#"{"platform":"app"}"#).is_err());
    }

    #[test]
    fn statuses_keep_their_words() {
        // the words the API has always written, as the enums write them
        let words = |all: &[&str], got: Vec<String>| assert_eq!(all, got.as_slice());
        let of = |v: Vec<serde_json::Value>| -> Vec<String> {
            v.into_iter()
                .map(|w| w.as_str().unwrap().to_owned())
                .collect()
        };
        macro_rules! json_words {
            ($t:ty) => {
                of(<$t>::ALL
                    .iter()
                    .map(|v| serde_json::to_value(v).unwrap())
                    .collect())
            };
        }
        words(
            &["healthy", "degraded", "unhealthy"],
            json_words!(HealthStatus),
        );
        words(&["connected", "unreachable"], json_words!(PostgresStatus));
        words(&["up", "not_ready", "down"], json_words!(MigratorStatus));
        words(&["alive", "ready", "not_ready"], json_words!(ProbeStatus));
        words(&["adopted", "unchanged"], json_words!(AdoptStatus));
        words(&["announced"], json_words!(RefreshStatus));
        words(&["registered"], json_words!(RegisterStatus));
        words(&["primary_key", "columns", "count"], json_words!(MatchedOn));
        words(
            &["safe", "dataloss", "incompatible"],
            json_words!(ChangeClass),
        );
        words(
            &[
                "extensions",
                "types",
                "tables",
                "migrations",
                "functions",
                "seeders",
                "after_commit",
            ],
            json_words!(Phase),
        );
        words(
            &[
                "register",
                "migrate",
                "create_tenant",
                "database_create",
                "v2_migrate",
                "template",
                "drop",
            ],
            json_words!(Operation),
        );
        words(
            &["v1", "v2", "template", "scratch", "adopted"],
            json_words!(DbKind),
        );
        words(
            &[
                "created",
                "updated",
                "unchanged",
                "skipped",
                "failed",
                "not_attempted",
                "dry_run",
                "blocked",
                "would_create",
                "pinned",
            ],
            json_words!(DeployStatus),
        );
        words(
            &[
                "queued",
                "running",
                "completed",
                "partial",
                "failed",
                "interrupted",
            ],
            json_words!(JobStatus),
        );
        words(
            &["completed", "failed", "skipped"],
            json_words!(JobResultStatus),
        );
        assert!(ChangeClass::Safe < ChangeClass::Dataloss);
        assert!(ChangeClass::Dataloss < ChangeClass::Incompatible);
    }

    #[test]
    fn a_recorded_status_is_one_word() {
        for w in [
            "running",
            "interrupted",
            "created",
            "updated",
            "unchanged",
            "failed",
            "dry_run",
            "blocked",
            "would_create",
        ] {
            let s: RecordStatus = w.parse().unwrap();
            assert_eq!(s.as_str(), w);
            assert_eq!(serde_json::to_value(s).unwrap(), w);
            assert_eq!(
                serde_json::from_value::<RecordStatus>(serde_json::json!(w)).unwrap(),
                s
            );
        }
        assert_eq!(
            RecordStatus::from(DeployStatus::Failed),
            "failed".parse().unwrap()
        );
        let e = "Running".parse::<RecordStatus>().unwrap_err();
        assert_eq!(e.to_string(), r#""Running" is not a RecordStatus"#);
        assert!(serde_json::from_str::<RecordStatus>(r#""done""#).is_err());
    }

    #[test]
    fn optional_words_are_left_out_when_absent() {
        let r = SeederResult::default();
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("matched_on").is_none(), "{v}");
        let r = SeederResult {
            matched_on: Some(MatchedOn::PrimaryKey),
            ..SeederResult::default()
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap()["matched_on"],
            "primary_key"
        );
        let step: PlanStep = serde_json::from_str(
            r#"{"phase":"tables","class":"dataloss","object":"t","reason":"r","sql":[]}"#,
        )
        .unwrap();
        assert_eq!(step.class, Some(ChangeClass::Dataloss));
        let step: PlanStep =
            serde_json::from_str(r#"{"phase":"functions","object":"f","reason":"r","sql":[]}"#)
                .unwrap();
        assert!(step.class.is_none());
        assert!(serde_json::to_value(&step).unwrap().get("class").is_none());
    }

    #[test]
    fn v2_migrate_takes_the_clis_uuid_allow_and_skip_verification() {
        let req: V2MigrateRequest = serde_json::from_str(
            r#"{"platform": "myapp", "schema_name": "tenant", "uuid": "0f1e_a2b3", "force": false,
                "allow": ["drop_column", "set_not_null"], "skip_verification": true}"#,
        )
        .unwrap();
        assert_eq!(req.uuid.as_deref(), Some("0f1e_a2b3"));
        assert_eq!(req.allow, [AllowClass::DropColumn, AllowClass::SetNotNull]);
        assert!(req.skip_verification && !req.force);
        let e = serde_json::from_str::<V2MigrateRequest>(
            r#"{"platform": "myapp", "schema_name": "tenant", "allow": ["drop_everything"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("drop_everything"), "{e}");
        // the seed's request writes back without the new fields
        let v = serde_json::to_value(
            serde_json::from_str::<V2MigrateRequest>(r#"{"platform": "a", "schema_name": "b"}"#)
                .unwrap(),
        )
        .unwrap();
        assert!(v.get("allow").is_none() && v.get("uuid").is_none(), "{v}");
    }

    #[test]
    fn a_version_is_a_stored_number_or_latest_and_anything_else_names_the_rule() {
        let parse = |v: &str| {
            crate::request::parse_json::<V2MigrateRequest>(
                format!(r#"{{"platform":"p","schema_name":"s","version":{v}}}"#).as_bytes(),
                "v2 migrate",
            )
            .map(|r| r.version)
        };
        assert_eq!(parse("3"), Ok(Some(VersionChoice::Number(3))));
        assert_eq!(parse(r#""latest""#), Ok(Some(VersionChoice::Latest)));
        for bad in [
            "0",
            "-1",
            r#""2""#,
            r#""newest""#,
            "1.5",
            "2.0",
            "true",
            "[1]",
            "4294967297",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("version") && e.contains(">= 1"), "{bad}: {e}");
        }
        let absent: V2MigrateRequest =
            serde_json::from_str(r#"{"platform":"p","schema_name":"s"}"#).unwrap();
        assert_eq!(absent.version, None);
        assert_eq!(
            serde_json::to_value(VersionChoice::Number(2)).unwrap(),
            serde_json::json!(2)
        );
        assert_eq!(
            serde_json::to_value(VersionChoice::Latest).unwrap(),
            serde_json::json!("latest")
        );
    }

    #[test]
    fn v2_shapes_match_the_api_guide() {
        // the seed's /v2/migrate example body parses, force defaulting to false
        let req: V2MigrateRequest =
            serde_json::from_str(r#"{"platform": "myapp", "schema_name": "tenant_db"}"#).unwrap();
        assert!(!req.force && req.database_id.is_none());
        let created = DatabaseCreateResponse {
            status: RequestStatus::Created,
            platform: "myapp".into(),
            schema_name: "tenant_db".into(),
            database_name: "myapp_tenant_db_store_001".into(),
            extensions_installed: 2,
            types_deployed: 3,
            tables_created: 15,
            functions_deployed: 42,
            seeders: vec![SeederResult {
                table: "roles".into(),
                inserted: 3,
                skipped: 0,
                ..SeederResult::default()
            }],
            execution_time_ms: 350,
            version: 1,
            pinned: false,
            full_deployment: false,
        };
        let v = serde_json::to_value(&created).unwrap();
        assert_eq!(v["seeders"][0]["table"], "roles");
        assert_eq!(v["database_name"], "myapp_tenant_db_store_001");
    }

    #[test]
    fn a_job_speaks_the_clients_vocabulary() {
        use DeployStatus as D;
        use JobResultStatus as J;
        for (d, j) in [
            (D::Created, J::Completed),
            (D::Updated, J::Completed),
            (D::Unchanged, J::Completed),
            (D::Skipped, J::Completed),
            (D::Failed, J::Failed),
            (D::Blocked, J::Failed),
            (D::NotAttempted, J::Skipped),
            (D::Pinned, J::Completed),
        ] {
            assert_eq!(J::of(d), j, "{d}");
        }
        assert_eq!(JobStatus::of_counts(3, 0), JobStatus::Completed);
        assert_eq!(JobStatus::of_counts(2, 1), JobStatus::Partial);
        assert_eq!(JobStatus::of_counts(0, 3), JobStatus::Failed);
        let ended: Vec<bool> = JobStatus::ALL.iter().map(|s| s.ended()).collect();
        assert_eq!(ended, [false, false, true, true, true, true]);
        let r: Result<MigrateAllRequest, _> = serde_json::from_str(
            r#"{"platform":"p","schema_name":"s","allow":["drop_table"],"skip_verification":true}"#,
        );
        assert_eq!(r.unwrap().allow, [AllowClass::DropTable]);
        let r: Result<MigrateAllRequest, _> =
            serde_json::from_str(r#"{"platform":"p","schema_name":"s","database_id":"x"}"#);
        assert!(r.is_err(), "a strict request");
    }
}
