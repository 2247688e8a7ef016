//! Schema archive reader for the migrator. This module owns everything between
//! the raw bytes of an uploaded schema archive (`tar.gz`, treated as hostile)
//! and a validated in-memory [`Schema`]: size caps enforced while
//! decompressing, tar entry and path validation, layout detection (a
//! `postgresql/` wrapper folder or the six schema folders at the root), the
//! selection and ordering of `.sql`/`.pssql` files, and the canonical schema
//! checksum. It also builds a [`Schema`] from already-extracted files and
//! writes a schema back out as a deterministic `tar.gz`. It never touches the
//! filesystem and never panics on any input.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::io::{self, Read};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use tar::{Archive, Builder, EntryType, Header};

const MIB: u64 = 1024 * 1024;

/// The optional top-level wrapper folder.
const WRAPPER: &str = "postgresql";

/// File name suffixes that make a file inside a schema folder a schema file.
const SCHEMA_SUFFIXES: [&str; 3] = [".sql", ".pssql", ".pgsql"];

/// UTF-8 byte order mark, stripped from the start of schema files.
const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Domain-separation tag hashed before the files (bump if the encoding changes).
const CHECKSUM_TAG: &[u8] = b"stonescriptdb-schema-v1\0";

/// Longest entry path (in characters) quoted in an error message.
const MAX_SHOWN_PATH_CHARS: usize = 160;

/// Size caps applied while reading an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `tar.gz` input, in bytes (default 16 MiB).
    pub max_compressed_bytes: u64,
    /// Largest sum of entry sizes, and largest number of bytes read out of the
    /// gzip stream (default 64 MiB).
    pub max_uncompressed_bytes: u64,
    /// Largest number of tar entries, directories included (default 2000).
    pub max_entries: usize,
    /// Largest size of a single entry, in bytes (default 4 MiB).
    pub max_entry_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed_bytes: 16 * MIB,
            max_uncompressed_bytes: 64 * MIB,
            max_entries: 2000,
            max_entry_bytes: 4 * MIB,
        }
    }
}

impl From<&stonescriptdb_shared::config::ArchiveCaps> for Limits {
    /// The caps as configured (`ARCHIVE_MAX_*`).
    fn from(c: &stonescriptdb_shared::config::ArchiveCaps) -> Self {
        Limits {
            max_compressed_bytes: c.max_compressed_bytes,
            max_uncompressed_bytes: c.max_uncompressed_bytes,
            max_entries: c.max_entries,
            max_entry_bytes: c.max_entry_bytes,
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveError {
    /// A cap in [`Limits`] was exceeded (HTTP 413 `payload_too_large`). The
    /// message names the cap and its value.
    TooLarge(String),
    /// Anything else wrong with the archive (HTTP 400 `invalid_request`).
    Invalid(String),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::TooLarge(msg) => write!(f, "schema archive too large: {msg}"),
            ArchiveError::Invalid(msg) => write!(f, "invalid schema archive: {msg}"),
        }
    }
}

impl std::error::Error for ArchiveError {}

/// The six schema folders, in deployment order.
pub const FOLDERS: [&str; 6] = [
    "extensions",
    "types",
    "tables",
    "migrations",
    "functions",
    "seeders",
];

/// One schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    /// Path within its folder, e.g. `001_init.sql` or `users/get.pssql`.
    pub name: String,
    /// File content (UTF-8, without a leading byte order mark).
    pub content: String,
}

/// A validated schema: the files of each folder sorted in path order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub extensions: Vec<SchemaFile>,
    pub types: Vec<SchemaFile>,
    pub tables: Vec<SchemaFile>,
    pub migrations: Vec<SchemaFile>,
    pub functions: Vec<SchemaFile>,
    pub seeders: Vec<SchemaFile>,
    /// Which of [`FOLDERS`] the archive has: a directory entry or any file
    /// under it (e.g. `functions/.keep`). An absent `functions/` leaves the
    /// database's functions alone; a present, empty one drops those the
    /// gateway deployed.
    pub present: [bool; 6],
    /// sha256 (lowercase hex) over the sorted (folder/name, content) pairs
    /// (and the folders present without a file):
    /// identical schemas -> identical checksum regardless of tar entry order,
    /// mtimes, owners, or the postgresql/ wrapper.
    pub checksum: String,
}

impl Schema {
    /// True when the schema holds no file at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.file_count() == 0
    }

    /// Is the folder `name` (one of [`FOLDERS`]) in the archive?
    #[must_use]
    pub fn has_folder(&self, name: &str) -> bool {
        folder_index(name).is_some_and(|i| self.present[i])
    }

    /// Number of schema files over all six folders.
    #[must_use]
    pub fn file_count(&self) -> usize {
        self.folders().iter().map(|(_, files)| files.len()).sum()
    }

    /// The folders with their files, in deployment order.
    fn folders(&self) -> [(&'static str, &Vec<SchemaFile>); 6] {
        [
            (FOLDERS[0], &self.extensions),
            (FOLDERS[1], &self.types),
            (FOLDERS[2], &self.tables),
            (FOLDERS[3], &self.migrations),
            (FOLDERS[4], &self.functions),
            (FOLDERS[5], &self.seeders),
        ]
    }

    /// The file list of the folder at `index` in [`FOLDERS`].
    fn folder_mut(&mut self, index: usize) -> Option<&mut Vec<SchemaFile>> {
        match index {
            0 => Some(&mut self.extensions),
            1 => Some(&mut self.types),
            2 => Some(&mut self.tables),
            3 => Some(&mut self.migrations),
            4 => Some(&mut self.functions),
            5 => Some(&mut self.seeders),
            _ => None,
        }
    }

    /// Sorts each folder by name, drops repeated names (the first one wins)
    /// and computes the checksum.
    fn finish(mut self) -> Schema {
        for index in 0..FOLDERS.len() {
            if let Some(files) = self.folder_mut(index) {
                files.sort_by(|a, b| path_order(&a.name, &b.name));
                files.dedup_by(|later, earlier| later.name == earlier.name);
            }
        }
        self.checksum = compute_checksum(&self);
        self
    }
}

