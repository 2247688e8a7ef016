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

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use stonescriptdb_shared::catalog::{DbKind, DbState, LEASE_CLASS};
use stonescriptdb_shared::names::quote_ident;
use stonescriptdb_startup::tls::PgTls;
use tokio_postgres::error::SqlState;

use crate::error::{pg_message, MigratorError};

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
#[derive(Debug, Clone, Default)]
pub struct DeploymentStart {
    pub database: String,
    pub platform: String,
    pub operation: &'static str,
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
    pub status: String,
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

    // ---------------------------------------------------------------- platforms

    pub async fn platform(&self, name: &str) -> Result<Option<Platform>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT name, owner_role, owner_password, app_role, app_password, v2_registered_at IS NOT NULL
                 FROM platforms WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| Platform {
            name: r.get(0),
            owner_role: r.get(1),
            owner_password: r.get(2),
            app_role: r.get(3),
            app_password: r.get(4),
            v2: r.get(5),
        }))
    }

    /// Would databases named `prefix_…` (a v2 schema's, `{except}_{schema}`)
    /// fall under the name prefix of a registered platform longer than
    /// `except`: one whose `name_` starts `prefix_` (all of them would),
    /// or one named `prefix_…` (some would)?
    pub async fn platform_under(&self, prefix: &str, except: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM platforms WHERE name <> $2 AND length(name) > length($2)
                    AND (starts_with($1 || '_', name || '_') OR starts_with(name, $1 || '_')) LIMIT 1",
                &[&prefix, &except],
            )
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    /// Does the database name `name` fall under the name prefix of a
    /// registered platform longer than `platform` (so it is not `platform`'s
    /// to create)?
    pub async fn reserved(&self, name: &str, platform: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(RESERVED_SQL, &[&name, &platform])
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    /// Is `name` an existing platform's name plus `_…`?
    pub async fn extends_a_platform(&self, name: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM platforms WHERE starts_with($1, name || '_') LIMIT 1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    /// The platform's token generation and when it was issued (RFC 3339),
    /// if a token was ever issued.
    pub async fn token_generation(
        &self,
        platform: &str,
    ) -> Result<Option<(i32, String)>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT generation, {} FROM platform_tokens WHERE platform = $1",
                    ts("created_at")
                ),
                &[&platform],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Issue the platform's token: the current generation (the first one if
    /// none was issued), or the next one when `rotate`.
    pub async fn issue_token(
        &self,
        platform: &str,
        rotate: bool,
    ) -> Result<(i32, String), MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                &format!(
                    "INSERT INTO platform_tokens (platform, generation) VALUES ($1, 1)
                     ON CONFLICT (platform) DO UPDATE SET
                       generation = platform_tokens.generation + CASE WHEN $2 THEN 1 ELSE 0 END,
                       created_at = CASE WHEN $2 THEN now() ELSE platform_tokens.created_at END
                     RETURNING generation, {}",
                    ts("created_at")
                ),
                &[&platform, &rotate],
            )
            .await
            .map_err(pg)?;
        Ok((row.get(0), row.get(1)))
    }

    /// The key kept in the catalog for platform tokens (made on first use).
    pub async fn token_key(&self, fresh: &str) -> Result<String, MigratorError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO token_key (key) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&fresh],
        )
        .await
        .map_err(pg)?;
        let row = conn
            .query_one("SELECT key FROM token_key", &[])
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    /// Record `p` unless a platform of that name exists; returns the
    /// recorded one and whether it was new.
    pub async fn insert_platform(&self, p: &Platform) -> Result<(Platform, bool), MigratorError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "INSERT INTO platforms (name, owner_role, owner_password, app_role, app_password, v2_registered_at)
                 VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END) ON CONFLICT (name) DO NOTHING",
                &[&p.name, &p.owner_role, &p.owner_password, &p.app_role, &p.app_password, &p.v2],
            )
            .await
            .map_err(pg)?;
        let recorded = self
            .platform(&p.name)
            .await?
            .ok_or_else(|| unavailable(format!("platform {} vanished", p.name)))?;
        Ok((recorded, n == 1))
    }

    /// Mark a platform registered through the v2 API; `false` if it was.
    pub async fn mark_v2(&self, name: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE platforms SET v2_registered_at = now() WHERE name = $1 AND v2_registered_at IS NULL",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    /// Every platform: name, v2-registered, stored schemas, ready databases
    /// (templates and scratch databases not counted).
    pub async fn platforms(&self) -> Result<Vec<(String, bool, i64, i64)>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT p.name, p.v2_registered_at IS NOT NULL,
                        (SELECT count(DISTINCT schema_name) FROM schema_versions s WHERE s.platform = p.name),
                        (SELECT count(*) FROM databases d WHERE d.platform = p.name AND d.state = 'ready'
                           AND d.kind IN ('v1', 'v2', 'adopted'))
                 FROM platforms p ORDER BY p.name",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }

    // ---------------------------------------------------------------- databases

    fn database_from(r: &tokio_postgres::Row) -> Database {
        let kind: String = r.get(2);
        let state: String = r.get(3);
        Database {
            name: r.get(0),
            platform: r.get::<_, Option<String>>(1).unwrap_or_default(),
            kind: DbKind::parse(&kind).unwrap_or(DbKind::Adopted),
            state: if state == "ready" {
                DbState::Ready
            } else {
                DbState::Creating
            },
            tenant_id: r.get(4),
            schema_name: r.get(5),
            database_id: r.get(6),
            schema_version: r.get(7),
            created_at: r.get(8),
        }
    }

    fn database_columns() -> String {
        format!(
            "name, platform, kind, state, tenant_id, schema_name, database_id, schema_version, {}",
            ts("created_at")
        )
    }

    pub async fn database(&self, name: &str) -> Result<Option<Database>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT {} FROM databases WHERE name = $1",
                    Self::database_columns()
                ),
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(Self::database_from))
    }

    /// The ready databases of `platform` of the given kinds (optionally of
    /// one v2 schema), by name.
    pub async fn databases(
        &self,
        platform: &str,
        kinds: &[DbKind],
        schema_name: Option<&str>,
    ) -> Result<Vec<Database>, MigratorError> {
        let conn = self.conn().await?;
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let rows = conn
            .query(
                &format!(
                    "SELECT {} FROM databases WHERE platform = $1 AND state = 'ready' AND kind = ANY($2)
                       AND ($3::text IS NULL OR schema_name = $3) ORDER BY name",
                    Self::database_columns()
                ),
                &[&platform, &kinds, &schema_name],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(Self::database_from).collect())
    }

    /// Record `db` as being created, under a lease; the caller creates the
    /// database, then [`Catalog::finish_creation`] or [`Catalog::abort_creation`].
    /// A leftover of a dead migrator under that name is cleaned up first
    /// (its half-made database dropped through `admin`).
    pub async fn begin_creation(
        &self,
        db: &NewDatabase,
        admin: &tokio_postgres::Client,
    ) -> Result<Creation, CreateRefused> {
        for _ in 0..3 {
            match self.try_begin_creation(db).await? {
                Ok(creation) => return Ok(creation),
                Err(Some(leftover)) => self
                    .resolve_creation(admin, &leftover)
                    .await
                    .map_err(CreateRefused::Failed)?,
                Err(None) => continue,
            }
        }
        Err(CreateRefused::Failed(unavailable(format!(
            "could not record the creation of {}: it kept changing",
            db.name
        ))))
    }

    /// `Ok(Ok(_))` recorded; `Ok(Err(Some(row)))` a dead migrator's leftover
    /// to resolve first; `Ok(Err(None))` lost a race, try again.
    async fn try_begin_creation(
        &self,
        db: &NewDatabase,
    ) -> Result<Result<Creation, Option<Leftover>>, CreateRefused> {
        let failed = |e| CreateRefused::Failed(pg(e));
        let mut conn = self.conn().await.map_err(CreateRefused::Failed)?;
        let tx = conn.transaction().await.map_err(failed)?;
        let existing = tx
            .query_opt(
                "SELECT state, lease, kind, owner_role FROM databases WHERE name = $1 FOR UPDATE",
                &[&db.name],
            )
            .await
            .map_err(failed)?;
        if let Some(r) = existing {
            let state: String = r.get(0);
            let lease: Option<i32> = r.get(1);
            if state == "ready" {
                return Err(CreateRefused::Recorded);
            }
            let lease = lease.unwrap_or(0);
            let free: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LEASE_CLASS, &lease],
                )
                .await
                .map_err(failed)?
                .get(0);
            drop(tx);
            if !free {
                return Err(CreateRefused::Recorded);
            }
            let unlocked = conn
                .query_one("SELECT pg_advisory_unlock($1, $2)", &[&LEASE_CLASS, &lease])
                .await;
            if unlocked.is_err() {
                drop(Object::take(conn));
            }
            return Ok(Err(Some(Leftover {
                name: db.name.clone(),
                lease,
                kind: r.get(2),
                owner_role: r.get(3),
            })));
        }
        let in_postgres = !tx
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&db.name])
            .await
            .map_err(failed)?
            .is_empty();
        if in_postgres {
            return Err(CreateRefused::Unrecorded);
        }
        // `{p}_…` belongs to a registered platform `p`: nobody with a
        // shorter name may create under it (`shop` + tenant `admin_t9` is
        // `shop_admin`'s `t9`).
        if db.kind != DbKind::Scratch {
            let reserved = tx
                .query_opt(RESERVED_SQL, &[&db.name, &db.platform])
                .await
                .map_err(failed)?;
            if reserved.is_some() {
                return Err(CreateRefused::Reserved);
            }
        }
        let lease: i32 = tx
            .query_one("SELECT nextval('leases')::integer", &[])
            .await
            .map_err(failed)?
            .get(0);
        let inserted = tx
            .execute(
                "INSERT INTO databases (name, platform, kind, tenant_id, schema_name, database_id, schema_version,
                                        owner_role, state, lease)
                 VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $8, 'creating', $9)",
                &[
                    &db.name,
                    &db.platform,
                    &db.kind.as_str(),
                    &db.tenant_id,
                    &db.schema_name,
                    &db.database_id,
                    &db.schema_version,
                    &db.owner_role,
                    &lease,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            // created concurrently under the same name: look again
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(Err(None)),
            Err(e) => return Err(failed(e)),
        }
        tx.query("SELECT pg_advisory_lock($1, $2)", &[&LEASE_CLASS, &lease])
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(Ok(Creation {
            lease: Lease {
                conn: Some(conn),
                lease,
            },
            name: db.name.clone(),
        }))
    }

    /// The database exists and is deployed: make it reachable and announce it.
    pub async fn finish_creation(&self, c: Creation) -> Result<i64, MigratorError> {
        let generation: i64 = {
            let conn = c.lease.conn();
            conn.batch_execute("BEGIN").await.map_err(pg)?;
            let r = async {
                conn.execute(
                    "UPDATE databases SET state = 'ready', lease = NULL, created_at = now(), last_deployed_at = now()
                     WHERE name = $1 AND lease = $2",
                    &[&c.name, &c.lease.lease],
                )
                .await?;
                let g: i64 = conn
                    .query_one("SELECT announce($1)", &[&c.name])
                    .await?
                    .get(0);
                conn.batch_execute("COMMIT").await?;
                Ok::<_, tokio_postgres::Error>(g)
            }
            .await;
            match r {
                Ok(g) => g,
                Err(e) => {
                    let _ = conn.batch_execute("ROLLBACK").await;
                    return Err(pg(e));
                }
            }
        };
        c.lease.release().await;
        Ok(generation)
    }

    /// The creation failed and its database is gone: forget it.
    pub async fn abort_creation(&self, c: Creation) -> Result<(), MigratorError> {
        c.lease
            .conn()
            .execute(
                "DELETE FROM databases WHERE name = $1 AND lease = $2 AND state = 'creating'",
                &[&c.name, &c.lease.lease],
            )
            .await
            .map_err(pg)?;
        c.lease.release().await;
        Ok(())
    }

    /// Drop a dead migrator's half-made database (if it got that far) and
    /// forget it. Only called while holding its lease or having seen it free.
    async fn resolve_creation(
        &self,
        admin: &tokio_postgres::Client,
        l: &Leftover,
    ) -> Result<(), MigratorError> {
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&l.name)
            ))
            .await
            .map_err(|e| {
                MigratorError::DatabaseUnavailable(format!(
                    "cannot drop {}, left half-made by a migrator that stopped: {}",
                    l.name,
                    pg_message(&e)
                ))
            })?;
        if l.kind == DbKind::Scratch.as_str() && l.owner_role.starts_with(SCRATCH_PREFIX) {
            let _ = admin
                .batch_execute(&format!(
                    "DROP ROLE IF EXISTS {}",
                    quote_ident(&l.owner_role)
                ))
                .await;
        }
        let conn = self.conn().await?;
        conn.execute(
            "DELETE FROM databases WHERE name = $1 AND state = 'creating' AND lease = $2",
            &[&l.name, &l.lease],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    /// Record an existing database as `platform`'s (adoption, upgrade
    /// import) and announce it. Refused when another platform owns it.
    pub async fn record_existing(&self, db: &NewDatabase) -> Result<bool, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let owner: Option<String> = tx
            .query_opt(
                "SELECT platform FROM databases WHERE name = $1 FOR UPDATE",
                &[&db.name],
            )
            .await
            .map_err(pg)?
            .map(|r| r.get(0));
        match owner {
            Some(p) if p == db.platform => return Ok(false),
            Some(_) => return Err(MigratorError::DatabaseAlreadyExists(db.name.clone())),
            None => {}
        }
        tx.execute(
            "INSERT INTO databases (name, platform, kind, tenant_id, schema_name, database_id, schema_version,
                                    owner_role, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ready')",
            &[
                &db.name,
                &db.platform,
                &db.kind.as_str(),
                &db.tenant_id,
                &db.schema_name,
                &db.database_id,
                &db.schema_version,
                &db.owner_role,
            ],
        )
        .await
        .map_err(pg)?;
        tx.query("SELECT announce($1)", &[&db.name])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    /// Forget a database that was dropped (a template replaced), announcing it.
    pub async fn forget(&self, name: &str) -> Result<(), MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        tx.query("SELECT announce($1)", &[&name])
            .await
            .map_err(pg)?;
        tx.execute("DELETE FROM databases WHERE name = $1", &[&name])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    /// Tell routers to drop what they cached about these databases.
    pub async fn announce(&self, databases: &[String]) -> Result<i64, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let mut g = 0;
        for d in databases {
            g = tx
                .query_one("SELECT announce($1)", &[d])
                .await
                .map_err(pg)?
                .get(0);
        }
        tx.commit().await.map_err(pg)?;
        Ok(g)
    }

    // -------------------------------------------------------------- deployments

    pub async fn begin_deployment(&self, d: DeploymentStart) -> Result<Deployment, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let lease: i32 = tx
            .query_one("SELECT nextval('leases')::integer", &[])
            .await
            .map_err(pg)?
            .get(0);
        let id: i64 = tx
            .query_one(
                "INSERT INTO deployments (database, platform, operation, dry_run, force, status, lease,
                                          archive_sha256, schema_version, requested_by, peer, request_id)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9, $10, $11) RETURNING id",
                &[
                    &d.database,
                    &d.platform,
                    &d.operation,
                    &d.dry_run,
                    &d.force,
                    &lease,
                    &d.archive_sha256,
                    &d.schema_version,
                    &d.caller.token_name,
                    &d.caller.peer,
                    &d.caller.request_id,
                ],
            )
            .await
            .map_err(pg)?
            .get(0);
        tx.query("SELECT pg_advisory_lock($1, $2)", &[&LEASE_CLASS, &lease])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Deployment {
            lease: Lease {
                conn: Some(conn),
                lease,
            },
            id,
            database: d.database,
        })
    }

    /// Record how a deployment ended; a deployment that changed the
    /// database also announces it, in the same transaction.
    pub async fn finish_deployment(
        &self,
        d: Deployment,
        outcome: &Outcome,
    ) -> Result<(), MigratorError> {
        {
            let conn = d.lease.conn();
            conn.batch_execute("BEGIN").await.map_err(pg)?;
            let r = async {
                conn.execute(
                    "UPDATE deployments SET status = $2, finished_at = now(), counts = $3, error = $4, lease = NULL
                     WHERE id = $1",
                    &[&d.id, &outcome.status, &outcome.counts, &outcome.error],
                )
                .await?;
                if outcome.changed {
                    conn.execute(
                        "UPDATE databases SET last_deployed_at = now(),
                                schema_version = coalesce($2, schema_version) WHERE name = $1",
                        &[&d.database, &outcome.schema_version],
                    )
                    .await?;
                    conn.query_one("SELECT announce($1)", &[&d.database])
                        .await?;
                } else if outcome.schema_version.is_some() {
                    conn.execute(
                        "UPDATE databases SET schema_version = $2 WHERE name = $1",
                        &[&d.database, &outcome.schema_version],
                    )
                    .await?;
                }
                conn.batch_execute("COMMIT").await
            }
            .await;
            if let Err(e) = r {
                let _ = conn.batch_execute("ROLLBACK").await;
                return Err(pg(e));
            }
        }
        d.lease.release().await;
        Ok(())
    }

    /// Recent deployments, newest first.
    pub async fn deployments(
        &self,
        platform: Option<&str>,
        database: Option<&str>,
        limit: i64,
    ) -> Result<Vec<stonescriptdb_shared::wire::DeploymentRecord>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT id, database, platform, operation, status, dry_run, force, {}, {},
                            archive_sha256, requested_by, peer, counts, error
                     FROM deployments
                     WHERE ($1::text IS NULL OR platform = $1) AND ($2::text IS NULL OR database = $2)
                     ORDER BY id DESC LIMIT $3",
                    ts("started_at"),
                    ts("finished_at")
                ),
                &[&platform, &database, &limit],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| stonescriptdb_shared::wire::DeploymentRecord {
                id: r.get(0),
                database: r.get(1),
                platform: r.get(2),
                operation: r.get(3),
                status: r.get(4),
                dry_run: r.get(5),
                force: r.get(6),
                started_at: r.get(7),
                finished_at: r.get(8),
                archive_sha256: r.get(9),
                requested_by: r.get(10),
                peer: r.get(11),
                counts: r.get(12),
                error: r.get(13),
            })
            .collect())
    }

    /// Resolve what dead migrators left: half-made databases are dropped and
    /// forgotten; deployments that never recorded their outcome are marked
    /// `interrupted` and announced (their database may have committed).
    /// Live migrators' leases are never touched. Returns what was resolved.
    pub async fn resolve_leftovers(
        &self,
        admin: &tokio_postgres::Client,
    ) -> Result<Vec<String>, MigratorError> {
        let mut resolved = Vec::new();
        let conn = self.conn().await?;
        let creating = conn
            .query(
                "SELECT name, coalesce(lease, 0), kind, owner_role FROM databases WHERE state = 'creating'",
                &[],
            )
            .await
            .map_err(pg)?;
        for r in creating {
            let l = Leftover {
                name: r.get(0),
                lease: r.get(1),
                kind: r.get(2),
                owner_role: r.get(3),
            };
            if self.claim(&conn, l.lease).await? {
                let out = self.resolve_creation(admin, &l).await;
                self.unclaim(&conn, l.lease).await;
                out?;
                resolved.push(format!(
                    "dropped {}, left half-made by a migrator that stopped",
                    l.name
                ));
            }
        }
        let running = conn
            .query(
                "SELECT id, database, coalesce(lease, 0) FROM deployments WHERE status = 'running'",
                &[],
            )
            .await
            .map_err(pg)?;
        for r in running {
            let (id, database, lease): (i64, String, i32) = (r.get(0), r.get(1), r.get(2));
            if self.claim(&conn, lease).await? {
                let out = async {
                    conn.batch_execute("BEGIN").await?;
                    conn.execute(
                        "UPDATE deployments SET status = 'interrupted', finished_at = now(), lease = NULL,
                                error = $2 WHERE id = $1 AND status = 'running'",
                        &[
                            &id,
                            &serde_json::json!({"message": "the migrator stopped before it recorded the outcome; the database has either all of this deployment or none of it"}),
                        ],
                    )
                    .await?;
                    conn.query_one("SELECT announce($1)", &[&database]).await?;
                    conn.batch_execute("COMMIT").await
                }
                .await;
                if out.is_err() {
                    let _ = conn.batch_execute("ROLLBACK").await;
                }
                self.unclaim(&conn, lease).await;
                out.map_err(pg)?;
                resolved.push(format!(
                    "deployment {id} of {database} was interrupted; announced it to routers"
                ));
            }
        }
        Ok(resolved)
    }

    async fn claim(&self, conn: &Object, lease: i32) -> Result<bool, MigratorError> {
        Ok(conn
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LEASE_CLASS, &lease],
            )
            .await
            .map_err(pg)?
            .get(0))
    }

    async fn unclaim(&self, conn: &Object, lease: i32) {
        let _ = conn
            .query_one("SELECT pg_advisory_unlock($1, $2)", &[&LEASE_CLASS, &lease])
            .await;
    }

    // ------------------------------------------------------------------ schemas

    fn version_from(r: &tokio_postgres::Row) -> SchemaVersion {
        SchemaVersion {
            version: r.get(0),
            checksum: r.get(1),
            archive_sha256: r.get(2),
            uploaded_at: r.get(3),
            has_tables: r.get(4),
            has_functions: r.get(5),
            has_migrations: r.get(6),
            has_seeders: r.get(7),
        }
    }

    fn version_columns() -> String {
        format!(
            "version, checksum, archive_sha256, {}, has_tables, has_functions, has_migrations, has_seeders",
            ts("uploaded_at")
        )
    }

    /// Store a new version of a v2 schema unless it equals the latest;
    /// returns the version now latest.
    pub async fn add_schema_version(
        &self,
        platform: &str,
        schema_name: &str,
        archive: &[u8],
        v: &SchemaVersion,
    ) -> Result<SchemaVersion, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        // serialize uploads of one schema
        tx.query(
            "SELECT 1 FROM platforms WHERE name = $1 FOR UPDATE",
            &[&platform],
        )
        .await
        .map_err(pg)?;
        let latest = tx
            .query_opt(
                &format!(
                    "SELECT {} FROM schema_versions WHERE platform = $1 AND schema_name = $2
                     ORDER BY version DESC LIMIT 1",
                    Self::version_columns()
                ),
                &[&platform, &schema_name],
            )
            .await
            .map_err(pg)?
            .as_ref()
            .map(Self::version_from);
        if let Some(l) = &latest {
            if l.checksum == v.checksum {
                return Ok(l.clone());
            }
        }
        let next = latest.map(|l| l.version + 1).unwrap_or(1);
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO schema_versions (platform, schema_name, version, checksum, archive, archive_sha256,
                                                  has_tables, has_functions, has_migrations, has_seeders)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {}",
                    Self::version_columns()
                ),
                &[
                    &platform,
                    &schema_name,
                    &next,
                    &v.checksum,
                    &archive,
                    &v.archive_sha256,
                    &v.has_tables,
                    &v.has_functions,
                    &v.has_migrations,
                    &v.has_seeders,
                ],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Self::version_from(&row))
    }

    /// The latest version of each stored schema of `platform`, by name.
    pub async fn schemas(
        &self,
        platform: &str,
    ) -> Result<Vec<(String, SchemaVersion)>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT DISTINCT ON (schema_name) {}, schema_name FROM schema_versions
                     WHERE platform = $1 ORDER BY schema_name, version DESC",
                    Self::version_columns()
                ),
                &[&platform],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(8), Self::version_from(r)))
            .collect())
    }

    /// The latest version of a stored schema, with its archive.
    pub async fn latest_schema(
        &self,
        platform: &str,
        schema_name: &str,
    ) -> Result<Option<(SchemaVersion, Vec<u8>)>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT {}, archive FROM schema_versions WHERE platform = $1 AND schema_name = $2
                     ORDER BY version DESC LIMIT 1",
                    Self::version_columns()
                ),
                &[&platform, &schema_name],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| (Self::version_from(&r), r.get(8))))
    }

    /// The template database of a schema version and its deployment
    /// report, when one was built.
    pub async fn template(
        &self,
        platform: &str,
        schema_name: &str,
        version: i32,
    ) -> Result<Option<(String, Value)>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT template, template_report FROM schema_versions
                 WHERE platform = $1 AND schema_name = $2 AND version = $3
                   AND template IS NOT NULL AND template_report IS NOT NULL",
                &[&platform, &schema_name, &version],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn set_template(
        &self,
        platform: &str,
        schema_name: &str,
        version: i32,
        template: Option<(&str, &Value)>,
    ) -> Result<(), MigratorError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE schema_versions SET template = $4, template_report = $5
             WHERE platform = $1 AND schema_name = $2 AND version = $3",
            &[
                &platform,
                &schema_name,
                &version,
                &template.map(|t| t.0),
                &template.map(|t| t.1),
            ],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    /// Keep the archive `/register` or `/migrate` deployed as the
    /// platform's schema for `/admin/create-tenant`.
    pub async fn save_v1_schema(
        &self,
        platform: &str,
        archive: &[u8],
        sha256: &str,
    ) -> Result<(), MigratorError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE platforms SET v1_schema = $2, v1_schema_sha256 = $3, v1_schema_at = now() WHERE name = $1",
            &[&platform, &archive, &sha256],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    pub async fn v1_schema(&self, platform: &str) -> Result<Option<Vec<u8>>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT v1_schema FROM platforms WHERE name = $1 AND v1_schema IS NOT NULL",
                &[&platform],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every database name the catalog records.
    pub async fn recorded_names(&self) -> Result<BTreeSet<String>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query("SELECT name FROM databases", &[])
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Was the older installation in `data_dir` imported already?
    pub async fn imported(&self, data_dir: &str) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt(
                "SELECT 1 FROM legacy_imports WHERE data_dir = $1",
                &[&data_dir],
            )
            .await
            .map_err(pg)?
            .is_some())
    }

    pub async fn mark_imported(&self, data_dir: &str, report: &Value) -> Result<(), MigratorError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO legacy_imports (data_dir, report) VALUES ($1, $2) ON CONFLICT (data_dir) DO NOTHING",
            &[&data_dir, report],
        )
        .await
        .map_err(pg)?;
        Ok(())
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
