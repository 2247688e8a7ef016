//! The command line: one argh struct per command, each with its `--help`.

use std::path::PathBuf;

use argh::FromArgs;

#[derive(FromArgs, Debug)]
/// stonescriptdb: deploy schemas to a StoneScriptDB Gateway, call its
/// functions, list, roll back and drop databases, and check a schema folder
/// offline. Environment: GATEWAY_URL (default http://127.0.0.1:9000),
/// GATEWAY_TOKEN (a deploy token of the platform, or the admin token),
/// GATEWAY_CALL_TOKEN (for `call`; falls back to GATEWAY_TOKEN),
/// GATEWAY_CA_FILE (PEM of the CA that signed an https gateway's
/// certificate, when it is not a public one). Exits non-zero with the
/// gateway's message when a request fails.
pub struct Cli {
    /// print the gateway's JSON answer as it is, instead of a summary
    #[argh(switch)]
    pub json: bool,
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Register(Register),
    Migrate(Migrate),
    Create(Create),
    Call(Call),
    Databases(Databases),
    Versions(Versions),
    Rollback(Rollback),
    Drop(Drop),
    Deployments(Deployments),
    Functions(Functions),
    Status(Status),
    Pull(Pull),
    Check(Check),
}

#[derive(FromArgs, Debug)]
/// Deploy a schema folder: v1 POST /register (creates the tenant's database
/// when missing), or with --schema store it as the next version of a v2
/// schema (POST /platform/<p>/schema).
#[argh(subcommand, name = "register")]
pub struct Register {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// the tenant (v1; none: <platform>_main)
    #[argh(option)]
    pub tenant: Option<String>,
    /// store the folder as a version of this v2 schema instead
    #[argh(option)]
    pub schema: Option<String>,
    /// show what would change, change nothing (v1)
    #[argh(switch)]
    pub dry_run: bool,
    /// the schema folder (the one holding tables/, functions/, …)
    #[argh(positional)]
    pub dir: PathBuf,
}