/// Read a tar.gz entirely in memory (never touch the filesystem). Accept both
/// layouts: a single top-level wrapper folder `postgresql/` (also
/// `./postgresql/`) containing the folders, and the folders at the archive
/// root (also with a leading `./`). Only files inside one of the six folders,
/// directly or in subfolders, whose names end in `.sql` or `.pssql` (and no
/// part of whose path starts with `.`) are schema files; other regular files
/// are ignored but still count toward the caps and are still checked for
/// hostile paths. Directory entries and pax global headers are fine;
/// symlinks, hardlinks, devices, fifos and any other entry type are refused.
/// Files in each folder are sorted in path order (component by component,
/// each by bytes). A UTF-8 BOM at the start of a file is stripped.
///
/// Caps are checked while reading: the input length first, then each entry's
/// header size before its data is read, the running sum of entry sizes, the
/// entry count, and the number of bytes inflated from the gzip stream (which
/// is read to its end, so a truncated or corrupt gzip trailer is refused).
///
/// An archive that contains none of the six folders is `Invalid`; one whose
/// folders hold no schema file gives an empty [`Schema`] (see
/// [`Schema::is_empty`]).
///
/// # Errors
///
/// [`ArchiveError::TooLarge`] when a cap in `limits` is exceeded, naming the
/// cap and its value; [`ArchiveError::Invalid`] for anything else wrong with
/// the archive (not gzip, corrupt gzip or tar, a link/device/fifo entry, an
/// absolute, `..`, non-UTF-8 or otherwise unsafe path, non-UTF-8 schema file
/// content, a duplicate file path, none of the six folders present).
pub fn read_schema(tar_gz: &[u8], limits: &Limits) -> Result<Schema, ArchiveError> {
    let compressed = u64::try_from(tar_gz.len()).unwrap_or(u64::MAX);
    if compressed > limits.max_compressed_bytes {
        return Err(ArchiveError::TooLarge(format!(
            "compressed size {compressed} bytes exceeds max_compressed_bytes ({})",
            limits.max_compressed_bytes
        )));
    }
    if !tar_gz.starts_with(&[0x1f, 0x8b]) {
        return Err(ArchiveError::Invalid(
            "not a gzip stream (expected a .tar.gz archive)".to_owned(),
        ));
    }
    let mut stream = CappedReader::new(MultiGzDecoder::new(tar_gz), limits.max_uncompressed_bytes);
    let result = scan(&mut stream, limits);
    if stream.exceeded {
        // Whatever the tar reader made of the cut-off stream, the cause is the cap.
        return Err(stream_cap_error(limits));
    }
    result
}

/// Same rules as [`read_schema`] applied to a schema already extracted (used
/// when the registry re-reads stored schemas): builds a [`Schema`] (with
/// checksum) from (folder, file) pairs. Pairs whose folder is not one of
/// [`FOLDERS`], or whose name is not a plain `.sql`/`.pssql` file name (no `/`,
/// `\`, control characters or leading `.`), are skipped; a leading BOM is
/// stripped; files are sorted by name and, for a repeated (folder, name), the
/// first pair wins. The result always round-trips through [`to_tar_gz`].
#[must_use]
// Used by tests now and by the v2 stored-schema registry next.
#[cfg_attr(not(test), allow(dead_code))]
pub fn schema_from_files(files: Vec<(String, SchemaFile)>) -> Schema {
    let mut schema = Schema::default();
    for (folder, mut file) in files {
        let Some(index) = folder_index(&folder) else {
            continue;
        };
        if !is_schema_file_name(&file.name) {
            continue;
        }
        if file.content.starts_with('\u{feff}') {
            file.content.drain(..'\u{feff}'.len_utf8());
        }
        schema.present[index] = true;
        if let Some(list) = schema.folder_mut(index) {
            list.push(file);
        }
    }
    schema.finish()
}

/// Build a tar.gz from a Schema (folders at the root as directory entries,
/// regular files with mode 0644, mtime 0, owner 0): deterministic output.
/// `read_schema(&to_tar_gz(s), ..)` round-trips to an equal Schema for any
/// schema made by [`read_schema`] or [`schema_from_files`]. For a hand-built
/// schema, files that [`schema_from_files`] would skip (bad names, a repeated
/// name) are left out.
#[must_use]
#[cfg_attr(not(test), allow(dead_code))]
pub fn to_tar_gz(schema: &Schema) -> Vec<u8> {
    // Writing into a Vec cannot fail, and every path written is validated
    // first; an empty Vec (never a panic) would be the answer if it did.
    build_tar_gz(schema).unwrap_or_default()
}

