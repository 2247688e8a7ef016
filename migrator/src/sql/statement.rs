//! One statement of a file, and the count of statements the readers have
//! read (`stonescriptdb_migrator_sql_reads_total`).

use std::sync::atomic::{AtomicU64, Ordering};

/// How many statements the readers below have read (normalized, or parsed as
/// a routine, type, table, foreign-key alter or INSERT) since the process started: an upload is
/// read once, whatever number of databases it is deployed into. Served as
/// `stonescriptdb_migrator_sql_reads_total`.
static READS: AtomicU64 = AtomicU64::new(0);

/// See [`READS`].
pub fn reads() -> u64 {
    READS.load(Ordering::Relaxed)
}

pub(crate) fn read_one() {
    READS.fetch_add(1, Ordering::Relaxed);
}

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement without its terminating ';'. It runs from the first to the last token that
    /// is not a comment: comments inside are kept verbatim, leading and trailing comments are not
    /// part of it (so `format!("{text};")` can never end up inside a `--` comment).
    pub text: String,
    /// 1-based line where the statement starts (first non-whitespace, non-comment character).
    pub line: usize,
}