#[derive(FromArgs, Debug)]
/// Migrate: v1 POST /migrate of a folder (one tenant, or every database of
/// the platform), or a kept v1 archive with --version; with --schema a v2
/// fleet migration (POST /v2/migrate) of the schema's databases, with
/// progress as each database finishes.
#[argh(subcommand, name = "migrate")]
pub struct Migrate {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// one v1 tenant only
    #[argh(option)]
    pub tenant: Option<String>,
    /// a v2 schema: migrate its databases to a stored version
    #[argh(option)]
    pub schema: Option<String>,
    /// with --schema: one database id only
    #[argh(option)]
    pub database: Option<String>,
    /// a stored version (v2: a number or `latest`, which unpins; v1: a kept
    /// archive's number, instead of a folder)
    #[argh(option)]
    pub version: Option<String>,
    /// show what would change, change nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// apply data-losing table changes too
    #[argh(switch)]
    pub force: bool,
    /// with --schema: consent to one class of data-losing change
    /// (drop_table, drop_column, modify_column_type, add_not_null_column,
    /// set_not_null); repeatable
    #[argh(option)]
    pub allow: Vec<String>,
    /// the schema folder (v1)
    #[argh(positional)]
    pub dir: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// Create a v2 database from a stored schema (POST /database/create);
/// --version pins it to that version.
#[argh(subcommand, name = "create")]
pub struct Create {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// the stored schema
    #[argh(option)]
    pub schema: String,
    /// the database id (<platform>_<schema>_<id>)
    #[argh(option)]
    pub database: String,
    /// a stored version to pin it to (default: the latest, unpinned)
    #[argh(option)]
    pub version: Option<String>,
    /// show what would be created, create nothing
    #[argh(switch)]
    pub dry_run: bool,
}

#[derive(FromArgs, Debug)]
/// Call a function (POST /call). Each argument is a JSON value when it
/// reads as one (42, true, null, "x", [1,2], an object), else a string.
#[argh(subcommand, name = "call")]
pub struct Call {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// a v1 tenant (none and no --database: <platform>_main)
    #[argh(option)]
    pub tenant: Option<String>,
    /// a full database name the platform owns
    #[argh(option)]
    pub database: Option<String>,
    /// the function (`name` or `schema.name`)
    #[argh(positional)]
    pub function: String,
    /// its arguments, in order
    #[argh(positional, greedy)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
/// List a platform's databases: kind, state, schema version, pinning, last
/// deployment (GET /admin/databases).
#[argh(subcommand, name = "databases")]
pub struct Databases {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// add each database's size (a query per database)
    #[argh(switch)]
    pub size: bool,
}

#[derive(FromArgs, Debug)]
/// List stored versions: of a v2 schema with --schema, else the platform's
/// kept v1 archives.
#[argh(subcommand, name = "versions")]
pub struct Versions {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// a v2 schema
    #[argh(option)]
    pub schema: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Roll back to an older version: a v2 schema's databases (--schema) or a
/// v1 platform's tenants (a kept archive). Migrations run forward only;
/// the report lists what stayed.
#[argh(subcommand, name = "rollback")]
pub struct Rollback {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// the version to go back to
    #[argh(option)]
    pub version: u32,
    /// a v2 schema
    #[argh(option)]
    pub schema: Option<String>,
    /// with --schema: one database id only
    #[argh(option)]
    pub database: Option<String>,
    /// v1: one tenant only
    #[argh(option)]
    pub tenant: Option<String>,
    /// show what would change, change nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// apply data-losing table changes too
    #[argh(switch)]
    pub force: bool,
}

#[derive(FromArgs, Debug)]
/// Drop a database (DELETE /admin/databases/<name>) or offboard a whole
/// platform with --platform (DELETE /admin/platforms/<p>, admin token).
#[argh(subcommand, name = "drop")]
pub struct Drop {
    /// the database to drop
    #[argh(option)]
    pub database: Option<String>,
    /// offboard this platform: its databases, templates, catalog rows, roles
    #[argh(option)]
    pub platform: Option<String>,
    /// the same name again: nothing is dropped without it
    #[argh(option)]
    pub confirm: String,
    /// first write a pg_dump of each database into the gateway's BACKUP_DIR
    #[argh(switch)]
    pub backup: bool,
}

#[derive(FromArgs, Debug)]
/// The deployment history, newest first (GET /admin/deployments).
#[argh(subcommand, name = "deployments")]
pub struct Deployments {
    /// one platform's
    #[argh(option)]
    pub platform: Option<String>,
    /// one database's
    #[argh(option)]
    pub database: Option<String>,
    /// at most this many (default 20)
    #[argh(option, default = "20")]
    pub limit: u32,
}

#[derive(FromArgs, Debug)]
/// The functions /call can reach in a database, with their signatures
/// (GET /platform/<p>/functions).
#[argh(subcommand, name = "functions")]
pub struct Functions {
    /// the platform
    #[argh(option)]
    pub platform: String,
    /// a v1 tenant (none and no --database: <platform>_main)
    #[argh(option)]
    pub tenant: Option<String>,
    /// a full database name the platform owns
    #[argh(option)]
    pub database: Option<String>,
}

#[derive(FromArgs, Debug)]
/// The gateway's health: PostgreSQL, the migrator, version, pools.
#[argh(subcommand, name = "status")]
pub struct Status {}

#[derive(FromArgs, Debug)]
/// Export a live database as a schema folder (GET
/// /admin/databases/<name>/export, admin token) into a new folder, with
/// export-report.json beside the folders, and print what moved where.
#[argh(subcommand, name = "pull")]
pub struct Pull {
    /// the database (its full name)
    #[argh(option)]
    pub database: String,
    /// only if the catalog says this platform owns the database
    #[argh(option)]
    pub platform: Option<String>,
    /// the folder to create (it must not exist, or be empty)
    #[argh(option)]
    pub out: PathBuf,
}

#[derive(FromArgs, Debug)]
/// Read and validate a schema folder offline, with the migrator's own
/// reader: folders, file names, statements a folder refuses, unterminated
/// quotes or bodies, names — the message, file and line the gateway would
/// give. What only PostgreSQL can judge (bodies, table definitions against
/// a database) is checked at deployment.
#[argh(subcommand, name = "check")]
pub struct Check {
    /// the schema folder
    #[argh(positional)]
    pub dir: PathBuf,
}