#[cfg_attr(not(test), allow(dead_code))]
fn build_tar_gz(schema: &Schema) -> io::Result<Vec<u8>> {
    let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (i, (folder, files)) in schema.folders().into_iter().enumerate() {
        if !schema.present[i] && files.is_empty() {
            continue;
        }
        let mut dir = Header::new_gnu();
        dir.set_entry_type(EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        dir.set_mtime(0);
        dir.set_uid(0);
        dir.set_gid(0);
        builder.append_data(&mut dir, format!("{folder}/"), io::empty())?;

        let mut written = BTreeSet::new();
        for file in files {
            if !is_schema_file_name(&file.name) || !written.insert(file.name.as_str()) {
                continue;
            }
            let mut header = Header::new_gnu();
            header.set_entry_type(EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(u64::try_from(file.content.len()).unwrap_or(u64::MAX));
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            builder.append_data(
                &mut header,
                format!("{folder}/{}", file.name),
                file.content.as_bytes(),
            )?;
        }
    }
    builder.into_inner()?.finish()
}

/// What an accepted tar entry is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    /// A pax global header (e.g. git archive's `pax_global_header`): metadata
    /// only, its name is meaningless and not checked.
    GlobalMeta,
}

/// Walks the tar stream, then drains the gzip stream to its end.
fn scan<R: Read>(stream: &mut R, limits: &Limits) -> Result<Schema, ArchiveError> {
    let mut archive = Archive::new(stream);
    let mut schema = Schema::default();
    let mut seen_folder = false;
    let mut file_paths: BTreeSet<String> = BTreeSet::new();
    let mut entry_count: usize = 0;
    let mut total_size: u64 = 0;

    let entries = archive.entries().map_err(corrupt)?;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;

        entry_count = entry_count.saturating_add(1);
        if entry_count > limits.max_entries {
            return Err(ArchiveError::TooLarge(format!(
                "archive has more than max_entries ({}) entries",
                limits.max_entries
            )));
        }

        let raw_path = entry.path_bytes().into_owned();
        let entry_type = entry.header().entry_type();
        let mut kind = classify(entry_type, &raw_path)?;
        let parts = if kind == Kind::GlobalMeta {
            Vec::new()
        } else {
            normalize_path(&raw_path)?
        };
        // Old (v7) archives mark directories with a trailing slash only.
        if kind == Kind::File && raw_path.last() == Some(&b'/') {
            kind = Kind::Dir;
        }

        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(ArchiveError::TooLarge(format!(
                "entry {} is {size} bytes, over max_entry_bytes ({})",
                show(&raw_path),
                limits.max_entry_bytes
            )));
        }
        total_size = total_size.saturating_add(size);
        if total_size > limits.max_uncompressed_bytes {
            return Err(ArchiveError::TooLarge(format!(
                "entry sizes add up to more than max_uncompressed_bytes ({})",
                limits.max_uncompressed_bytes
            )));
        }

        if kind == Kind::GlobalMeta {
            continue;
        }
        let rel: &[&str] = match parts.split_first() {
            Some((&first, rest)) if first == WRAPPER => rest,
            _ => &parts,
        };
        if let Some(first) = rel.first() {
            if let Some(index) = folder_index(first) {
                if kind == Kind::Dir || rel.len() > 1 {
                    seen_folder = true;
                    schema.present[index] = true;
                }
            }
        }
        if kind == Kind::Dir {
            continue;
        }
        refuse_unread(rel)?;

        // Schema files are keyed by folder/name, so the same file given both
        // under the wrapper and at the root is a duplicate; other files by
        // their full path.
        let schema_file = match rel {
            [folder, rest @ ..] if !rest.is_empty() => {
                let name = rest.join("/");
                match folder_index(folder) {
                    Some(index) if is_schema_file_name(&name) => Some((index, name)),
                    _ => None,
                }
            }
            _ => None,
        };
        let key = if schema_file.is_some() {
            rel.join("/")
        } else {
            parts.join("/")
        };
        if file_paths.contains(&key) {
            return Err(ArchiveError::Invalid(format!(
                "duplicate file path {} (entry {})",
                show(key.as_bytes()),
                show(&raw_path)
            )));
        }
        file_paths.insert(key);
        let Some((index, name)) = schema_file else {
            continue;
        };

        let capacity = usize::try_from(size.min(64 * 1024)).unwrap_or(0);
        let mut data = Vec::with_capacity(capacity);
        entry.read_to_end(&mut data).map_err(corrupt)?;
        if u64::try_from(data.len()).ok() != Some(size) {
            return Err(ArchiveError::Invalid(format!(
                "entry {} is truncated",
                show(&raw_path)
            )));
        }
        if data.starts_with(BOM) {
            data.drain(..BOM.len());
        }
        let content = String::from_utf8(data).map_err(|_| {
            ArchiveError::Invalid(format!("file {} is not valid UTF-8", show(&raw_path)))
        })?;
        if let Some(list) = schema.folder_mut(index) {
            list.push(SchemaFile { name, content });
        }
    }

    // Read the gzip stream to its end (still under the cap) so that trailing
    // garbage or a truncated/corrupt gzip trailer is noticed.
    let mut stream = archive.into_inner();
    io::copy(&mut stream, &mut io::sink()).map_err(corrupt)?;

    if !seen_folder {
        return Err(ArchiveError::Invalid(format!(
            "archive contains none of the schema folders ({}), neither at the root nor under {WRAPPER}/",
            FOLDERS.join(", ")
        )));
    }
    Ok(schema.finish())
}

/// Accepts regular files, directories and pax global headers; refuses every
/// other entry type, naming the entry.
fn classify(entry_type: EntryType, raw_path: &[u8]) -> Result<Kind, ArchiveError> {
    if entry_type.is_file() || entry_type.is_contiguous() {
        return Ok(Kind::File);
    }
    if entry_type.is_dir() {
        return Ok(Kind::Dir);
    }
    if entry_type.is_pax_global_extensions() {
        return Ok(Kind::GlobalMeta);
    }
    let what = if entry_type.is_symlink() {
        "a symlink"
    } else if entry_type.is_hard_link() {
        "a hardlink"
    } else if entry_type.is_character_special() {
        "a character device"
    } else if entry_type.is_block_special() {
        "a block device"
    } else if entry_type.is_fifo() {
        "a fifo"
    } else if entry_type.is_gnu_sparse() {
        "a sparse file"
    } else {
        "of an unsupported type"
    };
    Err(ArchiveError::Invalid(format!(
        "entry {} is {what} (type {:?}); only regular files and directories are allowed",
        show(raw_path),
        char::from(entry_type.as_byte())
    )))
}

