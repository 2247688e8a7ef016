//! What the listings show: a platform's databases with their newest
//! deployment record (`GET /admin/databases`' `items`), and every platform
//! with the API it uses (`GET /platforms`).

use stonescriptdb_shared::catalog::{DbKind, DbState};
use stonescriptdb_shared::wire::{DatabaseItem, LastDeployment, PlatformKind, PlatformSummary};

use super::handle::{pg, ts, word, Catalog};
use crate::error::MigratorError;

impl Catalog {
    /// Every database of `platform` that `/call` could reach (v1, v2,
    /// adopted), whatever its state, by name, with its newest deployment
    /// record. Sizes are not the catalog's to say.
    pub async fn database_items(&self, platform: &str) -> Result<Vec<DatabaseItem>, MigratorError> {
        let conn = self.conn().await?;
        let callable: Vec<&str> = DbKind::ALL
            .iter()
            .filter(|k| k.callable())
            .map(|k| k.as_str())
            .collect();
        let rows = conn
            .query(
                &format!(
                    "SELECT d.name, d.kind, d.tenant_id, d.schema_name, d.database_id, d.schema_version,
                            d.pinned, d.state, {}, {}, l.operation, l.status, l.dry_run
                     FROM databases d
                     LEFT JOIN LATERAL (SELECT x.started_at, x.operation, x.status, x.dry_run
                                        FROM deployments x WHERE x.database = d.name
                                        ORDER BY x.id DESC LIMIT 1) l ON true
                     WHERE d.platform = $1 AND d.kind = ANY($2)
                     ORDER BY d.name",
                    ts("d.created_at"),
                    ts("l.started_at")
                ),
                &[&platform, &callable],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                let last = match r.get::<_, Option<String>>(9) {
                    None => None,
                    Some(at) => Some(LastDeployment {
                        at,
                        operation: word(r, 10, "deployments.operation")?,
                        status: word(r, 11, "deployments.status")?,
                        dry_run: r.get(12),
                    }),
                };
                Ok(DatabaseItem {
                    name: r.get(0),
                    kind: word::<DbKind>(r, 1, "databases.kind")?,
                    tenant_id: r.get(2),
                    schema_name: r.get(3),
                    database_id: r.get(4),
                    schema_version: r.get(5),
                    pinned: r.get(6),
                    state: word::<DbState>(r, 7, "databases.state")?,
                    created_at: r.get(8),
                    last_deployment: last,
                    size_bytes: None,
                })
            })
            .collect()
    }

    /// Every platform: the API it uses, its stored schemas, its ready
    /// databases (templates and scratch databases not counted).
    pub async fn platforms(&self) -> Result<Vec<PlatformSummary>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT p.name, p.v2_registered_at IS NOT NULL,
                        EXISTS (SELECT 1 FROM databases d WHERE d.platform = p.name AND d.kind = 'v1'),
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
            .map(|r| PlatformSummary {
                name: r.get(0),
                kind: PlatformKind::of(r.get(1), r.get(2)),
                schemas: r.get::<_, i64>(3).max(0) as usize,
                databases: r.get::<_, i64>(4).max(0) as usize,
            })
            .collect())
    }
}
