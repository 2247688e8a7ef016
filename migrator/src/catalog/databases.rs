//! Databases: lookups, creation under a lease (begin, finish, abort, a
//! dead migrator's leftover resolved), adoption, forgetting, and the
//! announcements routers listen to.

use super::*;

impl Catalog {
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
}
