//! The router's one error type and its single mapping to the JSON error body
//! and HTTP status. PostgreSQL errors keep SQLSTATE, message, detail and hint.

pub use stonescriptdb_shared::error::pg_message;
use stonescriptdb_shared::error::{database_error_status, ErrorBody, ErrorCode};

#[derive(Debug)]
pub enum RouterError {
    BadRequest(String),
    NotFound(String),
    Unauthorized(String),
    UnsupportedMediaType(String),
    Forbidden(String),
    MethodNotAllowed(String),
    PayloadTooLarge(String),
    FunctionNotFound {
        database: String,
        message: String,
    },
    /// A procedure (or another routine `SELECT` cannot run) by that name.
    NotCallable {
        database: String,
        message: String,
    },
    Ambiguous {
        message: String,
        candidates: Vec<String>,
    },
    DatabaseNotFound {
        database: String,
    },
    DatabaseUnavailable {
        database: String,
        message: String,
    },
    PoolExhausted {
        database: String,
    },
    MigratorUnavailable(String),
    Db(Box<PgFailure>),
    Internal(String),
}

/// A PostgreSQL error raised while running a client's function.
#[derive(Debug)]
pub struct PgFailure {
    pub database: String,
    pub function: Option<String>,
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl RouterError {
    pub fn from_pg(database: &str, function: Option<&str>, e: &tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => Self::Db(Box::new(PgFailure {
                database: database.to_owned(),
                function: function.map(str::to_owned),
                sqlstate: db.code().code().to_owned(),
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
            })),
            None => Self::DatabaseUnavailable {
                database: database.to_owned(),
                message: pg_message(e),
            },
        }
    }

    /// Status and JSON body.
    pub fn to_wire(&self) -> (u16, ErrorBody) {
        use RouterError::*;
        let simple = |code: ErrorCode, msg: &str| (code.status(), ErrorBody::new(code, msg));
        match self {
            BadRequest(m) => simple(ErrorCode::InvalidRequest, m),
            NotFound(m) => simple(ErrorCode::NotFound, m),
            Forbidden(m) => simple(ErrorCode::Forbidden, m),
            Unauthorized(m) => simple(ErrorCode::Unauthorized, m),
            UnsupportedMediaType(m) => simple(ErrorCode::UnsupportedMediaType, m),
            MethodNotAllowed(m) => simple(ErrorCode::MethodNotAllowed, m),
            PayloadTooLarge(m) => simple(ErrorCode::PayloadTooLarge, m),
            MigratorUnavailable(m) => simple(ErrorCode::MigratorUnavailable, m),
            Internal(m) => simple(ErrorCode::InternalError, m),
            FunctionNotFound { database, message } | NotCallable { database, message } => {
                let code = match self {
                    NotCallable { .. } => ErrorCode::NotCallable,
                    _ => ErrorCode::FunctionNotFound,
                };
                (
                    code.status(),
                    ErrorBody::new(code, message.as_str()).with_database(database.as_str()),
                )
            }
            Ambiguous {
                message,
                candidates,
            } => {
                let code = ErrorCode::InvalidRequest;
                let mut body = ErrorBody::new(code, message.as_str());
                body.candidates = Some(candidates.clone());
                (code.status(), body)
            }
            DatabaseNotFound { database } => {
                let code = ErrorCode::DatabaseNotFound;
                (
                    code.status(),
                    ErrorBody::new(code, format!("database {database} does not exist"))
                        .with_database(database.as_str()),
                )
            }
            DatabaseUnavailable { database, message } => {
                let code = ErrorCode::DatabaseUnavailable;
                let mut body =
                    ErrorBody::new(code, format!("cannot reach database {database}: {message}"))
                        .with_database(database.as_str());
                body.cause = Some(message.clone());
                (code.status(), body)
            }
            PoolExhausted { database } => {
                let code = ErrorCode::PoolExhausted;
                (
                    code.status(),
                    ErrorBody::new(
                        code,
                        format!("no connection to {database} became free in time (connection limit reached); retry later"),
                    )
                    .with_database(database.as_str()),
                )
            }
            Db(f) => {
                let PgFailure {
                    database,
                    function,
                    sqlstate,
                    message,
                    detail,
                    hint,
                } = &**f;
                // `statement_timeout` (CALL_TIMEOUT_MS / CALL_TIMEOUTS, or
                // the function's own SET) cancelled it.
                let code = if sqlstate == "57014" && message.contains("statement timeout") {
                    ErrorCode::StatementTimeout
                } else {
                    ErrorCode::DatabaseError
                };
                let text = match function {
                    Some(f) => format!("{f} failed: {message}"),
                    None => message.clone(),
                };
                let mut body = ErrorBody::new(code, text).with_database(database.as_str());
                body.cause = Some(message.clone());
                body.sqlstate = Some(sqlstate.clone());
                body.detail = detail.clone();
                body.hint = hint.clone();
                let status = match code {
                    ErrorCode::DatabaseError => database_error_status(sqlstate),
                    _ => code.status(),
                };
                (status, body)
            }
        }
    }
}
