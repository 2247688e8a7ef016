//! The control catalog (docs/OPERATIONS.md, "The control catalog"): a gateway-owned database (`CATALOG_DB`,
//! default `stonescriptdb_gateway`) on the admin server recording platforms
//! (with their roles), every database the gateway created or adopted (owner,
//! kind, ids, server, schema version, state, generation), stored schema
//! versions, and every deployment (who asked, what, when, result). It is the
//! single source of who owns what: no route infers ownership from a name.
//!
//! * Creating a database is crash-consistent: the row is recorded
//!   `creating` under a lease (an advisory lock held by the creating
//!   session), the database is created and deployed, then the row turns
//!   `ready`. A row whose lease is free belongs to a migrator that died; it
//!   is resolved at start (and when the same name is created again): the
//!   half-made database is dropped and the row removed. A live migrator's
//!   creation is never touched.
//! * Every deployment is recorded `running` under a lease and finished with
//!   its outcome. A deployment that changed something announces it: the
//!   database takes the next catalog generation and a notification goes out
//!   on [`CHANNEL`] in the same transaction, so routers drop what they cached.
//!   If the migrator dies between the database's commit and that, the lease
//!   is free while the row says `running`: routers treat that as an
//!   announcement when they poll, and the next migrator to start records it
//!   `interrupted` and announces it.
//!
//! The schema is versioned DDL (`v1.sql`, …) applied once under an advisory
//! lock, so several migrators may start at once.
//!
//! One room per concern, each an `impl Catalog` beside its SQL: this file
//! (opening, the schema's versions, the shared types), `platforms`,
//! `databases`, `deployments`, `schemas`.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use stonescriptdb_shared::catalog::{DbKind, DbState, LEASE_CLASS};
use stonescriptdb_shared::names::quote_ident;
use stonescriptdb_shared::wire::{DeployStatus, Operation};
use stonescriptdb_startup::tls::PgTls;
use tokio_postgres::error::SqlState;

use crate::error::{pg_message, MigratorError};

mod databases;
mod deployments;
mod platforms;
mod schemas;

/// The catalog's versioned DDL, applied in order.
const VERSIONS: &[(i32, &str)] = &[(1, include_str!("v1.sql")), (2, include_str!("v2.sql"))];

/// Timestamps as RFC 3339 UTC.
const TS: &str = "YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"";

fn ts(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', '{TS}')")
}

fn unavailable(e: impl std::fmt::Display) -> MigratorError {
    MigratorError::DatabaseUnavailable(format!("control catalog: {e}"))
}

fn pg(e: tokio_postgres::Error) -> MigratorError {
    unavailable(pg_message(&e))
}

/// A platform and its PostgreSQL roles.
#[derive(Clone, PartialEq, Eq)]
pub struct Platform {
    pub name: String,
    pub owner_role: String,
    pub owner_password: String,
    pub app_role: String,
    pub app_password: String,
    /// Registered through `POST /platform/register`.
    pub v2: bool,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("name", &self.name)
            .field("owner_role", &self.owner_role)
            .field("app_role", &self.app_role)
            .field("v2", &self.v2)
            .finish_non_exhaustive()
    }
}

/// A database the catalog records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub platform: String,
    pub kind: DbKind,
    pub state: DbState,
    pub tenant_id: Option<String>,
    pub schema_name: Option<String>,
    pub database_id: Option<String>,
    pub schema_version: Option<i32>,
    /// RFC 3339.
    pub created_at: String,
}

/// What to record for a database about to be created.
#[derive(Debug, Clone)]
pub struct NewDatabase {
    pub name: String,
    /// Empty only for the scratch database of a platform not recorded yet.
    pub platform: String,
    pub kind: DbKind,
    pub tenant_id: Option<String>,
    pub schema_name: Option<String>,
    pub database_id: Option<String>,
    pub schema_version: Option<i32>,
    pub owner_role: String,
}

impl NewDatabase {
    /// `name`, of `platform` (`""`: a scratch database of a platform not
    /// recorded yet), owned by `owner_role`; ids and version unset.
    pub fn new(name: &str, platform: &str, kind: DbKind, owner_role: &str) -> Self {
        NewDatabase {
            name: name.to_owned(),
            platform: platform.to_owned(),
            kind,
            tenant_id: None,
            schema_name: None,
            database_id: None,
            schema_version: None,
            owner_role: owner_role.to_owned(),
        }
    }
}

/// Why a database cannot be created.
#[derive(Debug)]
pub enum CreateRefused {
    /// Recorded already (ready, or being created by a live migrator), by
    /// this platform or another one: one answer, never naming the other.
    Recorded,
    /// Not recorded, but PostgreSQL has a database of that name.
    Unrecorded,
    /// The name falls under another registered platform's longer prefix.
    Reserved,
    Failed(MigratorError),
}

/// One stored version of a v2 schema (without its archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    pub version: i32,
    pub checksum: String,
    pub archive_sha256: String,
    pub uploaded_at: String,
    pub has_tables: bool,
    pub has_functions: bool,
    pub has_migrations: bool,
    pub has_seeders: bool,
}

/// What a deployment record starts with.
#[derive(Debug, Clone)]
pub struct DeploymentStart {
    pub database: String,
    pub platform: String,
    pub operation: Operation,
    pub dry_run: bool,
    pub force: bool,
    pub archive_sha256: Option<String>,
    pub schema_version: Option<i32>,
    pub caller: Caller,
}

/// Who asked for a change (recorded with each deployment).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `admin`, `deploy:<platform>`, or `anonymous` when no token is configured.
    pub token_name: String,
    pub peer: Option<String>,
    pub request_id: Option<String>,
}

