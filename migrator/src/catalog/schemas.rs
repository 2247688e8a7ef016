//! Schema versions and templates: the stored versions of each v2 schema
//! (a new version only when the upload differs from the latest), the
//! template database built from a version, and the v1 archives a platform
//! shipped last (the latest is `/admin/create-tenant`'s schema).

use serde_json::Value;

use super::handle::{pg, ts, Catalog};
use crate::error::MigratorError;

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

/// How many columns [`version_columns`] selects: what a query adds after
/// them starts at this index.
const VERSION_COLUMNS: usize = 8;

/// The select list [`version_from`] reads.
fn version_columns() -> String {
    format!(
        "version, checksum, archive_sha256, {}, has_tables, has_functions, has_migrations, has_seeders",
        ts("uploaded_at")
    )
}

/// The latest stored version of a schema (`$1` platform, `$2` schema name).
fn latest_version_sql() -> String {
    format!(
        "SELECT {} FROM schema_versions WHERE platform = $1 AND schema_name = $2
         ORDER BY version DESC LIMIT 1",
        version_columns()
    )
}

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

/// One stored version as `GET /platform/{p}/schemas/{name}/versions`
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: SchemaVersion,
    /// The archive's size in bytes.
    pub size: i64,
    /// Ready databases of the schema recorded at this version.
    pub databases: i64,
}

/// What storing an upload of checksum `checksum` does, given the latest
/// stored version of its schema.
#[derive(Debug, PartialEq, Eq)]
enum Upload<'a> {
    /// Equal to the latest: nothing stored, the latest stays.
    Same(&'a SchemaVersion),
    /// Stored as this version number.
    New(i32),
}

fn upload<'a>(latest: Option<&'a SchemaVersion>, checksum: &str) -> Upload<'a> {
    match latest {
        Some(l) if l.checksum == checksum => Upload::Same(l),
        Some(l) => Upload::New(l.version + 1),
        None => Upload::New(1),
    }
}

impl Catalog {
    /// Store a new version of a v2 schema unless it equals the latest;
    /// returns the version now latest, and whether it was stored now.
    pub async fn add_schema_version(
        &self,
        platform: &str,
        schema_name: &str,
        archive: &[u8],
        v: &SchemaVersion,
    ) -> Result<(SchemaVersion, bool), MigratorError> {
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
            .query_opt(&latest_version_sql(), &[&platform, &schema_name])
            .await
            .map_err(pg)?
            .as_ref()
            .map(version_from);
        let next = match upload(latest.as_ref(), &v.checksum) {
            Upload::Same(l) => return Ok((l.clone(), false)),
            Upload::New(next) => next,
        };
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO schema_versions (platform, schema_name, version, checksum, archive, archive_sha256,
                                                  has_tables, has_functions, has_migrations, has_seeders)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {}",
                    version_columns()
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
        Ok((version_from(&row), true))
    }

    /// One stored version of a schema, by number.
    pub async fn schema_version(
        &self,
        platform: &str,
        schema_name: &str,
        version: i32,
    ) -> Result<Option<SchemaVersion>, MigratorError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!(
                    "SELECT {} FROM schema_versions WHERE platform = $1 AND schema_name = $2 AND version = $3",
                    version_columns()
                ),
                &[&platform, &schema_name, &version],
            )
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(version_from))
    }

    /// Every stored version of a schema, oldest first, with its archive's
    /// size and how many ready databases run it.
    pub async fn schema_versions(
        &self,
        platform: &str,
        schema_name: &str,
    ) -> Result<Vec<StoredVersion>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {}, octet_length(s.archive)::bigint,
                            (SELECT count(*) FROM databases d
                             WHERE d.platform = s.platform AND d.schema_name = s.schema_name
                               AND d.kind = 'v2' AND d.state = 'ready' AND d.schema_version = s.version)
                     FROM schema_versions s WHERE s.platform = $1 AND s.schema_name = $2
                     ORDER BY s.version",
                    version_columns()
                ),
                &[&platform, &schema_name],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| StoredVersion {
                version: version_from(r),
                size: r.get(VERSION_COLUMNS),
                databases: r.get(VERSION_COLUMNS + 1),
            })
            .collect())
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
                    version_columns()
                ),
                &[&platform],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(VERSION_COLUMNS), version_from(r)))
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
            .query_opt(&latest_version_sql(), &[&platform, &schema_name])
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(version_from))
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

    /// Record the template database of a schema version and its
    /// deployment report, or (`None`) that it has none.
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

    /// Keep an archive `/register` or `/migrate` deployed (`redeployed_from`:
    /// the number it was kept under, when `/migrate` redeployed a kept
    /// one) as the platform's next v1 version, unless it equals the latest;
    /// then keep only the newest `kept`. Returns the version now latest.
    pub async fn keep_v1_archive(
        &self,
        platform: &str,
        archive: &[u8],
        sha256: &str,
        redeployed_from: Option<i32>,
        kept: u32,
    ) -> Result<V1Archive, MigratorError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        // serialize the archives of one platform
        let known = tx
            .query_opt(
                "SELECT 1 FROM platforms WHERE name = $1 FOR UPDATE",
                &[&platform],
            )
            .await
            .map_err(pg)?;
        if known.is_none() {
            return Err(MigratorError::PlatformNotFound(format!(
                "platform {platform} is not known to the gateway"
            )));
        }
        let latest = tx
            .query_opt(
                &format!(
                    "{} ORDER BY version DESC LIMIT 1",
                    v1_archive_sql("platform = $1")
                ),
                &[&platform],
            )
            .await
            .map_err(pg)?
            .as_ref()
            .map(v1_archive_from);
        let now = match v1_next(latest.as_ref(), sha256) {
            None => latest,
            Some(next) => tx
                .query_opt(
                    &format!(
                        "INSERT INTO v1_archives (platform, version, archive, archive_sha256, size, redeployed_from)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {}",
                        v1_archive_columns()
                    ),
                    &[
                        &platform,
                        &next,
                        &archive,
                        &sha256,
                        &(archive.len() as i64),
                        &redeployed_from,
                    ],
                )
                .await
                .map_err(pg)?
                .as_ref()
                .map(v1_archive_from),
        };
        let now = now.ok_or_else(|| {
            MigratorError::Internal(format!("the v1 archive of {platform} was not stored"))
        })?;
        tx.execute(
            "DELETE FROM v1_archives WHERE platform = $1 AND version NOT IN
               (SELECT version FROM v1_archives WHERE platform = $1 ORDER BY version DESC LIMIT $2)",
            &[&platform, &i64::from(kept)],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(now)
    }

    /// The kept v1 archives of `platform`, oldest first (without their bytes).
    pub async fn v1_archives(&self, platform: &str) -> Result<Vec<V1Archive>, MigratorError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!("{} ORDER BY version", v1_archive_sql("platform = $1")),
                &[&platform],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(v1_archive_from).collect())
    }

    /// A kept v1 archive with its bytes: version `version`, or (`None`)
    /// the latest — `/admin/create-tenant`'s schema.
    pub async fn v1_archive(
        &self,
        platform: &str,
        version: Option<i32>,
    ) -> Result<Option<(V1Archive, Vec<u8>)>, MigratorError> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {}, archive FROM v1_archives
             WHERE platform = $1 AND ($2::integer IS NULL OR version = $2)
             ORDER BY version DESC LIMIT 1",
            v1_archive_columns()
        );
        let row = conn
            .query_opt(&sql, &[&platform, &version])
            .await
            .map_err(pg)?;
        Ok(row.map(|r| (v1_archive_from(&r), r.get(V1_ARCHIVE_COLUMNS))))
    }
}