/// Checks an entry path and splits it into components, dropping empty and
/// `.` components.
fn normalize_path(raw: &[u8]) -> Result<Vec<&str>, ArchiveError> {
    let invalid = |why: &str| ArchiveError::Invalid(format!("entry {} {why}", show(raw)));
    let path = std::str::from_utf8(raw).map_err(|_| invalid("has a non-UTF-8 path"))?;
    if path.is_empty() {
        return Err(invalid("has an empty path"));
    }
    if path.starts_with('/') {
        return Err(invalid("has an absolute path"));
    }
    if path.contains('\\') {
        return Err(invalid("has a backslash in its path"));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid("has a control character in its path"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("has a `..` component in its path")),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// Position of `folder` in [`FOLDERS`].
/// What `sql/` files anywhere but the six folders, and files other than
/// schema files inside them, would mean: the gateway never skips them
/// silently. Hidden files and folders (`.keep`, `.git/`) are not read.
fn refuse_unread(rel: &[&str]) -> Result<(), ArchiveError> {
    if rel.iter().any(|part| part.starts_with('.')) {
        return Ok(());
    }
    let path = rel.join("/");
    match rel {
        [folder, rest @ ..] if !rest.is_empty() && folder_index(folder).is_some() => {
            let name = rest.join("/");
            if is_schema_file_name(&name) {
                return Ok(());
            }
            Err(ArchiveError::Invalid(format!(
                "{path}: {folder}/ holds only .sql, .pssql or .pgsql files (hidden files such as .keep aside); rename it or move it out of the schema folders"
            )))
        }
        ["cross_db", ..] => Err(ArchiveError::Invalid(format!(
            "{path}: the gateway does not copy rows between databases (cross_db/ is not supported); each database is deployed on its own"
        ))),
        [folder, rest @ ..] if !rest.is_empty() && is_schema_file_name(&path) => {
            let belongs = match *folder {
                "views" | "triggers" | "policies" | "materialized_views" | "grants" => {
                    "views, triggers, policies and grants belong in migrations/"
                }
                "procedures" => "procedures belong in functions/",
                "indexes" | "sequences" => {
                    "indexes and sequences belong in tables/, beside their table"
                }
                "enums" | "domains" => "types belong in types/",
                "seeds" | "data" => "rows to insert belong in seeders/",
                _ => "put its files in one of the folders the gateway reads",
            };
            Err(ArchiveError::Invalid(format!(
                "{path}: the gateway does not read {folder}/ (it reads {}); {belongs}",
                FOLDERS.join("/, ") + "/"
            )))
        }
        _ => Ok(()),
    }
}

fn folder_index(folder: &str) -> Option<usize> {
    FOLDERS.iter().position(|f| *f == folder)
}

/// A schema file's path inside its folder: `get.pssql`, or in subfolders
/// `users/get.pssql`. No component is empty, starts with `.` (hidden files
/// and folders are skipped), or holds `\\` or a control character; the last
/// ends in `.sql`, `.pssql` or `.pgsql`.
fn is_schema_file_name(name: &str) -> bool {
    name.split('/').all(|part| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.contains('\\')
            && !part.chars().any(char::is_control)
    }) && SCHEMA_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// Path order of schema files: component by component, so that a folder's
/// files stay together (`a/z.sql` before `a-b/c.sql`).
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// sha256 over the tag, then for each file sorted by `folder/name`: the
/// path's length (u64 LE), the path, the content's length (u64 LE), the
/// content.
fn compute_checksum(schema: &Schema) -> String {
    let mut items: Vec<(String, &str)> = schema
        .folders()
        .iter()
        .flat_map(|(folder, files)| {
            files
                .iter()
                .map(move |f| (format!("{folder}/{}", f.name), f.content.as_str()))
        })
        .collect();
    // A folder present without a file changes what a deployment does
    // (`functions/` empty drops functions): it counts, as `folder/`.
    for (i, (folder, files)) in schema.folders().iter().enumerate() {
        if schema.present[i] && files.is_empty() {
            items.push((format!("{folder}/"), ""));
        }
    }
    items.sort_unstable();

    let mut hasher = Sha256::new();
    hasher.update(CHECKSUM_TAG);
    for (path, content) in &items {
        hasher.update(u64::try_from(path.len()).unwrap_or(u64::MAX).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update(
            u64::try_from(content.len())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        hasher.update(content.as_bytes());
    }
    let mut out = String::with_capacity(64);
    for byte in hasher.finalize() {
        // Writing into a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A path for an error message: lossy UTF-8, escaped, quoted, shortened.
fn show(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut shown: String = text.chars().take(MAX_SHOWN_PATH_CHARS).collect();
    if text.chars().nth(MAX_SHOWN_PATH_CHARS).is_some() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

fn corrupt(err: io::Error) -> ArchiveError {
    ArchiveError::Invalid(format!("corrupt tar.gz: {err}"))
}

fn stream_cap_error(limits: &Limits) -> ArchiveError {
    ArchiveError::TooLarge(format!(
        "decompressed data exceeds max_uncompressed_bytes ({})",
        limits.max_uncompressed_bytes
    ))
}

/// A reader that hands out at most `cap` bytes: asked for more, it reads at
/// most one byte past the cap, then fails (and keeps failing) with
/// `exceeded` set. Each inner read is sized so that the decoder never
/// inflates more than that.
struct CappedReader<R> {
    inner: R,
    cap: u64,
    read: u64,
    exceeded: bool,
}

impl<R> CappedReader<R> {
    fn new(inner: R, cap: u64) -> Self {
        CappedReader {
            inner,
            cap,
            read: 0,
            exceeded: false,
        }
    }

    fn error() -> io::Error {
        io::Error::other("decompressed size cap exceeded")
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.exceeded {
            return Err(Self::error());
        }
        // Room up to the cap, plus one byte to find out whether there is more.
        let room = self.cap.saturating_sub(self.read).saturating_add(1);
        let want = usize::try_from(room).map_or(buf.len(), |room| room.min(buf.len()));
        let Some(window) = buf.get_mut(..want) else {
            return Err(Self::error());
        };
        let n = self.inner.read(window)?;
        self.read = self
            .read
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if self.read > self.cap {
            self.exceeded = true;
            return Err(Self::error());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    // ---- helpers -----------------------------------------------------------

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A tar (not gzipped) of regular files built with the normal API.
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        for (path, data) in files {
            if let Some(dir) = path.strip_suffix('/') {
                let mut h = Header::new_gnu();
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, dir, io::empty()).unwrap();
            } else {
                let mut h = Header::new_gnu();
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, path, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        gz(&tar_of(files))
    }

    /// One raw tar entry with a forged name (no path validation at all).
    fn raw_entry(name: &[u8], kind: u8, data: &[u8]) -> Vec<u8> {
        raw_entry_sized(name, kind, data, data.len() as u64)
    }

    fn raw_entry_sized(name: &[u8], kind: u8, data: &[u8], size: u64) -> Vec<u8> {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            let n = name.len().min(old.name.len());
            old.name[..n].copy_from_slice(&name[..n]);
        }
        h.set_mode(0o644);
        h.set_size(size);
        h.set_entry_type(EntryType::new(kind));
        if kind == b'1' || kind == b'2' {
            h.as_old_mut().linkname[..10].copy_from_slice(b"/etc/shado");
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    /// A GNU long-name ('L') entry followed by a regular file.
    fn raw_long_entry(name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut long = name.to_vec();
        long.push(0);
        let mut out = raw_entry(b"././@LongLink", b'L', &long);
        out.extend(raw_entry(b"truncated", b'0', data));
        out
    }

    /// A PAX local ('x') header setting `path`, followed by a regular file.
    fn raw_pax_entry(path: &str, data: &[u8]) -> Vec<u8> {
        let body = format!(" path={path}\n");
        // The record length counts its own digits.
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        let record = format!("{len}{body}");
        let mut out = raw_entry(b"PaxHeader", b'x', record.as_bytes());
        out.extend(raw_entry(b"plain.txt", b'0', data));
        out
    }

    fn finish_raw(mut tar: Vec<u8>) -> Vec<u8> {
        tar.extend_from_slice(&[0u8; 1024]);
        gz(&tar)
    }

    fn read(tar_gz: &[u8]) -> Result<Schema, ArchiveError> {
        read_schema(tar_gz, &Limits::default())
    }

    fn invalid(result: Result<Schema, ArchiveError>) -> String {
        match result {
            Err(ArchiveError::Invalid(msg)) => msg,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn too_large(result: Result<Schema, ArchiveError>) -> String {
        match result {
            Err(ArchiveError::TooLarge(msg)) => msg,
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    fn names(files: &[SchemaFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    fn file(name: &str, content: &str) -> SchemaFile {
        SchemaFile {
            name: name.to_owned(),
            content: content.to_owned(),
        }
    }

    fn sample_files() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("extensions/001_uuid.sql", b"create extension x;"),
            ("types/status.pssql", b"create type status;"),
            ("tables/users.sql", b"create table users();"),
            ("migrations/002_b.sql", b"alter 2;"),
            ("migrations/001_a.sql", b"alter 1;"),
            ("functions/get_user.pssql", b"create function f();"),
            ("seeders/users.sql", b"insert 1;"),
        ]
    }

    fn wrapped(prefix: &str) -> Vec<(String, &'static [u8])> {
        sample_files()
            .into_iter()
            .map(|(p, d)| (format!("{prefix}{p}"), d))
            .collect()
    }

    fn tgz_owned(files: &[(String, &[u8])]) -> Vec<u8> {
        let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (p.as_str(), *d)).collect();
        tgz(&borrowed)
    }

    // ---- layouts -----------------------------------------------------------

    #[test]
    fn reads_root_layout() {
        let s = read(&tgz(&sample_files())).unwrap();
        assert_eq!(s.file_count(), 7);
        assert_eq!(names(&s.extensions), ["001_uuid.sql"]);
        assert_eq!(names(&s.types), ["status.pssql"]);
        assert_eq!(names(&s.tables), ["users.sql"]);
        assert_eq!(names(&s.migrations), ["001_a.sql", "002_b.sql"]);
        assert_eq!(names(&s.functions), ["get_user.pssql"]);
        assert_eq!(names(&s.seeders), ["users.sql"]);
        assert_eq!(s.tables[0].content, "create table users();");
        assert_eq!(s.checksum.len(), 64);
        assert!(s
            .checksum
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn reads_wrapper_layout() {
        let root = read(&tgz(&sample_files())).unwrap();
        let wrapped = read(&tgz_owned(&wrapped("postgresql/"))).unwrap();
        assert_eq!(root, wrapped);
    }

    #[test]
    fn accepts_dot_slash_prefixes() {
        let root = read(&tgz(&sample_files())).unwrap();
        assert_eq!(read(&tgz_owned(&wrapped("./"))).unwrap(), root);
        assert_eq!(read(&tgz_owned(&wrapped("./postgresql/"))).unwrap(), root);
        assert_eq!(
            read(&tgz_owned(&wrapped(".//postgresql/./"))).unwrap(),
            root
        );
    }

    #[test]
    fn accepts_directory_entries_and_git_pax_global_header() {
        let mut tar = raw_entry(
            b"pax_global_header",
            b'g',
            b"52 comment=0123456789abcdef0123456789abcdef01234567\n",
        );
        tar.extend(tar_of(&[
            ("./", b""),
            ("postgresql/", b""),
            ("postgresql/tables/", b""),
            ("postgresql/tables/a.sql", b"select 1;"),
        ]));
        let s = read(&gz(&tar)).unwrap();
        assert_eq!(names(&s.tables), ["a.sql"]);
    }

    #[test]
    fn ignores_hidden_files_and_what_lies_outside_the_folders() {
        let s = read(&tgz(&[
            ("README.md", b"# hi"),
            (".DS_Store", b"\x00\x01\xff\xfe"),
            ("tables/.DS_Store", b"\xff\xfe"),
            ("tables/._users.sql", b"\x00\x05\x16\x07\xff\xfe"),
            ("tables/users.sql", b"create table users();"),
            ("functions/.old/x.sql", b"\xff old"),
            ("functions/.keep", b""),
            ("docs/notes.md", b"x"),
            ("x.sql", b"x"),
            ("postgresql/README.md", b"x"),
        ]))
        .unwrap();
        assert_eq!(s.file_count(), 1);
        assert_eq!(names(&s.tables), ["users.sql"]);
        assert!(s.has_folder("functions") && !s.has_folder("seeders"));
    }

    #[test]
    fn refuses_files_it_would_not_read() {
        for (path, says) in [
            ("tables/notes.txt", "tables/notes.txt: tables/ holds only .sql, .pssql or .pgsql files"),
            ("functions/users/get.plsql", "functions/users/get.plsql: functions/ holds only"),
            ("postgresql/views/active.sql", "views/active.sql: the gateway does not read views/ (it reads extensions/, types/, tables/, migrations/, functions/, seeders/); views, triggers, policies and grants belong in migrations/"),
            ("unknown/x.sql", "unknown/x.sql: the gateway does not read unknown/"),
            ("cross_db/copy.sql", "cross_db/copy.sql: the gateway does not copy rows between databases"),
            ("cross_db/readme.md", "does not copy rows between databases"),
        ] {
            let msg = invalid(read(&tgz(&[("tables/a.sql", b"x"), (path, b"x")])));
            assert!(msg.contains(says), "{path}: {msg}");
        }
        // .pgsql is a schema file like .sql and .pssql
        let s = read(&tgz(&[("functions/get.pgsql", b"x")])).unwrap();
        assert_eq!(names(&s.functions), ["get.pgsql"]);
    }

    /// Files in subfolders are schema files, named by their path in the
    /// folder and read in path order, a subfolder's files together.
    #[test]
    fn reads_files_in_subfolders_in_path_order() {
        let s = read(&tgz(&[
            ("functions/users/get.pssql", b"g"),
            ("functions/users-admin/x.sql", b"x"),
            ("functions/users/z/deep.sql", b"d"),
            ("functions/users.sql", b"u"),
            ("functions/a.sql", b"a"),
            ("migrations/2025/001_b.sql", b"b"),
            ("migrations/2024/002_a.sql", b"a"),
            ("migrations/2024/.draft/003.sql", b"hidden"),
        ]))
        .unwrap();
        assert_eq!(
            names(&s.functions),
            [
                "a.sql",
                "users/get.pssql",
                "users/z/deep.sql",
                "users-admin/x.sql",
                "users.sql"
            ]
        );
        assert_eq!(names(&s.migrations), ["2024/002_a.sql", "2025/001_b.sql"]);
        // the same through stored files, and back through a tar.gz
        assert_eq!(read(&to_tar_gz(&s)).unwrap(), s);
        let files = s
            .folders()
            .iter()
            .flat_map(|(folder, files)| files.iter().map(|f| (folder.to_string(), f.clone())))
            .collect();
        assert_eq!(schema_from_files(files), s);
    }

    #[test]
    fn sorts_files_by_name_in_byte_order() {
        let s = read(&tgz(&[
            ("migrations/b.sql", b"b"),
            ("migrations/10_x.sql", b"10"),
            ("migrations/B.sql", b"B"),
            ("migrations/2_x.sql", b"2"),
            ("migrations/1_x.sql", b"1"),
            ("migrations/a.pssql", b"a"),
        ]))
        .unwrap();
        assert_eq!(
            names(&s.migrations),
            ["10_x.sql", "1_x.sql", "2_x.sql", "B.sql", "a.pssql", "b.sql"]
        );
    }

    #[test]
    fn strips_utf8_bom() {
        let s = read(&tgz(&[
            ("tables/a.sql", b"\xEF\xBB\xBFcreate table a();"),
            ("tables/b.sql", b"create table b(); -- \xEF\xBB\xBF kept"),
        ]))
        .unwrap();
        assert_eq!(s.tables[0].content, "create table a();");
        assert_eq!(s.tables[1].content, "create table b(); -- \u{feff} kept");
    }

    #[test]
    fn folders_without_files_give_empty_schema() {
        let s = read(&tgz(&[("tables/", b""), ("README.md", b"x")])).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.file_count(), 0);
        // the folder is there, and that is part of the checksum
        assert!(s.has_folder("tables"));
        assert_ne!(s.checksum, schema_from_files(Vec::new()).checksum);
        let keep = read(&tgz(&[("functions/.keep", b"")])).unwrap();
        assert!(keep.is_empty() && keep.has_folder("functions"));
        assert_ne!(keep.checksum, s.checksum);
        // a folder with files: presence adds nothing to the checksum
        let with = read(&tgz(&[("tables/", b""), ("tables/a.sql", b"x")])).unwrap();
        let without = read(&tgz(&[("tables/a.sql", b"x")])).unwrap();
        assert_eq!(with.checksum, without.checksum);
    }

    #[test]
    fn long_paths_via_gnu_long_names() {
        let name = format!("{}_create_everything.sql", "7".repeat(150));
        let wrapped_path = format!("postgresql/migrations/{name}");
        assert!(wrapped_path.len() > 100);
        let s = read(&tgz(&[(wrapped_path.as_str(), b"select 1;")])).unwrap();
        assert_eq!(names(&s.migrations), [name.as_str()]);
        // And a hand-forged 'L' entry.
        let forged = finish_raw(raw_long_entry(
            format!("tables/{name}").as_bytes(),
            b"select 2;",
        ));
        let s = read(&forged).unwrap();
        assert_eq!(names(&s.tables), [name.as_str()]);
        assert_eq!(s.tables[0].content, "select 2;");
    }

    #[test]
    fn pax_path_is_used() {
        let s = read(&finish_raw(raw_pax_entry("functions/f.sql", b"select 3;"))).unwrap();
        assert_eq!(names(&s.functions), ["f.sql"]);
    }

    // ---- checksum, round-trip, schema_from_files -------------------------------

    #[test]
    fn checksum_ignores_entry_order_wrapper_and_metadata() {
        let base = read(&tgz(&sample_files())).unwrap();
        let mut reversed = sample_files();
        reversed.reverse();
        assert_eq!(read(&tgz(&reversed)).unwrap().checksum, base.checksum);
        assert_eq!(
            read(&tgz_owned(&wrapped("./postgresql/")))
                .unwrap()
                .checksum,
            base.checksum
        );
        // Different mtimes/owners/modes: to_tar_gz writes 0 / 0 / 0644.
        assert_eq!(read(&to_tar_gz(&base)).unwrap().checksum, base.checksum);
    }

    #[test]
    fn checksum_changes_with_content_name_or_folder() {
        let a = read(&tgz(&[("tables/a.sql", b"x")])).unwrap().checksum;
        let content = read(&tgz(&[("tables/a.sql", b"y")])).unwrap().checksum;
        let name = read(&tgz(&[("tables/b.sql", b"x")])).unwrap().checksum;
        let folder = read(&tgz(&[("types/a.sql", b"x")])).unwrap().checksum;
        // Moving bytes between name and content must not collide.
        let shifted = read(&tgz(&[("tables/a.sqlx.sql", b"")])).unwrap().checksum;
        let all = [a, content, name, folder, shifted];
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }

    #[test]
    fn round_trips_through_to_tar_gz() {
        let s = read(&tgz_owned(&wrapped("postgresql/"))).unwrap();
        let bytes = to_tar_gz(&s);
        assert_eq!(read(&bytes).unwrap(), s);
        // Deterministic output.
        assert_eq!(to_tar_gz(&s), bytes);
    }

    #[test]
    fn round_trips_long_names_and_empty_schema() {
        let long = format!("{}.sql", "n".repeat(200));
        let s = schema_from_files(vec![("seeders".into(), file(&long, "insert;"))]);
        assert_eq!(read(&to_tar_gz(&s)).unwrap(), s);
        // an empty folder stays an empty folder
        let empty = read(&tgz(&[("functions/", b"")])).unwrap();
        assert_eq!(read(&to_tar_gz(&empty)).unwrap(), empty);
    }

    #[test]
    fn schema_from_files_matches_read_schema() {
        let from_archive = read(&tgz(&sample_files())).unwrap();
        let mut pairs: Vec<(String, SchemaFile)> = sample_files()
            .into_iter()
            .map(|(path, data)| {
                let (folder, name) = path.split_once('/').unwrap();
                (
                    folder.to_owned(),
                    file(name, std::str::from_utf8(data).unwrap()),
                )
            })
            .collect();
        pairs.reverse();
        assert_eq!(schema_from_files(pairs), from_archive);
    }

    #[test]
    fn schema_from_files_applies_the_same_rules() {
        let s = schema_from_files(vec![
            ("tables".into(), file("b.sql", "\u{feff}b")),
            ("tables".into(), file("a.sql", "first")),
            ("tables".into(), file("a.sql", "second")),
            ("tables".into(), file("README.md", "x")),
            ("tables".into(), file("../x.sql", "x")),
            ("tables".into(), file("._x.sql", "x")),
            ("unknown".into(), file("x.sql", "x")),
            ("postgresql/tables".into(), file("x.sql", "x")),
        ]);
        assert_eq!(s.file_count(), 2);
        assert_eq!(s.tables, vec![file("a.sql", "first"), file("b.sql", "b")]);
        assert_eq!(read(&to_tar_gz(&s)).unwrap(), s);
    }

    #[test]
    fn to_tar_gz_skips_bad_names_in_hand_built_schema() {
        let hand = Schema {
            tables: vec![
                file("../../evil.sql", "x"),
                file("ok.sql", "y"),
                file("ok.sql", "dup"),
            ],
            ..Schema::default()
        };
        let s = read(&to_tar_gz(&hand)).unwrap();
        assert_eq!(s.tables, vec![file("ok.sql", "y")]);
    }

    // ---- hostile paths and entry types -------------------------------------

    #[test]
    fn rejects_parent_dir_paths() {
        for name in [
            &b"../evil.sql"[..],
            b"postgresql/../../x.sql",
            b"tables/../../x.sql",
            b"./..",
            b"tables/..",
        ] {
            let msg = invalid(read(&finish_raw(raw_entry(name, b'0', b"x"))));
            assert!(msg.contains(".."), "{msg}");
        }
    }

    #[test]
    fn rejects_absolute_and_odd_paths() {
        let msg = invalid(read(&finish_raw(raw_entry(b"/etc/passwd", b'0', b"x"))));
        assert!(
            msg.contains("absolute") && msg.contains("/etc/passwd"),
            "{msg}"
        );
        invalid(read(&finish_raw(raw_entry(b"/tables/", b'5', b""))));
        invalid(read(&finish_raw(raw_entry(
            b"tables\\..\\x.sql",
            b'0',
            b"x",
        ))));
        invalid(read(&finish_raw(raw_entry(b"tables/a\nb.sql", b'0', b"x"))));
        // Even a non-schema file with a hostile path is refused.
        invalid(read(&finish_raw(raw_entry(b"../README.md", b'0', b"x"))));
    }

    #[test]
    fn rejects_non_utf8_path() {
        let msg = invalid(read(&finish_raw(raw_entry(
            b"tables/\xff\xfe.sql",
            b'0',
            b"x",
        ))));
        assert!(msg.contains("UTF-8"), "{msg}");
    }

    #[test]
    fn rejects_hostile_long_and_pax_paths() {
        let long = format!("postgresql/../../{}.sql", "a".repeat(120));
        let msg = invalid(read(&finish_raw(raw_long_entry(long.as_bytes(), b"x"))));
        assert!(msg.contains(".."), "{msg}");
        let long = format!("/{}/passwd", "a".repeat(120));
        invalid(read(&finish_raw(raw_long_entry(long.as_bytes(), b"x"))));
        invalid(read(&finish_raw(raw_pax_entry("../tables/x.sql", b"x"))));
    }

    #[test]
    fn rejects_links_devices_and_fifos() {
        for (kind, what) in [
            (b'2', "symlink"),
            (b'1', "hardlink"),
            (b'3', "character device"),
            (b'4', "block device"),
            (b'6', "fifo"),
            (b'V', "unsupported"),
        ] {
            let mut tar = tar_of(&[("tables/a.sql", b"ok")]);
            tar.truncate(tar.len() - 1024); // drop the end-of-archive blocks
            tar.extend(raw_entry(b"tables/link.sql", kind, b""));
            let msg = invalid(read(&finish_raw(tar)));
            assert!(msg.contains(what), "{what}: {msg}");
            assert!(msg.contains("tables/link.sql"), "{msg}");
        }
        // GNU sparse files are refused too (by us or by the tar reader).
        invalid(read(&finish_raw(raw_entry(b"tables/s.sql", b'S', b""))));
    }

    #[test]
    fn rejects_symlink_built_with_tar_api() {
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "tables/passwd.sql", "/etc/passwd")
            .unwrap();
        let msg = invalid(read(&gz(&b.into_inner().unwrap())));
        assert!(msg.contains("symlink"), "{msg}");
    }

    // ---- content and structure ---------------------------------------------

    #[test]
    fn rejects_non_utf8_content() {
        let msg = invalid(read(&tgz(&[("tables/a.sql", b"select '\xff\xfe';")])));
        assert!(
            msg.contains("tables/a.sql") && msg.contains("UTF-8"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_duplicate_paths() {
        let same = tgz(&[("tables/a.sql", b"1"), ("tables/a.sql", b"2")]);
        assert!(invalid(read(&same)).contains("duplicate"));
        let wrapper_vs_root = tgz(&[("postgresql/tables/a.sql", b"1"), ("tables/a.sql", b"1")]);
        assert!(invalid(read(&wrapper_vs_root)).contains("duplicate"));
        let dot_vs_plain = tgz(&[("./tables/a.sql", b"1"), ("tables//a.sql", b"1")]);
        assert!(invalid(read(&dot_vs_plain)).contains("duplicate"));
    }

    #[test]
    fn rejects_archive_without_schema_folders() {
        let msg = invalid(read(&tgz(&[("README.md", b"x"), ("docs/a.md", b"x")])));
        assert!(msg.contains("none of the schema folders"), "{msg}");
        invalid(read(&gz(&[0u8; 1024])));
        invalid(read(&gz(b"")));
        // A *file* called `tables` is not a folder.
        invalid(read(&tgz(&[("tables", b"x")])));
    }

    #[test]
    fn rejects_non_gzip_input() {
        assert!(invalid(read(b"")).contains("gzip"));
        assert!(invalid(read(b"PK\x03\x04 this is a zip")).contains("gzip"));
        // A plain, uncompressed tar.
        assert!(invalid(read(&tar_of(&sample_files()))).contains("gzip"));
    }

    #[test]
    fn rejects_corrupt_and_truncated_gzip() {
        let good = tgz(&sample_files());
        invalid(read(&good[..good.len() / 2]));
        invalid(read(&good[..10]));
        // Only the gzip trailer (CRC32 + size) missing: the tar is complete.
        invalid(read(&good[..good.len() - 8]));
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 0xff;
        invalid(read(&bad_crc));
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage after the gzip member");
        invalid(read(&trailing));
        let mut flipped = good;
        flipped[20] ^= 0x55;
        invalid(read(&flipped));
    }

    #[test]
    fn rejects_corrupt_tar_inside_gzip() {
        let msg = invalid(read(&gz(&[b'A'; 2048])));
        assert!(msg.contains("corrupt"), "{msg}");
        // A header cut short.
        let tar = tar_of(&sample_files());
        invalid(read(&gz(&tar[..700])));
    }

    // ---- caps --------------------------------------------------------------

    #[test]
    fn default_limits() {
        let l = Limits::default();
        assert_eq!(l.max_compressed_bytes, 16 * 1024 * 1024);
        assert_eq!(l.max_uncompressed_bytes, 64 * 1024 * 1024);
        assert_eq!(l.max_entries, 2000);
        assert_eq!(l.max_entry_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn compressed_cap_is_checked_first() {
        let limits = Limits {
            max_compressed_bytes: 10,
            ..Limits::default()
        };
        // Not even gzip: the size is checked before anything else.
        let msg = too_large(read_schema(&[0u8; 11], &limits));
        assert!(msg.contains("max_compressed_bytes (10)"), "{msg}");
        assert!(read_schema(&tgz(&sample_files()), &limits).is_err());
    }

    #[test]
    fn gzip_bomb_is_stopped_early() {
        // 200 MiB of zeros, deflated from one repeated buffer (~200 KiB).
        let chunk = vec![0u8; 1024 * 1024];
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        for _ in 0..200 {
            enc.write_all(&chunk).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1024 * 1024, "bomb is {} bytes", bomb.len());

        let start = Instant::now();
        let msg = too_large(read(&bomb));
        assert!(msg.contains("max_uncompressed_bytes"), "{msg}");
        assert!(start.elapsed() < Duration::from_secs(10));

        // Same bomb behind a valid schema file: still stopped.
        let tight = Limits {
            max_uncompressed_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let start = Instant::now();
        too_large(read_schema(&bomb, &tight));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn oversized_long_name_header_is_stopped_by_the_stream_cap() {
        // A GNU long-name entry claiming 1 TiB, backed by 2 MiB of data: the
        // tar reader buffers long names itself, so only the stream cap stops it.
        let limits = Limits {
            max_uncompressed_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let tar = raw_entry_sized(
            b"././@LongLink",
            b'L',
            &vec![b'a'; 2 * 1024 * 1024],
            1 << 40,
        );
        let msg = too_large(read_schema(&gz(&tar), &limits));
        assert!(msg.contains("max_uncompressed_bytes (1048576)"), "{msg}");
    }

    #[test]
    fn capped_reader_reads_at_most_cap_plus_one() {
        struct Counting(u64);
        impl Read for Counting {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(0);
                self.0 += buf.len() as u64;
                Ok(buf.len())
            }
        }
        let mut reader = CappedReader::new(Counting(0), 1000);
        let mut sink = Vec::new();
        assert!(reader.read_to_end(&mut sink).is_err());
        assert!(reader.exceeded);
        assert_eq!(reader.inner.0, 1001);
        assert!(sink.len() <= 1000);
        // Keeps failing without reading more.
        assert!(reader.read(&mut [0u8; 16]).is_err());
        assert_eq!(reader.inner.0, 1001);
        // Exactly at the cap is fine.
        let mut exact = CappedReader::new(&[7u8; 1000][..], 1000);
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 1000);
        assert!(!exact.exceeded);
    }

    #[test]
    fn too_many_entries() {
        let mut b = Builder::new(Vec::new());
        for i in 0..10_000 {
            let mut h = Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("tables/{i}.sql"), io::empty())
                .unwrap();
        }
        let archive = gz(&b.into_inner().unwrap());
        let msg = too_large(read(&archive));
        assert!(msg.contains("max_entries (2000)"), "{msg}");
    }

    #[test]
    fn directories_count_as_entries() {
        let limits = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        let archive = tgz(&[
            ("postgresql/", b""),
            ("tables/", b""),
            ("tables/a.sql", b"x"),
        ]);
        assert!(too_large(read_schema(&archive, &limits)).contains("max_entries (2)"));
        let ok = tgz(&[("tables/", b""), ("tables/a.sql", b"x")]);
        assert_eq!(read_schema(&ok, &limits).unwrap().file_count(), 1);
    }

    #[test]
    fn huge_header_size_is_rejected_before_reading() {
        // Claims 1 TiB but carries no data at all: refused from the header.
        let tar = raw_entry_sized(b"tables/huge.sql", b'0', b"", 1 << 40);
        let msg = too_large(read(&gz(&tar)));
        assert!(msg.contains("max_entry_bytes (4194304)"), "{msg}");
        // Ignored files are capped too.
        let tar = raw_entry_sized(b"README.md", b'0', b"", 4 * 1024 * 1024 + 1);
        too_large(read(&gz(&tar)));
        // Exactly at the cap is fine.
        let limits = Limits {
            max_entry_bytes: 3,
            ..Limits::default()
        };
        let archive = tgz(&[("tables/a.sql", b"abc")]);
        assert!(read_schema(&archive, &limits).is_ok());
        let archive = tgz(&[("tables/a.sql", b"abcd")]);
        too_large(read_schema(&archive, &limits));
    }

    #[test]
    fn sum_of_entry_sizes_is_capped() {
        let limits = Limits {
            max_uncompressed_bytes: 10 * 1024,
            max_entry_bytes: 4 * 1024,
            ..Limits::default()
        };
        let data = vec![b'x'; 3 * 1024];
        let files: Vec<(String, &[u8])> = (0..5)
            .map(|i| (format!("tables/{i}.sql"), &data[..]))
            .collect();
        let msg = too_large(read_schema(&tgz_owned(&files), &limits));
        assert!(msg.contains("max_uncompressed_bytes (10240)"), "{msg}");
    }

    #[test]
    fn errors_display_and_are_std_errors() {
        let e: Box<dyn std::error::Error> = Box::new(ArchiveError::TooLarge("cap".into()));
        assert_eq!(e.to_string(), "schema archive too large: cap");
        let e = ArchiveError::Invalid("bad".into());
        assert_eq!(e.to_string(), "invalid schema archive: bad");
    }

    #[test]
    fn error_messages_quote_long_paths_briefly() {
        let long = format!("/{}", "p".repeat(5000));
        let msg = invalid(read(&finish_raw(raw_long_entry(long.as_bytes(), b"x"))));
        assert!(msg.len() < 400, "{} bytes", msg.len());
    }

    #[test]
    fn never_panics_on_mangled_archives() {
        let good = tgz(&sample_files());
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut mangled = good.clone();
                mangled[i] ^= bit;
                let _ = read(&mangled);
            }
            let _ = read(&good[..i]);
        }
        // Mangled tar under a valid gzip layer.
        let tar = tar_of(&sample_files());
        for i in (0..tar.len()).step_by(7) {
            let mut mangled = tar.clone();
            mangled[i] = mangled[i].wrapping_add(0x31);
            let _ = read(&gz(&mangled));
        }
    }
}
