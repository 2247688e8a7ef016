//! Stored v2 schema versions and their template databases, the v1
//! archive a platform shipped last, and the record of imported older
//! installations.

use super::*;

impl Catalog {
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

    /// The latest version of a stored schema (its archive is fetched
    /// apart, only when the parsed version is not kept already).
    pub async fn latest_schema(
        &self,
        platform: &str,
        schema_name: &str,
    ) -> Result<Option<SchemaVersion>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT {} FROM schema_versions WHERE platform = $1 AND schema_name = $2
                     ORDER BY version DESC LIMIT 1",
                    Self::version_columns()
                ),
                &[&platform, &schema_name],
            )
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(Self::version_from))
    }

    /// The archive of one stored version.
    pub async fn schema_archive(
        &self,
        platform: &str,
        schema_name: &str,
        version: i32,
    ) -> Result<Option<Vec<u8>>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT archive FROM schema_versions
                 WHERE platform = $1 AND schema_name = $2 AND version = $3",
                &[&platform, &schema_name, &version],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| r.get(0)))
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
