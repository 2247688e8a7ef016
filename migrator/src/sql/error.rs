//! The error every SQL reader returns: the file when known, the line, and
//! what is wrong; the migrator's error type maps it once.

use std::fmt;

/// An error in SQL text: the file when known, the 1-based line where the problem starts, and
/// what is wrong. Every reader of this module returns it; the migrator's error type maps it once
/// to a 400 (`<file> line <n>: <message>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub file: Option<String>,
    pub line: usize,
    pub message: String,
}

impl SqlError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        let message = message.into();
        SqlError {
            file: None,
            line,
            message,
        }
    }

    /// The error placed in `file` (its line unchanged).
    pub fn in_file(self, file: &str) -> Self {
        SqlError {
            file: Some(file.to_owned()),
            ..self
        }
    }

    /// The error of a statement that starts on `line` of `file`, said at that line (the
    /// statement readers count lines from the statement's own start).
    pub fn at(self, file: &str, line: usize) -> Self {
        SqlError {
            file: Some(file.to_owned()),
            line,
            ..self
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file} line {}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for SqlError {}
