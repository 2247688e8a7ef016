//! A schema folder packed the way `deploy/*.sh` pack it: a tar.gz holding
//! `postgresql/…` with every directory and file under the folder (links
//! followed, as `tar -h` does), in name order so the same folder packs the
//! same way. Nothing is filtered here: the gateway (or `check`) judges
//! what is in the folder, so a stray file is reported, never skipped.

use std::path::Path;

use crate::client::Failure;

/// The folder `dir` as the archive a platform uploads.
pub fn pack(dir: &Path) -> Result<Vec<u8>, Failure> {
    let meta = std::fs::metadata(dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Failure(format!("{} is not a directory", dir.display())));
    }
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    add_dir(&mut tar, dir, "postgresql")?;
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|e| Failure(format!("cannot pack {}: {e}", dir.display())))
}

fn add_dir(
    tar: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    dir: &Path,
    name: &str,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure(format!("{}: {e}", dir.display()));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_cksum();
    tar.append_data(&mut header, format!("{name}/"), std::io::empty())
        .map_err(io)?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            return Err(Failure(format!(
                "{}: a file name that is not UTF-8",
                path.display()
            )));
        };
        let inner = format!("{name}/{file_name}");
        // links followed, like `tar -h`
        let meta =
            std::fs::metadata(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            add_dir(tar, &path, &inner)?;
        } else if meta.is_file() {
            let data =
                std::fs::read(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_cksum();
            tar.append_data(&mut header, &inner, data.as_slice())
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        } else {
            return Err(Failure(format!(
                "{}: neither a file nor a directory",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Unpack an export (`postgresql/…` and `export-report.json`) into `out`,
/// a folder that must not exist yet or be empty: the schema folder's
/// contents, with the report beside its folders. The report, read.
pub fn unpack(archive: &[u8], out: &Path) -> Result<serde_json::Value, Failure> {
    let io = |e: std::io::Error| Failure(format!("{}: {e}", out.display()));
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io)?;
        if entries.next().is_some() {
            return Err(Failure(format!(
                "{} is not empty: pull into a new folder",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(io)?;
    let mut report = serde_json::Value::Null;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let bad = |e: std::io::Error| Failure(format!("the export is not a readable archive: {e}"));
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let inner = match name.strip_prefix("postgresql/") {
            Some(inner) => inner.to_owned(),
            None if name == "export-report.json" => name.clone(),
            None => continue,
        };
        // only plain relative paths: never out of `out`
        let parts: Vec<&str> = inner.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(Failure(format!("the export holds an unsafe path {name:?}")));
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(bad)?;
        if inner == "export-report.json" {
            report = serde_json::from_slice(&data).unwrap_or(serde_json::Value::Null);
        }
        let path = out.join(&inner);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, data).map_err(io)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn names(archive: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            out.push(format!("{name}={text}"));
        }
        out
    }

    #[test]
    fn a_folder_packs_under_postgresql_in_name_order_with_its_folders() {
        let root = std::env::temp_dir().join(format!("sdg-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("functions")).unwrap();
        std::fs::create_dir_all(root.join("tables")).unwrap();
        std::fs::write(root.join("tables/b.sql"), "B").unwrap();
        std::fs::write(root.join("tables/a.sql"), "A").unwrap();
        let archive = pack(&root).unwrap();
        assert_eq!(
            names(&archive),
            [
                "postgresql/=",
                "postgresql/functions/=",
                "postgresql/tables/=",
                "postgresql/tables/a.sql=A",
                "postgresql/tables/b.sql=B"
            ]
        );
        // the same folder, the same archive
        assert_eq!(pack(&root).unwrap(), archive);
        let e = pack(&root.join("tables/a.sql")).unwrap_err();
        assert!(e.0.contains("not a directory"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
