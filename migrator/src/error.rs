//! The migrator's one error type and its mapping to the JSON error body.

pub use stonescriptdb_shared::error::pg_message;
use stonescriptdb_shared::error::{ErrorBody, ErrorCode};
use stonescriptdb_shared::wire::{PlanStep, SchemaValidation};

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

impl StepFailure {
    /// A failure in `database`, with what PostgreSQL said (SQLSTATE, detail,
    /// hint, its message as `cause`) when `e` is its error; the caller says
    /// where (`file`, `line`, `statement`) and why (`message`).
    pub fn new(database: &str, message: String, e: Option<&tokio_postgres::Error>) -> Self {
        let db = e.and_then(|e| e.as_db_error());
        StepFailure {
            database: database.to_owned(),
            message,
            sqlstate: db.map(|d| d.code().code().to_owned()),
            detail: db.and_then(|d| d.detail().map(str::to_owned)),
            hint: db.and_then(|d| d.hint().map(str::to_owned)),
            cause: e.map(pg_message),
            ..StepFailure::default()
        }
    }
}

/// Why a deployment refused `tables/` changes (409 `schema_validation_failed`).
#[derive(Debug, Clone, Default)]
pub struct SchemaRefusal {
    pub database: String,
    pub validation: SchemaValidation,
    /// The changes that would run, in order.
    pub plan: Vec<PlanStep>,
    /// Set when the refusal comes after the migrations ran (the migrations
    /// left a table different from `tables/` in a destructive way).
    pub after_migrations: bool,
}

#[derive(Debug)]
pub enum MigratorError {
    BadRequest(String),
    /// No bearer token, or one that is not configured.
    Unauthorized(String),
    /// A token that does not grant this platform or route.
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    DatabaseNotFound(String),
    PlatformNotFound(String),
    /// `/platform/register` of a platform registered for v2 already.
    PlatformAlreadyRegistered(String),
    SchemaNotFound(String),
    DatabaseAlreadyExists(String),
    /// The database name falls under another registered platform's longer
    /// name prefix (which is not named).
    NameReserved(String),
    /// `/admin/database/create`: the name is held by something other than
    /// this platform's database of that schema and uuid.
    NameCollision(String),
    /// `/v2/migrate-all/{job_id}`: no such job (or another platform's).
    JobNotFound(String),
    /// `POST /migrate` `version`: no kept v1 archive has that number.
    VersionNotFound(String),
    /// `/v2/migrate-all`: a job of this platform and schema is running (its id).
    JobRunning(String),
    /// The database is being created by another request: retry shortly
    /// (answered with `Retry-After`).
    BeingCreated(String),
    /// A deployment step failed; the database is as before.
    Migration(Box<StepFailure>),
    /// `tables/` asks for dataloss or incompatible changes and `force` was
    /// not given: nothing was applied.
    SchemaValidation(Box<SchemaRefusal>),
    DatabaseUnavailable(String),
    Internal(String),
    /// A drop waited for a running deployment of the database and gave up
    /// (the message says which database).
    DeploymentRunning(String),
    /// `backup=true`: the backup could not be written (the message says
    /// why, with pg_dump's own error); nothing was dropped.
    BackupFailed(String),
}

