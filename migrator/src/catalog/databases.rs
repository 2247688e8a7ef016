//! Databases and their creation: lookups, creation under a lease (begin,
//! finish, abort; a dead migrator's half-made database resolved when its
//! name is created again), recording an existing database (adoption,
//! upgrade import), forgetting one, and the scratch databases of dry runs.
//! A creation is crash-consistent: the row is recorded `creating` under a
//! lease, the database is created and deployed, then the row turns `ready`
//! and is announced.

use std::collections::BTreeSet;

use deadpool_postgres::Object;
use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::names::quote_ident;
use tokio_postgres::error::SqlState;

use super::generations::announce_in;
use super::handle::{pg, ts, unavailable, Catalog};
use super::leases::{self, Lease};
use super::platforms::RESERVED_SQL;
use crate::error::{pg_message, MigratorError};

/// Prefix of scratch databases and throwaway roles of dry runs: no
/// platform's naming can produce a name starting with `_`.
pub const SCRATCH_PREFIX: &str = "_sdg_dry_";

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
    /// Stays at `schema_version` through `/v2/migrate` without `version`.
    pub pinned: bool,
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
    /// Created at an explicitly asked version: pinned to it.
    pub pinned: bool,
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
            pinned: false,
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

/// A database being created: finish or abort it.
pub struct Creation {
    lease: Lease,
    pub name: String,
}

/// A creation a dead migrator left behind.
pub(super) struct Leftover {
    pub(super) name: String,
    pub(super) lease: i32,
    pub(super) kind: String,
    pub(super) owner_role: String,
}

impl Leftover {
    /// The role to drop with the half-made database: only a throwaway role
    /// of a dry run, never a platform's owner role (which owns the scratch
    /// databases of a recorded platform, and all its real ones).
    fn throwaway_role(&self) -> Option<&str> {
        (self.kind == DbKind::Scratch.as_str() && self.owner_role.starts_with(SCRATCH_PREFIX))
            .then_some(self.owner_role.as_str())
    }
}

/// A recorded `kind`; one this version does not know (a newer migrator's)
/// reads as adopted.
fn kind_from(kind: &str) -> DbKind {
    DbKind::parse(kind).unwrap_or(DbKind::Adopted)
}

/// A recorded `state`; anything but `ready` is not reachable, and a state
/// this version does not know reads as `creating` (left alone).
pub(super) fn state_from(state: &str) -> DbState {
    match state.parse() {
        Ok(s) => s,
        Err(_) => DbState::Creating,
    }
}

/// What recording an existing database as `platform`'s does, given the
/// row of that name (`None`: no row; `Some(None)`: a row of no platform,
/// a scratch database).
#[derive(Debug, PartialEq, Eq)]
enum Adoption {
    /// Recorded as `platform`'s already.
    Unchanged,
    Record,
    /// Another platform's (or no platform's).
    Refused,
}

fn adoption(recorded: Option<Option<&str>>, platform: &str) -> Adoption {
    match recorded {
        None => Adoption::Record,
        Some(Some(p)) if p == platform => Adoption::Unchanged,
        Some(_) => Adoption::Refused,
    }
}

fn database_from(r: &tokio_postgres::Row) -> Database {
    Database {
        name: r.get(0),
        platform: r.get::<_, Option<String>>(1).unwrap_or_default(),
        kind: kind_from(r.get(2)),
        state: state_from(r.get(3)),
        tenant_id: r.get(4),
        schema_name: r.get(5),
        database_id: r.get(6),
        schema_version: r.get(7),
        created_at: r.get(8),
        pinned: r.get(9),
    }
}

/// The select list [`database_from`] reads.
fn database_columns() -> String {
    format!(
        "name, platform, kind, state, tenant_id, schema_name, database_id, schema_version, {}, pinned",
        ts("created_at")
    )
}