/// One kept v1 archive (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Archive {
    pub version: i32,
    pub archive_sha256: String,
    pub size: i64,
    pub uploaded_at: String,
    pub redeployed_from: Option<i32>,
}

/// How many columns [`v1_archive_columns`] selects.
const V1_ARCHIVE_COLUMNS: usize = 5;

/// The select list [`v1_archive_from`] reads.
fn v1_archive_columns() -> String {
    format!(
        "version, archive_sha256, size, {}, redeployed_from",
        ts("uploaded_at")
    )
}

/// The kept v1 archives matching `condition`.
fn v1_archive_sql(condition: &str) -> String {
    format!(
        "SELECT {} FROM v1_archives WHERE {condition}",
        v1_archive_columns()
    )
}

fn v1_archive_from(r: &tokio_postgres::Row) -> V1Archive {
    V1Archive {
        version: r.get(0),
        archive_sha256: r.get(1),
        size: r.get(2),
        uploaded_at: r.get(3),
        redeployed_from: r.get(4),
    }
}

/// The number an archive of sha256 `sha256` is kept under next, given the
/// latest kept one: none when it is the same archive.
fn v1_next(latest: Option<&V1Archive>, sha256: &str) -> Option<i32> {
    match latest {
        Some(l) if l.archive_sha256 == sha256 => None,
        Some(l) => Some(l.version + 1),
        None => Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::super::handle::select_list_len;
    use super::*;

    fn stored(version: i32, checksum: &str) -> SchemaVersion {
        SchemaVersion {
            version,
            checksum: checksum.into(),
            archive_sha256: "a".repeat(64),
            uploaded_at: "2024-05-01T10:00:00Z".into(),
            has_tables: true,
            has_functions: true,
            has_migrations: false,
            has_seeders: false,
        }
    }

    #[test]
    fn the_first_upload_of_a_schema_is_version_one() {
        assert_eq!(upload(None, "c1"), Upload::New(1));
    }

    #[test]
    fn a_different_upload_is_the_next_version() {
        let latest = stored(3, "c1");
        assert_eq!(upload(Some(&latest), "c2"), Upload::New(4));
    }

    #[test]
    fn an_upload_equal_to_the_latest_stores_nothing() {
        let latest = stored(3, "c1");
        assert_eq!(upload(Some(&latest), "c1"), Upload::Same(&latest));
    }

    #[test]
    fn what_follows_the_version_columns_is_read_at_their_count() {
        assert_eq!(select_list_len(&version_columns()), VERSION_COLUMNS);
    }

    fn kept(version: i32, sha256: &str) -> V1Archive {
        V1Archive {
            version,
            archive_sha256: sha256.into(),
            size: 10,
            uploaded_at: "2024-05-01T10:00:00Z".into(),
            redeployed_from: None,
        }
    }

    #[test]
    fn the_first_v1_archive_is_version_one_and_the_next_counts_on() {
        assert_eq!(v1_next(None, "s1"), Some(1));
        // after pruning the latest keeps its number: the next never reuses one
        assert_eq!(v1_next(Some(&kept(7, "s1")), "s2"), Some(8));
    }

    #[test]
    fn a_v1_archive_equal_to_the_latest_is_not_kept_again() {
        assert_eq!(v1_next(Some(&kept(3, "s1")), "s1"), None);
    }

    #[test]
    fn what_follows_the_v1_archive_columns_is_read_at_their_count() {
        assert_eq!(select_list_len(&v1_archive_columns()), V1_ARCHIVE_COLUMNS);
    }
}