impl MigratorError {
    pub fn to_wire(&self) -> (u16, ErrorBody) {
        use MigratorError::*;
        let simple = |code: ErrorCode, msg: &str| (code.status(), ErrorBody::new(code, msg));
        match self {
            BadRequest(m) => simple(ErrorCode::InvalidRequest, m),
            Unauthorized(m) => simple(ErrorCode::Unauthorized, m),
            Forbidden(m) => simple(ErrorCode::Forbidden, m),
            NotFound(m) => simple(ErrorCode::NotFound, m),
            MethodNotAllowed(m) => simple(ErrorCode::MethodNotAllowed, m),
            PayloadTooLarge(m) => simple(ErrorCode::PayloadTooLarge, m),
            UnsupportedMediaType(m) => simple(ErrorCode::UnsupportedMediaType, m),
            PlatformNotFound(m) => simple(ErrorCode::PlatformNotFound, m),
            PlatformAlreadyRegistered(p) => simple(
                ErrorCode::PlatformAlreadyRegistered,
                &format!("Platform '{p}' is already registered"),
            ),
            SchemaNotFound(m) => simple(ErrorCode::SchemaNotFound, m),
            VersionNotFound(m) => simple(ErrorCode::VersionNotFound, m),
            DatabaseUnavailable(m) => simple(ErrorCode::DatabaseUnavailable, m),
            Internal(m) => simple(ErrorCode::InternalError, m),
            DeploymentRunning(m) => simple(ErrorCode::DeploymentRunning, m),
            BackupFailed(m) => simple(ErrorCode::BackupFailed, m),
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
            NameCollision(db) => {
                let code = ErrorCode::DatabaseNameCollision;
                (
                    code.status(),
                    ErrorBody::new(
                        code,
                        format!("database name {db} is already held by something other than this platform's database of that schema and uuid (another platform's, a reserved name, a v1 or adopted database); choose another schema name or uuid"),
                    )
                    .with_database(db.as_str()),
                )
            }
            BeingCreated(db) => {
                let code = ErrorCode::DatabaseUnavailable;
                (
                    code.status(),
                    ErrorBody::new(
                        code,
                        format!("database {db} is being created by another request; retry in a few seconds"),
                    )
                    .with_database(db.as_str()),
                )
            }
            JobNotFound(id) => simple(ErrorCode::JobNotFound, &format!("no job {id}")),
            JobRunning(id) => {
                let code = ErrorCode::JobAlreadyRunning;
                let mut body = ErrorBody::new(
                    code,
                    format!("job {id} of this platform and schema is running: poll GET /v2/migrate-all/{id}"),
                );
                body.job_id = Some(id.clone());
                (code.status(), body)
            }
            NameReserved(db) => {
                let code = ErrorCode::NameReserved;
                (
                    code.status(),
                    ErrorBody::new(
                        code,
                        format!("database name {db} is reserved: it falls under another registered platform's name prefix; choose another tenant id or schema name"),
                    )
                    .with_database(db.as_str()),
                )
            }
            SchemaValidation(r) => {
                let code = ErrorCode::SchemaValidationFailed;
                let v = &r.validation;
                let mut list: Vec<String> = v.dataloss_changes.clone();
                list.extend(v.incompatible_changes.iter().cloned());
                let when = if r.after_migrations {
                    "after the migrations ran, tables/ still differs from the database in ways that lose data"
                } else {
                    "tables/ asks for changes that lose data or change types incompatibly"
                };
                let msg = format!(
                    "{when} ({}); nothing was applied. Deploy with force=true to apply them: {}",
                    r.database,
                    list.join("; ")
                );
                let mut body = ErrorBody::new(code, msg).with_database(r.database.as_str());
                body.schema_validation = Some(v.clone());
                body.details = Some(serde_json::json!({
                    "safe_changes": v.safe_changes,
                    "dataloss_changes": v.dataloss_changes,
                    "incompatible_changes": v.incompatible_changes,
                    "plan": r.plan,
                }));
                (code.status(), body)
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

impl MigratorError {
    /// The report of a database whose deployment failed with this error:
    /// the error's body, and for a refused `tables/` change its
    /// classification and plan.
    pub fn report(&self, database: &str) -> stonescriptdb_shared::wire::DeploymentReport {
        let mut report = stonescriptdb_shared::wire::DeploymentReport {
            database: database.to_owned(),
            status: stonescriptdb_shared::wire::DeployStatus::Failed,
            error: Some(self.to_wire().1),
            ..Default::default()
        };
        if let MigratorError::SchemaValidation(r) = self {
            report.schema_validation = r.validation.clone();
            report.plan = r.plan.clone();
        }
        report
    }
}

impl From<stonescriptdb_shared::auth::Denied> for MigratorError {
    fn from(d: stonescriptdb_shared::auth::Denied) -> Self {
        match d {
            stonescriptdb_shared::auth::Denied::Unauthorized(m) => Self::Unauthorized(m),
            stonescriptdb_shared::auth::Denied::Forbidden(m) => Self::Forbidden(m),
        }
    }
}

/// SQL that does not read: 400 `invalid_request` saying where
/// (`<file> line <n>: <message>`). The one mapping of the SQL readers' errors.
impl From<crate::sql::SqlError> for MigratorError {
    fn from(e: crate::sql::SqlError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

/// A name that broke the naming rules: 400 naming the rule.
pub fn bad_name(e: stonescriptdb_shared::names::NameError) -> MigratorError {
    MigratorError::BadRequest(e.to_string())
}
