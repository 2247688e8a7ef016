//! Deployments: each one recorded `running` under a lease with who asked
//! and what, and finished with its outcome; one that changed its database
//! announces it in the transaction recording the outcome. Also the
//! history `/admin/deployments` reads.

use serde_json::Value;
use stonescriptdb_shared::wire::{DeployStatus, DeploymentRecord, Operation, RecordStatus};
use tokio_postgres::GenericClient;

use super::generations::announce_in;
use super::handle::{pg, ts, word, Catalog};
use super::leases::{self, Lease};
use crate::error::MigratorError;

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
    /// v2: whether the database is now pinned to that version (None: as
    /// it was). Recorded with `schema_version`, in the same transaction.
    pub pinned: Option<bool>,
}

/// What the end of a deployment does to its database's row.
#[derive(Debug, PartialEq, Eq)]
enum OnDatabase {
    /// It changed: note when, take the schema version if one is given (or
    /// keep the recorded one), and announce it.
    Changed {
        schema_version: Option<i32>,
        pinned: Option<bool>,
    },
    /// Unchanged, but now known to be at this schema version (and pinned
    /// to it or not, when given).
    AtVersion(i32, Option<bool>),
    Untouched,
}

fn on_database(o: &Outcome) -> OnDatabase {
    match (o.changed, o.schema_version) {
        (true, schema_version) => OnDatabase::Changed {
            schema_version,
            pinned: o.pinned,
        },
        (false, Some(v)) => OnDatabase::AtVersion(v, o.pinned),
        (false, None) => OnDatabase::Untouched,
    }
}

/// Record a drop of `database` (of `platform`) in the history, `running`
/// under `lease` (the lease of its `dropping` row), inside the transaction
/// of `c`; `counts` says whether a backup was asked for. Returns its id.
pub(super) async fn record_drop_in(
    c: &impl GenericClient,
    database: &str,
    platform: &str,
    lease: i32,
    caller: &Caller,
    backup: bool,
) -> Result<i64, tokio_postgres::Error> {
    Ok(c.query_one(
        "INSERT INTO deployments (database, platform, operation, dry_run, force, status, lease,
                                  requested_by, peer, request_id, counts)
         VALUES ($1, $2, $3, false, false, 'running', $4, $5, $6, $7, $8) RETURNING id",
        &[
            &database,
            &platform,
            &Operation::Drop.as_str(),
            &lease,
            &caller.token_name,
            &caller.peer,
            &caller.request_id,
            &serde_json::json!({ "backup": backup }),
        ],
    )
    .await?
    .get(0))
}

/// The running drop record guarded by `lease`: its id and whether a
/// backup was asked for.
pub(super) async fn drop_record_in(
    c: &impl GenericClient,
    database: &str,
    lease: i32,
) -> Result<Option<(i64, bool)>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT id, coalesce((counts->>'backup')::boolean, false) FROM deployments
             WHERE database = $1 AND operation = $2 AND status = 'running' AND lease = $3
             ORDER BY id DESC LIMIT 1",
            &[&database, &Operation::Drop.as_str(), &lease],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// End the drop record `id`: `dropped` with the backup file written (if
/// any), or `failed` with `error` (nothing was dropped).
pub(super) async fn end_drop_in(
    c: &impl GenericClient,
    id: i64,
    outcome: Result<Option<&str>, &Value>,
) -> Result<(), tokio_postgres::Error> {
    let (status, counts, error) = match outcome {
        Ok(backup) => (
            RecordStatus::Dropped,
            Some(serde_json::json!({ "backup": backup })),
            None,
        ),
        Err(e) => (RecordStatus::Ended(DeployStatus::Failed), None, Some(e)),
    };
    c.execute(
        "UPDATE deployments SET status = $2, finished_at = now(), lease = NULL,
                counts = coalesce($3, counts), error = $4 WHERE id = $1",
        &[&id, &status.as_str(), &counts, &error],
    )
    .await?;
    Ok(())
}

