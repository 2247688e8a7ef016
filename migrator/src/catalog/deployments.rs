//! Deployments: recorded under a lease with who asked and their outcome;
//! the history, and at start what a stopped migrator left running.

use super::*;

/// A deployments column that holds one of an enum's words, read back.
fn word<T>(r: &tokio_postgres::Row, i: usize, column: &str) -> Result<T, MigratorError>
where
    T: std::str::FromStr<Err = stonescriptdb_shared::words::UnknownWord>,
{
    r.get::<_, &str>(i)
        .parse()
        .map_err(|e| MigratorError::Internal(format!("the catalog's deployments.{column}: {e}")))
}

impl Catalog {
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
                    &d.operation.as_str(),
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
                    &[&d.id, &outcome.status.as_str(), &outcome.counts, &outcome.error],
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
        rows.iter()
            .map(|r| {
                Ok(stonescriptdb_shared::wire::DeploymentRecord {
                    id: r.get(0),
                    database: r.get(1),
                    platform: r.get(2),
                    operation: word(r, 3, "operation")?,
                    status: word(r, 4, "status")?,
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
            })
            .collect()
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
}