/// A catalog session holding an advisory-lock lease. Dropped without
/// [`Lease::release`] (a cancelled request), its connection is closed rather
/// than returned to the pool, so PostgreSQL frees the lease.
pub struct Lease {
    conn: Option<Object>,
    pub lease: i32,
}

impl Lease {
    fn conn(&self) -> &Object {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until released")
    }

    /// Free the lease and give the connection back.
    async fn release(mut self) {
        if let Some(c) = self.conn.take() {
            let unlocked = c
                .query_one(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&LEASE_CLASS, &self.lease],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            if !unlocked {
                drop(Object::take(c));
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            drop(Object::take(c));
        }
    }
}

/// A database being created: finish or abort it.
pub struct Creation {
    lease: Lease,
    pub name: String,
}

/// A deployment being recorded: finish it with its outcome.
pub struct Deployment {
    lease: Lease,
    pub id: i64,
    pub database: String,
}

/// How a deployment ended, for its record.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `failed` when the deployment failed.
    pub status: DeployStatus,
    pub counts: Option<Value>,
    pub error: Option<Value>,
    /// It committed a change: announce it to routers.
    pub changed: bool,
    /// v2: the schema version the database is now at.
    pub schema_version: Option<i32>,
}

/// `$1` (a database name) falls under the name prefix `p_` of a registered
/// platform `p` other than, and longer than, `$2` (the platform creating it).
const RESERVED_SQL: &str = "SELECT 1 FROM platforms WHERE name <> $2 AND length(name) > length($2)
    AND starts_with($1, name || '_') LIMIT 1";

pub struct Catalog {
    pool: Pool,
    pub name: String,
}

impl Catalog {
    /// Connect to the catalog database `name` (creating it, and applying
    /// its DDL, when missing). `admin` is a connection to the admin database.
    /// Only the gateway's own role (and superusers) may connect to it: it
    /// holds the platforms' role passwords. That is checked at every start,
    /// for a catalog created by hand or by an older version too, and PUBLIC's
    /// `CONNECT`/`TEMPORARY` revoked; a catalog the gateway cannot close is
    /// not opened.
    pub async fn open(
        base: &tokio_postgres::Config,
        tls: &PgTls,
        admin: &tokio_postgres::Client,
        name: &str,
    ) -> Result<Catalog, MigratorError> {
        let exists = !admin
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(pg)?
            .is_empty();
        if !exists {
            match admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
                .await
            {
                Ok(()) => {}
                // another migrator created it at the same moment
                Err(e)
                    if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                        || e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => {
                    return Err(unavailable(format!(
                        "cannot create the catalog database {name} (the gateway's role needs CREATEDB): {}",
                        pg_message(&e)
                    )))
                }
            }
        }
        // PUBLIC's rights, explicit or PostgreSQL's default ones (a NULL acl).
        let public_may_connect: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database d,
                        aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                        WHERE d.datname = $1 AND a.grantee = 0
                          AND a.privilege_type IN ('CONNECT', 'TEMPORARY'))",
                &[&name],
            )
            .await
            .map_err(pg)?
            .get(0);
        if public_may_connect {
            let revoke = format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                quote_ident(name)
            );
            admin.batch_execute(&revoke).await.map_err(|e| {
                unavailable(format!(
                    "the catalog database {name} lets every role connect (PUBLIC has CONNECT or TEMPORARY) and the gateway's role cannot revoke that: {}; run `{revoke}` as its owner",
                    pg_message(&e)
                ))
            })?;
        }
        let mut cfg = base.clone();
        cfg.dbname(name);
        cfg.connect_timeout(Duration::from_secs(5));
        let mgr = Manager::from_config(
            cfg,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // A deployment holds one connection (its lease) for as long as it
        // runs, a creation two: the wait is bounded so that a burst beyond
        // the pool answers 503 instead of waiting on itself.
        let pool = Pool::builder(mgr)
            .max_size(32)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(unavailable)?;
        let catalog = Catalog {
            pool,
            name: name.to_owned(),
        };
        catalog.upgrade_schema().await?;
        Ok(catalog)
    }

    /// A connection to the catalog database (for readers outside this
    /// module that query the catalog together with PostgreSQL's own
    /// catalogs, e.g. `rights`).
    pub(crate) async fn conn(&self) -> Result<Object, MigratorError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable(format!("cannot connect to {}: {e}", self.name)))
    }

    /// Apply the catalog DDL versions this database lacks.
    async fn upgrade_schema(&self) -> Result<(), MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        tx.query("SELECT pg_advisory_xact_lock($1, 0)", &[&LEASE_CLASS])
            .await
            .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS catalog_version (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg)?;
        let current: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM catalog_version", &[])
            .await
            .map_err(pg)?
            .get(0);
        for (version, ddl) in VERSIONS {
            if *version > current {
                tx.batch_execute(ddl).await.map_err(|e| {
                    unavailable(format!(
                        "applying catalog version {version}: {}",
                        pg_message(&e)
                    ))
                })?;
                tx.execute(
                    "INSERT INTO catalog_version (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(pg)?;
            }
        }
        tx.commit().await.map_err(pg)
    }
}

/// Prefix of scratch databases and throwaway roles of dry runs: no
/// platform's naming can produce a name starting with `_`.
pub const SCRATCH_PREFIX: &str = "_sdg_dry_";

/// A creation a dead migrator left behind.
struct Leftover {
    name: String,
    lease: i32,
    kind: String,
    owner_role: String,
}
