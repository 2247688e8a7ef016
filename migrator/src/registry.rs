//! The v2 stored-schema registry under `DATA_DIR/<platform>/`:
//! `platform.json` (schemas with every uploaded version, databases with the
//! schema version they are at) and `<schema_name>/v<N>.tar.gz` (each uploaded
//! version, kept). Writes are crash-safe (temp file, fsync, rename) and
//! serialized by one lock; reads see either the old or the new file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::MigratorError;
use crate::store::write_atomic;

/// One uploaded version of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    pub version: u32,
    pub checksum: String,
    pub uploaded_at: String,
    pub has_tables: bool,
    pub has_functions: bool,
    pub has_migrations: bool,
    pub has_seeders: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaEntry {
    pub versions: Vec<SchemaVersion>,
}

impl SchemaEntry {
    pub fn latest(&self) -> Option<&SchemaVersion> {
        self.versions.last()
    }
}

/// A database created from a stored schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    pub id: String,
    pub database_name: String,
    pub schema_name: String,
    pub created_at: String,
    /// Schema version last deployed successfully into it.
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformFile {
    pub name: String,
    pub registered_at: String,
    #[serde(default)]
    pub schemas: BTreeMap<String, SchemaEntry>,
    /// Keyed by database name.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseEntry>,
}

pub struct Registry {
    root: PathBuf,
    lock: Mutex<()>,
}

/// Now as RFC 3339 UTC (`2024-01-15T10:30:00Z`).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn io_err(path: &Path, e: std::io::Error) -> MigratorError {
    MigratorError::Internal(format!("registry {}: {e}", path.display()))
}

impl Registry {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            lock: Mutex::new(()),
        }
    }

    fn platform_path(&self, platform: &str) -> PathBuf {
        self.root.join(platform).join("platform.json")
    }

    pub fn archive_path(&self, platform: &str, schema: &str, version: u32) -> PathBuf {
        self.root
            .join(platform)
            .join(schema)
            .join(format!("v{version}.tar.gz"))
    }

    /// The platform's registry file, if registered.
    pub fn load(&self, platform: &str) -> Result<Option<PlatformFile>, MigratorError> {
        let path = self.platform_path(platform);
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
                MigratorError::Internal(format!("registry {} is corrupt: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// The platform's file or 404 `platform_not_found`.
    pub fn get(&self, platform: &str) -> Result<PlatformFile, MigratorError> {
        self.load(platform)?.ok_or_else(|| {
            MigratorError::PlatformNotFound(format!(
                "platform {platform} is not registered (POST /platform/register first)"
            ))
        })
    }

    fn save(&self, file: &PlatformFile) -> Result<(), MigratorError> {
        let path = self.platform_path(&file.name);
        let data =
            serde_json::to_vec_pretty(file).map_err(|e| MigratorError::Internal(e.to_string()))?;
        write_atomic(&path, &data).map_err(|e| io_err(&path, e))
    }

    /// Read-modify-write of one platform's file under the registry lock.
    pub async fn update<T>(
        &self,
        platform: &str,
        f: impl FnOnce(&mut PlatformFile) -> Result<T, MigratorError>,
    ) -> Result<T, MigratorError> {
        let _guard = self.lock.lock().await;
        let mut file = self.get(platform)?;
        let out = f(&mut file)?;
        self.save(&file)?;
        Ok(out)
    }

    /// Register a platform; `false` if it already was.
    pub async fn register(&self, platform: &str) -> Result<bool, MigratorError> {
        let _guard = self.lock.lock().await;
        if self.load(platform)?.is_some() {
            return Ok(false);
        }
        self.save(&PlatformFile {
            name: platform.to_owned(),
            registered_at: now_rfc3339(),
            schemas: BTreeMap::new(),
            databases: BTreeMap::new(),
        })?;
        Ok(true)
    }

    /// Store a new version of a schema (unless it equals the latest) and
    /// return it.
    pub async fn add_version(
        &self,
        platform: &str,
        schema: &str,
        archive: &[u8],
        mut meta: SchemaVersion,
    ) -> Result<SchemaVersion, MigratorError> {
        let _guard = self.lock.lock().await;
        let mut file = self.get(platform)?;
        let entry = file.schemas.entry(schema.to_owned()).or_default();
        if let Some(latest) = entry.latest() {
            if latest.checksum == meta.checksum {
                return Ok(latest.clone());
            }
        }
        meta.version = entry.latest().map(|v| v.version + 1).unwrap_or(1);
        let path = self.archive_path(platform, schema, meta.version);
        write_atomic(&path, archive).map_err(|e| io_err(&path, e))?;
        entry.versions.push(meta.clone());
        self.save(&file)?;
        Ok(meta)
    }

    pub fn archive(
        &self,
        platform: &str,
        schema: &str,
        version: u32,
    ) -> Result<Vec<u8>, MigratorError> {
        let path = self.archive_path(platform, schema, version);
        std::fs::read(&path).map_err(|e| io_err(&path, e))
    }

    /// Registered platforms, sorted.
    pub fn platforms(&self) -> Result<Vec<PlatformFile>, MigratorError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&self.root, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if stonescriptdb_shared::names::validate_platform(&name).is_err() {
                continue;
            }
            if let Some(p) = self.load(&name)? {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(checksum: &str) -> SchemaVersion {
        SchemaVersion {
            version: 0,
            checksum: checksum.into(),
            uploaded_at: now_rfc3339(),
            has_tables: true,
            has_functions: true,
            has_migrations: false,
            has_seeders: false,
        }
    }

    #[tokio::test]
    async fn versions_are_kept_and_survive_a_reload() {
        let dir = std::env::temp_dir().join(format!("sdg-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let reg = Registry::new(dir.clone());
        assert!(reg.register("app").await.unwrap());
        assert!(!reg.register("app").await.unwrap());
        assert_eq!(
            reg.add_version("app", "tenant_db", b"one", meta("a"))
                .await
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            reg.add_version("app", "tenant_db", b"same", meta("a"))
                .await
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            reg.add_version("app", "tenant_db", b"two", meta("b"))
                .await
                .unwrap()
                .version,
            2
        );
        let again = Registry::new(dir.clone());
        let file = again.get("app").unwrap();
        assert_eq!(file.schemas["tenant_db"].versions.len(), 2);
        assert_eq!(again.archive("app", "tenant_db", 1).unwrap(), b"one");
        assert_eq!(again.platforms().unwrap().len(), 1);
        assert!(matches!(
            again.get("nope"),
            Err(MigratorError::PlatformNotFound(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn timestamps_look_right() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
