//! Files the migrator keeps under `DATA_DIR`: the most recently registered v1
//! schema of each platform (`DATA_DIR/<platform>/v1/schema.tar.gz`), used by
//! `/admin/create-tenant`. Writes are crash-safe: temp file, fsync, rename,
//! fsync of the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::MigratorError;

#[derive(Clone)]
pub struct Store {
    root: PathBuf,
}

/// Write `data` to `path` atomically.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, data, 0o644)
}

/// [`write_atomic`] with the file's permission bits (0600 for secrets: the
/// file never exists with wider ones).
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Store {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn v1_path(&self, platform: &str) -> PathBuf {
        self.root.join(platform).join("v1").join("schema.tar.gz")
    }

    pub fn save_v1(&self, platform: &str, archive: &[u8]) -> Result<(), MigratorError> {
        let path = self.v1_path(platform);
        write_atomic(&path, archive).map_err(|e| {
            MigratorError::Internal(format!(
                "cannot store the schema at {}: {e}",
                path.display()
            ))
        })
    }

    pub fn load_v1(&self, platform: &str) -> Result<Option<Vec<u8>>, MigratorError> {
        let path = self.v1_path(platform);
        match std::fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MigratorError::Internal(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }
}
