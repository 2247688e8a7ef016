//! Leftovers: what a migrator that stopped mid-way left in the catalog,
//! resolved at start. A row guarded by a lease nobody holds is a dead
//! migrator's: a creation is undone (its half-made database dropped, the
//! row removed); a deployment that never recorded its outcome is marked
//! `interrupted` and announced, since its database may have committed; a
//! `/v2/migrate-all` job still queued or running is marked `interrupted`.
//! A drop (its `dropping` row and its `running` record) is left to
//! `lifecycle::resume`, which finishes it, backup included.
//! A live migrator's lease is never taken, so its work is never touched.

use stonescriptdb_shared::wire::Operation;

use super::databases::Leftover;
use super::generations::announce_in;
use super::handle::{pg, Catalog};
use super::leases;
use crate::error::MigratorError;

/// The error recorded on a deployment whose migrator stopped before it
/// recorded the outcome.
const INTERRUPTED: &str = "the migrator stopped before it recorded the outcome; the database has either all of this deployment or none of it";

impl Catalog {
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
            if leases::claim(&**conn, l.lease).await.map_err(pg)? {
                let out = self.resolve_creation(admin, &l).await;
                let _ = leases::unclaim(&**conn, l.lease).await;
                out?;
                resolved.push(format!(
                    "dropped {}, left half-made by a migrator that stopped",
                    l.name
                ));
            }
        }
        let running = conn
            .query(
                "SELECT id, database, coalesce(lease, 0) FROM deployments
                 WHERE status = 'running' AND operation <> $1",
                &[&Operation::Drop.as_str()],
            )
            .await
            .map_err(pg)?;
        for r in running {
            let (id, database, lease): (i64, String, i32) = (r.get(0), r.get(1), r.get(2));
            if leases::claim(&**conn, lease).await.map_err(pg)? {
                let out = async {
                    conn.batch_execute("BEGIN").await?;
                    conn.execute(
                        "UPDATE deployments SET status = 'interrupted', finished_at = now(), lease = NULL,
                                error = $2 WHERE id = $1 AND status = 'running'",
                        &[&id, &serde_json::json!({ "message": INTERRUPTED })],
                    )
                    .await?;
                    announce_in(&**conn, &database).await?;
                    conn.batch_execute("COMMIT").await
                }
                .await;
                if out.is_err() {
                    let _ = conn.batch_execute("ROLLBACK").await;
                }
                let _ = leases::unclaim(&**conn, lease).await;
                out.map_err(pg)?;
                resolved.push(format!(
                    "deployment {id} of {database} was interrupted; announced it to routers"
                ));
            }
        }
        for id in self.interrupt_dead_jobs().await? {
            resolved.push(format!(
                "job {id} was interrupted: its migrator stopped before it ended"
            ));
        }
        Ok(resolved)
    }
}
