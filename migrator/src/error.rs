//! The migrator's one error type and its mapping to the JSON error body.

pub use stonescriptdb_shared::error::pg_message;
use stonescriptdb_shared::error::{ErrorBody, ErrorCode};

/// Where in the schema a deployment failed, and PostgreSQL's error.
#[derive(Debug, Clone, Default)]
pub struct StepFailure {
    pub database: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub statement: Option<usize>,
    pub message: String,
    pub sqlstate: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// PostgreSQL's own message.
    pub cause: Option<String>,
}

#[derive(Debug)]
pub enum MigratorError {
    BadRequest(String),
    NotFound(String),
    MethodNotAllowed(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    DatabaseNotFound(String),
    PlatformNotFound(String),
    SchemaNotFound(String),
    DatabaseAlreadyExists(String),
    /// A deployment step failed; the database is as before.
    Migration(Box<StepFailure>),
    DatabaseUnavailable(String),
    Internal(String),
}

impl MigratorError {
    pub fn to_wire(&self) -> (u16, ErrorBody) {
        use MigratorError::*;
        let simple = |code: ErrorCode, msg: &str| (code.status(), ErrorBody::new(code, msg));
        match self {
            BadRequest(m) => simple(ErrorCode::InvalidRequest, m),
            NotFound(m) => simple(ErrorCode::NotFound, m),
            MethodNotAllowed(m) => simple(ErrorCode::MethodNotAllowed, m),
            PayloadTooLarge(m) => simple(ErrorCode::PayloadTooLarge, m),
            UnsupportedMediaType(m) => simple(ErrorCode::UnsupportedMediaType, m),
            PlatformNotFound(m) => simple(ErrorCode::PlatformNotFound, m),
            SchemaNotFound(m) => simple(ErrorCode::SchemaNotFound, m),
            DatabaseUnavailable(m) => simple(ErrorCode::DatabaseUnavailable, m),
            Internal(m) => simple(ErrorCode::InternalError, m),
            DatabaseNotFound(db) => {
                let code = ErrorCode::DatabaseNotFound;
                (
                    code.status(),
                    ErrorBody::new(code, format!("database {db} does not exist"))
                        .with_database(db.as_str()),
                )
            }
            DatabaseAlreadyExists(db) => {
                let code = ErrorCode::DatabaseAlreadyExists;
                (
                    code.status(),
                    ErrorBody::new(code, format!("database {db} already exists"))
                        .with_database(db.as_str()),
                )
            }
            Migration(f) => {
                let code = ErrorCode::MigrationFailed;
                let mut body =
                    ErrorBody::new(code, f.message.as_str()).with_database(f.database.as_str());
                body.file = f.file.clone();
                body.line = f.line;
                body.statement = f.statement;
                body.sqlstate = f.sqlstate.clone();
                body.detail = f.detail.clone();
                body.hint = f.hint.clone();
                body.cause = f.cause.clone();
                (code.status(), body)
            }
        }
    }
}
