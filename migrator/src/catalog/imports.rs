//! Imports: the record of older installations whose `DATA_DIR` files
//! (credentials, the v2 registry, the last v1 schemas) were imported into
//! the catalog, so each is imported once.

use serde_json::Value;

use super::handle::{pg, Catalog};
use crate::error::MigratorError;

impl Catalog {
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

    /// Record that the installation in `data_dir` was imported, with its report.
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
