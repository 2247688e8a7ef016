//! Drops: a database leaving the gateway, crash-consistent like a
//! creation. The row turns `dropping` under a lease (from then on no route
//! and no router reaches it), is announced so routers drop their pools at
//! once, and a `drop` record is written to the history, all in one
//! transaction; the caller backs the database up if asked and drops it;
//! then the row is removed, announced again and the record ended
//! `dropped`, again in one transaction. A `dropping` row whose lease is
//! free belongs to a migrator that stopped: whoever claims the lease
//! finishes the drop (the record says whether a backup was asked for). A
//! backup that fails puts the row back to `ready`: nothing was dropped.
//! Also what offboarding a platform asks of the catalog: whether one of
//! its `/v2/migrate-all` jobs still runs.

use serde_json::Value;
use stonescriptdb_shared::catalog::{DbKind, DbState};

use super::databases::{state_from, Database};
use super::deployments::{drop_record_in, end_drop_in, record_drop_in, Caller};
use super::generations::announce_in;
use super::handle::{pg, Catalog};
use super::jobs::interrupt_if_dead;
use super::leases::{self, Lease};
use crate::error::MigratorError;

/// A database being dropped: finish or cancel it.
pub struct Dropping {
    lease: Lease,
    record: i64,
    pub name: String,
    pub platform: String,
    pub kind: DbKind,
    /// A backup was asked for (by the request, or by the one a stopped
    /// migrator was serving).
    pub backup: bool,
}

/// What a drop may start from: only a ready row; anything else answers
/// like a database that is not there (`creating` rows have their own
/// answer, given before this is asked).
fn droppable(state: DbState) -> bool {
    state == DbState::Ready
}

impl Catalog {
    /// Mark `db` (a ready database) `dropping` under a lease, announce it
    /// and record the drop (`running`) with who asked, in one transaction.
    /// `DatabaseNotFound` if the row changed since it was read.
    pub async fn begin_drop(
        &self,
        db: &Database,
        caller: &Caller,
        backup: bool,
    ) -> Result<Dropping, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let row = tx
            .query_opt(
                "SELECT state FROM databases WHERE name = $1 AND platform = $2 FOR UPDATE",
                &[&db.name, &db.platform],
            )
            .await
            .map_err(pg)?;
        if !row.is_some_and(|r| droppable(state_from(r.get(0)))) {
            return Err(MigratorError::DatabaseNotFound(db.name.clone()));
        }
        let lease = leases::next(&*tx).await.map_err(pg)?;
        tx.execute(
            "UPDATE databases SET state = 'dropping', lease = $2 WHERE name = $1",
            &[&db.name, &lease],
        )
        .await
        .map_err(pg)?;
        announce_in(&*tx, &db.name).await.map_err(pg)?;
        let record = record_drop_in(&*tx, &db.name, &db.platform, lease, caller, backup)
            .await
            .map_err(pg)?;
        leases::take(&*tx, lease).await.map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Dropping {
            lease: Lease::held(conn, lease),
            record,
            name: db.name.clone(),
            platform: db.platform.clone(),
            kind: db.kind,
            backup,
        })
    }

    /// Names of the rows being dropped (by a live migrator or a stopped one).
    pub async fn dropping_names(&self) -> Result<Vec<String>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT name FROM databases WHERE state = 'dropping' ORDER BY name",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The drop of `name` a stopped migrator left, now this migrator's to
    /// finish; `None` when `name` is not being dropped or its migrator is
    /// alive. A drop that has no record (dropped from the history by hand)
    /// gets one, asked by `caller`, without a backup.
    pub async fn claim_drop(
        &self,
        name: &str,
        caller: &Caller,
    ) -> Result<Option<Dropping>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT platform, kind, coalesce(lease, 0) FROM databases
                 WHERE name = $1 AND state = 'dropping'",
                &[&name],
            )
            .await
            .map_err(pg)?;
        let Some(r) = row else { return Ok(None) };
        let (platform, kind, lease): (Option<String>, String, i32) = (r.get(0), r.get(1), r.get(2));
        if !leases::claim(&**conn, lease).await.map_err(pg)? {
            return Ok(None);
        }
        let lease = Lease::held(conn, lease);
        let platform = platform.unwrap_or_default();
        let c = lease.conn();
        let (record, backup) = match drop_record_in(c, name, lease.number).await.map_err(pg)? {
            Some(found) => found,
            None => (
                record_drop_in(c, name, &platform, lease.number, caller, false)
                    .await
                    .map_err(pg)?,
                false,
            ),
        };
        Ok(Some(Dropping {
            record,
            name: name.to_owned(),
            platform,
            kind: DbKind::parse(&kind).unwrap_or(DbKind::Adopted),
            backup,
            lease,
        }))
    }

    /// The database is gone: forget it, announce it, end the record
    /// `dropped` with the backup file written (if any).
    pub async fn finish_drop(
        &self,
        d: Dropping,
        backup: Option<&str>,
    ) -> Result<(), MigratorError> {
        let (name, record, backup) = (d.name, d.record, backup.map(str::to_owned));
        d.lease
            .finish(move |c, lease| {
                Box::pin(async move {
                    // announced first: `announce` writes the generation on the row
                    announce_in(c, &name).await?;
                    c.execute(
                        "DELETE FROM databases WHERE name = $1 AND state = 'dropping' AND lease = $2",
                        &[&name, &lease],
                    )
                    .await?;
                    end_drop_in(c, record, Ok(backup.as_deref())).await
                })
            })
            .await
    }

    /// Nothing was dropped (the backup failed): the row is `ready` again,
    /// announced, and the record ends `failed` with `error`.
    pub async fn cancel_drop(&self, d: Dropping, error: &Value) -> Result<(), MigratorError> {
        let (name, record, error) = (d.name, d.record, error.clone());
        d.lease
            .finish(move |c, lease| {
                Box::pin(async move {
                    c.execute(
                        "UPDATE databases SET state = 'ready', lease = NULL
                         WHERE name = $1 AND state = 'dropping' AND lease = $2",
                        &[&name, &lease],
                    )
                    .await?;
                    announce_in(c, &name).await?;
                    end_drop_in(c, record, Err(&error)).await
                })
            })
            .await
    }

    /// The id of a `/v2/migrate-all` job of `platform` still queued or
    /// running under a live migrator (a stopped one's is marked
    /// `interrupted` on the way).
    pub async fn live_job_of(&self, platform: &str) -> Result<Option<String>, MigratorError> {
        let conn = self.conn().await?;
        let open = conn
            .query(
                "SELECT id, coalesce(lease, 0) FROM jobs
                 WHERE platform = $1 AND status IN ('queued', 'running')",
                &[&platform],
            )
            .await
            .map_err(pg)?;
        for r in open {
            let (id, lease): (String, i32) = (r.get(0), r.get(1));
            if !interrupt_if_dead(&conn, &id, lease).await.map_err(pg)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ready_database_starts_a_drop() {
        assert!(droppable(DbState::Ready));
        assert!(!droppable(DbState::Creating));
        assert!(!droppable(DbState::Dropping));
    }
}
