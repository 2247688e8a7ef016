//! Error codes of the HTTP API and their status, plus the JSON error body
//! (`{"error": code, "message": text, ...context}`) every route answers with.

use serde::{Deserialize, Serialize};

/// Every error code the API can answer with (docs/API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    DatabaseAlreadyExists,
    DatabaseNameCollision,
    NameReserved,
    DatabaseNotFound,
    PlatformNotFound,
    SchemaNotFound,
    JobNotFound,
    FunctionNotFound,
    /// `POST /migrate` `version`: no kept v1 archive has that number.
    VersionNotFound,
    NotCallable,
    PlatformAlreadyRegistered,
    JobAlreadyRunning,
    MigrationFailed,
    SchemaValidationFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    MigratorUnavailable,
    PoolExhausted,
    DatabaseUnavailable,
    DatabaseError,
    StatementTimeout,
    InternalError,
    /// A deployment of the database to drop is running (409).
    DeploymentRunning,
    /// `backup=true`: the backup could not be written; nothing was dropped (500).
    BackupFailed,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::DatabaseAlreadyExists => "database_already_exists",
            Self::DatabaseNameCollision => "database_name_collision",
            Self::NameReserved => "name_reserved",
            Self::DatabaseNotFound => "database_not_found",
            Self::PlatformNotFound => "platform_not_found",
            Self::SchemaNotFound => "schema_not_found",
            Self::JobNotFound => "job_not_found",
            Self::FunctionNotFound => "function_not_found",
            Self::VersionNotFound => "version_not_found",
            Self::NotCallable => "not_callable",
            Self::PlatformAlreadyRegistered => "platform_already_registered",
            Self::JobAlreadyRunning => "job_already_running",
            Self::MigrationFailed => "migration_failed",
            Self::SchemaValidationFailed => "schema_validation_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MigratorUnavailable => "migrator_unavailable",
            Self::PoolExhausted => "pool_exhausted",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::DatabaseError => "database_error",
            Self::StatementTimeout => "statement_timeout",
            Self::InternalError => "internal_error",
            Self::DeploymentRunning => "deployment_running",
            Self::BackupFailed => "backup_failed",
        }
    }

    /// The HTTP status this code is answered with. `database_error` is 500 here;
    /// see [`database_error_status`] for the SQLSTATE-dependent status.
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::NotCallable => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound
            | Self::DatabaseNotFound
            | Self::PlatformNotFound
            | Self::SchemaNotFound
            | Self::JobNotFound
            | Self::FunctionNotFound
            | Self::VersionNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::DatabaseAlreadyExists
            | Self::NameReserved
            | Self::PlatformAlreadyRegistered
            | Self::JobAlreadyRunning
            | Self::MigrationFailed
            | Self::SchemaValidationFailed
            | Self::DeploymentRunning => 409,
            Self::PayloadTooLarge => 413,
            Self::DatabaseNameCollision => 422,
            Self::UnsupportedMediaType => 415,
            Self::MigratorUnavailable | Self::PoolExhausted | Self::DatabaseUnavailable => 503,
            Self::DatabaseError | Self::InternalError | Self::BackupFailed => 500,
            Self::StatementTimeout => 504,
        }
    }
}

/// Status for a PostgreSQL error raised while running a client's function:
/// 400 for errors the caller caused (bad input, constraint violations,
/// `RAISE EXCEPTION`, plpgsql's no_data/too_many_rows/assert), 500 otherwise.
pub fn database_error_status(sqlstate: &str) -> u16 {
    let class = sqlstate.get(..2).unwrap_or("");
    match class {
        // data exception, integrity constraint violation, SQL routine exception,
        // with check option violation, PL/pgSQL errors (P0001 raise_exception, ...)
        "22" | "23" | "2F" | "44" | "P0" => 400,
        // invalid text representation etc. already in 22; 42804/42883 from a
        // caller's argument mismatch are answered before execution.
        _ => 500,
    }
}

/// PostgreSQL's own message for a driver error: the server's text when the
/// server sent one, else the client-side error with its causes.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            msg
        }
    }
}

/// Changes found by comparing `tables/` with a database, by class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaValidation {
    pub safe_changes: Vec<String>,
    pub dataloss_changes: Vec<String>,
    pub incompatible_changes: Vec<String>,
}

/// The JSON error body. Context fields are omitted when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error code; the HTTP status follows from it.
    #[cfg_attr(feature = "openapi", schema(value_type = ErrorCode))]
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// PostgreSQL's own message (e.g. the text of a `RAISE EXCEPTION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Candidate signatures when an overloaded function call is ambiguous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<String>>,
    /// Schema file a deployment failed in (`migrations/002_orders.sql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line of the failing statement in that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based index of the failing statement in that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<usize>,
    /// `schema_validation_failed`: the changes `tables/` asks for, by class
    /// (the `schema_validation` object docs/API.md describes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_validation: Option<SchemaValidation>,
    /// Further structured context (per-database results, blocking changes...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// `job_already_running`: the running job to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: code.as_str().to_owned(),
            message: message.into(),
            database: None,
            cause: None,
            sqlstate: None,
            detail: None,
            hint: None,
            candidates: None,
            file: None,
            line: None,
            statement: None,
            schema_validation: None,
            details: None,
            job_id: None,
        }
    }

    pub fn with_database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ErrorCode::Forbidden.status(), 403);
        assert_eq!(ErrorCode::PoolExhausted.status(), 503);
        assert_eq!(ErrorCode::SchemaValidationFailed.status(), 409);
        assert_eq!(ErrorCode::NotCallable.status(), 400);
        assert_eq!(ErrorCode::PlatformAlreadyRegistered.status(), 409);
        assert_eq!(ErrorCode::JobAlreadyRunning.status(), 409);
        assert_eq!(database_error_status("P0001"), 400);
        assert_eq!(database_error_status("22P02"), 400);
        assert_eq!(database_error_status("23505"), 400);
        assert_eq!(database_error_status("53300"), 500);
        assert_eq!(database_error_status("XX000"), 500);
    }

    #[test]
    fn codes_serialize_as_their_wire_name() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::DatabaseNotFound,
            ErrorCode::MigratorUnavailable,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
        let body =
            ErrorBody::new(ErrorCode::FunctionNotFound, "no such function").with_database("a_main");
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["error"], "function_not_found");
        assert_eq!(v["database"], "a_main");
        assert!(v.get("sqlstate").is_none());
    }
}