impl Catalog {
    pub async fn begin_deployment(&self, d: DeploymentStart) -> Result<Deployment, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        // the history keeps HISTORY_RETENTION_DAYS (an index range that is
        // empty but for the first deployment of each day); beyond a million
        // days (2,700 years) is for ever, and stays inside timestamptz
        let days = self.history_days.min(1_000_000) as i32;
        tx.execute(
            "DELETE FROM deployments WHERE started_at < now() - make_interval(days => $1)",
            &[&days],
        )
        .await
        .map_err(pg)?;
        let lease = leases::next(&*tx).await.map_err(pg)?;
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
        leases::take(&*tx, lease).await.map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Deployment {
            lease: Lease::held(conn, lease),
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
        let (id, database) = (d.id, d.database);
        let (status, on) = (outcome.status.as_str(), on_database(outcome));
        let (counts, error) = (outcome.counts.clone(), outcome.error.clone());
        d.lease
            .finish(move |conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "UPDATE deployments SET status = $2, finished_at = now(), counts = $3, error = $4, lease = NULL
                         WHERE id = $1",
                        &[&id, &status, &counts, &error],
                    )
                    .await?;
                    match on {
                        OnDatabase::Changed {
                            schema_version,
                            pinned,
                        } => {
                            conn.execute(
                                "UPDATE databases SET last_deployed_at = now(),
                                        schema_version = coalesce($2, schema_version),
                                        pinned = coalesce($3, pinned) WHERE name = $1",
                                &[&database, &schema_version, &pinned],
                            )
                            .await?;
                            announce_in(conn, &database).await?;
                        }
                        OnDatabase::AtVersion(v, pinned) => {
                            conn.execute(
                                "UPDATE databases SET schema_version = $2, pinned = coalesce($3, pinned)
                                 WHERE name = $1",
                                &[&database, &v, &pinned],
                            )
                            .await?;
                        }
                        OnDatabase::Untouched => {}
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Recent deployments, newest first.
    pub async fn deployments(
        &self,
        platform: Option<&str>,
        database: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT id, database, platform, operation, status, dry_run, force, {}, {},
                            archive_sha256, requested_by, peer, counts, error, schema_version, request_id,
                            (extract(epoch FROM finished_at - started_at) * 1000)::int8
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
                Ok(DeploymentRecord {
                    id: r.get(0),
                    database: r.get(1),
                    platform: r.get(2),
                    operation: word(r, 3, "deployments.operation")?,
                    status: word(r, 4, "deployments.status")?,
                    dry_run: r.get(5),
                    force: r.get(6),
                    started_at: r.get(7),
                    finished_at: r.get(8),
                    archive_sha256: r.get(9),
                    requested_by: r.get(10),
                    peer: r.get(11),
                    counts: r.get(12),
                    error: r.get(13),
                    schema_version: r.get(14),
                    request_id: r.get(15),
                    duration_ms: r.get::<_, Option<i64>>(16).map(|ms| ms.max(0) as u64),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(changed: bool, schema_version: Option<i32>) -> Outcome {
        Outcome {
            status: if changed {
                DeployStatus::Updated
            } else {
                DeployStatus::Unchanged
            },
            counts: None,
            error: None,
            changed,
            schema_version,
            pinned: None,
        }
    }

    #[test]
    fn a_change_is_announced_with_the_version_it_brought() {
        assert_eq!(
            on_database(&outcome(true, Some(4))),
            OnDatabase::Changed {
                schema_version: Some(4),
                pinned: None
            }
        );
    }

    #[test]
    fn the_pin_is_recorded_with_the_version_changed_or_not() {
        let pinned = Outcome {
            pinned: Some(true),
            ..outcome(true, Some(2))
        };
        assert_eq!(
            on_database(&pinned),
            OnDatabase::Changed {
                schema_version: Some(2),
                pinned: Some(true)
            }
        );
        let unpinned = Outcome {
            pinned: Some(false),
            ..outcome(false, Some(3))
        };
        assert_eq!(
            on_database(&unpinned),
            OnDatabase::AtVersion(3, Some(false))
        );
    }

    #[test]
    fn a_v1_change_keeps_the_recorded_version() {
        assert_eq!(
            on_database(&outcome(true, None)),
            OnDatabase::Changed {
                schema_version: None,
                pinned: None
            }
        );
    }

    #[test]
    fn an_unchanged_database_takes_the_version_without_an_announcement() {
        assert_eq!(
            on_database(&outcome(false, Some(4))),
            OnDatabase::AtVersion(4, None)
        );
    }

    #[test]
    fn a_failed_or_dry_deployment_leaves_the_database_row_alone() {
        let failed = Outcome {
            status: DeployStatus::Failed,
            error: Some(serde_json::json!({"message": "syntax error"})),
            ..outcome(false, None)
        };
        assert_eq!(on_database(&failed), OnDatabase::Untouched);
    }
}