impl Catalog {
    pub async fn database(&self, name: &str) -> Result<Option<Database>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT {} FROM databases WHERE name = $1",
                    database_columns()
                ),
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(database_from))
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
                    database_columns()
                ),
                &[&platform, &kinds, &schema_name],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(database_from).collect())
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
            // ready, or being dropped (a drop whose migrator stopped is
            // finished by the next DELETE of it, or the next migrator)
            if state_from(r.get(0)) != DbState::Creating {
                return Err(CreateRefused::Recorded);
            }
            let lease = r.get::<_, Option<i32>>(1).unwrap_or(0);
            // free: its migrator stopped; held: a live creation
            let free = leases::claim(&*tx, lease).await.map_err(failed)?;
            drop(tx);
            if !free {
                return Err(CreateRefused::Recorded);
            }
            if !leases::unclaim(&**conn, lease).await.unwrap_or(false) {
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
        // A platform being offboarded gets no new database; FOR SHARE
        // waits for an offboarding marking it right now.
        if !db.platform.is_empty() {
            let leaving = tx
                .query_opt(
                    "SELECT 1 FROM platforms WHERE name = $1 AND offboarding_since IS NOT NULL FOR SHARE",
                    &[&db.platform],
                )
                .await
                .map_err(failed)?;
            if leaving.is_some() {
                return Err(CreateRefused::Failed(MigratorError::PlatformNotFound(
                    format!("platform {} is being offboarded", db.platform),
                )));
            }
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
        let lease = leases::next(&*tx).await.map_err(failed)?;
        let inserted = tx
            .execute(
                "INSERT INTO databases (name, platform, kind, tenant_id, schema_name, database_id, schema_version,
                                        owner_role, state, lease, pinned)
                 VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $8, 'creating', $9, $10)",
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
                    &db.pinned,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            // created concurrently under the same name: look again
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(Err(None)),
            Err(e) => return Err(failed(e)),
        }
        leases::take(&*tx, lease).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(Ok(Creation {
            lease: Lease::held(conn, lease),
            name: db.name.clone(),
        }))
    }

    /// The database exists and is deployed: make it reachable and announce it.
    pub async fn finish_creation(&self, c: Creation) -> Result<i64, MigratorError> {
        let name = c.name;
        c.lease
            .finish(move |conn, lease| {
                Box::pin(async move {
                    conn.execute(
                        "UPDATE databases SET state = 'ready', lease = NULL, created_at = now(), last_deployed_at = now()
                         WHERE name = $1 AND lease = $2",
                        &[&name, &lease],
                    )
                    .await?;
                    announce_in(conn, &name).await
                })
            })
            .await
    }

    /// The creation failed and its database is gone: forget it.
    pub async fn abort_creation(&self, c: Creation) -> Result<(), MigratorError> {
        c.lease
            .conn()
            .execute(
                "DELETE FROM databases WHERE name = $1 AND lease = $2 AND state = 'creating'",
                &[&c.name, &c.lease.number],
            )
            .await
            .map_err(pg)?;
        c.lease.release().await;
        Ok(())
    }

    /// Drop a dead migrator's half-made database (if it got that far) and
    /// forget it. Only called while holding its lease or having seen it free.
    pub(super) async fn resolve_creation(
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
        if let Some(role) = l.throwaway_role() {
            let _ = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)))
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

    /// The creation of `name` a stopped migrator left, undone (its
    /// half-made database dropped, the row removed): `true` when no
    /// creation of `name` is left, `false` while a live migrator creates it.
    pub async fn resolve_dead_creation(
        &self,
        admin: &tokio_postgres::Client,
        name: &str,
    ) -> Result<bool, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT coalesce(lease, 0), kind, owner_role FROM databases WHERE name = $1 AND state = 'creating'",
                &[&name],
            )
            .await
            .map_err(pg)?;
        let Some(r) = row else { return Ok(true) };
        let l = Leftover {
            name: name.to_owned(),
            lease: r.get(0),
            kind: r.get(1),
            owner_role: r.get(2),
        };
        if !leases::claim(&**conn, l.lease).await.map_err(pg)? {
            return Ok(false);
        }
        let out = self.resolve_creation(admin, &l).await;
        if !leases::unclaim(&**conn, l.lease).await.unwrap_or(false) {
            drop(Object::take(conn));
        }
        out.map(|()| true)
    }

    /// Record an existing database as `platform`'s (adoption, upgrade
    /// import) and announce it. Refused when another platform owns it.
    pub async fn record_existing(&self, db: &NewDatabase) -> Result<bool, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let recorded: Option<Option<String>> = tx
            .query_opt(
                "SELECT platform FROM databases WHERE name = $1 FOR UPDATE",
                &[&db.name],
            )
            .await
            .map_err(pg)?
            .map(|r| r.get(0));
        match adoption(recorded.as_ref().map(Option::as_deref), &db.platform) {
            Adoption::Unchanged => return Ok(false),
            Adoption::Refused => return Err(MigratorError::DatabaseAlreadyExists(db.name.clone())),
            Adoption::Record => {}
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
        announce_in(&*tx, &db.name).await.map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    /// Forget a database that was dropped (a template replaced), announcing it.
    pub async fn forget(&self, name: &str) -> Result<(), MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        announce_in(&*tx, name).await.map_err(pg)?;
        tx.execute("DELETE FROM databases WHERE name = $1", &[&name])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    /// Every database the catalog records as `platform`'s, of any kind and
    /// in any state (what offboarding drops), by name.
    pub async fn all_databases_of(&self, platform: &str) -> Result<Vec<Database>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {} FROM databases WHERE platform = $1 ORDER BY name",
                    database_columns()
                ),
                &[&platform],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(database_from).collect())
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use stonescriptdb_shared::names::{platform_roles, validate_platform};

    const KINDS: [DbKind; 5] = [
        DbKind::V1,
        DbKind::V2,
        DbKind::Template,
        DbKind::Scratch,
        DbKind::Adopted,
    ];

    /// The catalog's versions, newest first.
    const VERSIONS: [&str; 4] = [
        include_str!("v4.sql"),
        include_str!("v3.sql"),
        include_str!("v2.sql"),
        include_str!("v1.sql"),
    ];

    /// The quoted values of the `CHECK (column IN (…))` of `column` in the
    /// newest catalog version that defines it.
    fn checked(column: &str) -> Vec<String> {
        let start = format!("CHECK ({column} IN (");
        let (ddl, at) = VERSIONS
            .iter()
            .find_map(|ddl| ddl.rfind(&start).map(|at| (*ddl, at)))
            .unwrap_or_else(|| panic!("no CHECK on {column}"));
        let rest = &ddl[at + start.len()..];
        let list = &rest[..rest.find(')').unwrap_or(rest.len())];
        list.split(',')
            .map(|v| v.trim().trim_matches('\'').to_owned())
            .collect()
    }

    #[test]
    fn the_catalog_accepts_exactly_the_kinds_and_states_the_code_knows() {
        let kinds: Vec<String> = KINDS.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(checked("kind"), kinds);
        let states: Vec<String> = DbState::ALL.iter().map(|s| s.as_str().to_owned()).collect();
        assert_eq!(checked("state"), states);
        assert!(states.contains(&"dropping".to_owned()));
    }

    #[test]
    fn recorded_kinds_read_back_as_themselves() {
        for k in KINDS {
            assert_eq!(kind_from(k.as_str()), k);
        }
    }

    #[test]
    fn a_kind_of_a_newer_migrator_reads_as_adopted() {
        assert_eq!(kind_from("sharded"), DbKind::Adopted);
    }

    #[test]
    fn only_a_ready_row_is_ready() {
        assert_eq!(state_from("ready"), DbState::Ready);
        assert_eq!(state_from("creating"), DbState::Creating);
        assert_eq!(state_from("dropping"), DbState::Dropping);
        assert_eq!(state_from("Ready"), DbState::Creating);
        assert_eq!(state_from(""), DbState::Creating);
        assert_eq!(state_from("moving"), DbState::Creating);
    }

    fn leftover(kind: DbKind, owner_role: &str) -> Leftover {
        Leftover {
            name: "x".into(),
            lease: 7,
            kind: kind.as_str().into(),
            owner_role: owner_role.into(),
        }
    }

    #[test]
    fn a_dry_runs_throwaway_role_goes_with_its_scratch_database() {
        let role = format!("{SCRATCH_PREFIX}0123456789abcdef");
        assert_eq!(
            leftover(DbKind::Scratch, &role).throwaway_role(),
            Some(role.as_str())
        );
    }

    #[test]
    fn a_platforms_owner_role_is_never_dropped_with_a_leftover() {
        let (owner, _) = platform_roles("shop").unwrap_or_default();
        assert!(!owner.is_empty());
        // a recorded platform's scratch database is owned by its owner role
        assert_eq!(leftover(DbKind::Scratch, &owner).throwaway_role(), None);
        for kind in [DbKind::V1, DbKind::V2, DbKind::Template, DbKind::Adopted] {
            assert_eq!(leftover(kind, &owner).throwaway_role(), None);
            // only scratch databases have throwaway owners
            let odd = format!("{SCRATCH_PREFIX}0123");
            assert_eq!(leftover(kind, &odd).throwaway_role(), None);
        }
    }

    #[test]
    fn no_platform_or_role_name_starts_like_a_scratch_name() {
        assert!(validate_platform(&format!("{SCRATCH_PREFIX}shop")).is_err());
        let (owner, app) = platform_roles("sdg_dry_shop").unwrap_or_default();
        assert!(!owner.is_empty());
        assert!(!owner.starts_with(SCRATCH_PREFIX) && !app.starts_with(SCRATCH_PREFIX));
    }

    #[test]
    fn an_unrecorded_database_is_recorded() {
        assert_eq!(adoption(None, "shop"), Adoption::Record);
    }

    #[test]
    fn a_database_recorded_as_the_platforms_own_is_unchanged() {
        assert_eq!(adoption(Some(Some("shop")), "shop"), Adoption::Unchanged);
    }

    #[test]
    fn another_platforms_database_is_refused() {
        assert_eq!(
            adoption(Some(Some("shop_admin")), "shop"),
            Adoption::Refused
        );
        assert_eq!(
            adoption(Some(Some("shop")), "shop_admin"),
            Adoption::Refused
        );
        // a scratch database of a platform not recorded yet
        assert_eq!(adoption(Some(None), "shop"), Adoption::Refused);
        assert_eq!(adoption(Some(None), ""), Adoption::Refused);
    }
}
