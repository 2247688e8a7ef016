//! The control catalog (docs/OPERATIONS.md, "The control catalog"): a gateway-owned database (`CATALOG_DB`,
//! default `stonescriptdb_gateway`) on the admin server recording platforms
//! (with their roles), every database the gateway created or adopted (owner,
//! kind, ids, server, schema version, state, generation), stored schema
//! versions, and every deployment (who asked, what, when, result). It is the
//! single source of who owns what: no route infers ownership from a name.
//!
//! * Creating a database is crash-consistent: the row is recorded
//!   `creating` under a lease (an advisory lock held by the creating
//!   session), the database is created and deployed, then the row turns
//!   `ready`. A row whose lease is free belongs to a migrator that died; it
//!   is resolved at start (and when the same name is created again): the
//!   half-made database is dropped and the row removed. A live migrator's
//!   creation is never touched.
//! * Every deployment is recorded `running` under a lease and finished with
//!   its outcome. A deployment that changed something announces it: the
//!   database takes the next catalog generation and a notification goes out
//!   on `CHANNEL` in the same transaction, so routers drop what they cached.
//!   If the migrator dies between the database's commit and that, the lease
//!   is free while the row says `running`: routers treat that as an
//!   announcement when they poll, and the next migrator to start records it
//!   `interrupted` and announces it.
//!
//! One room per concern, each an `impl Catalog` with the statements it
//! runs; rooms use only rooms listed before them:
//! * `handle` — the [`Catalog`] handle: opening, the pool, the versioned
//!   DDL (`v1.sql` … `v4.sql`) applied under an advisory lock; the error
//!   mapping and timestamp text every room shares.
//! * `leases` — advisory-lock leases guarding creations and deployments.
//! * `generations` — announcing a committed change to routers.
//! * `platforms` — platforms and roles, name-space rules, token generations.
//! * `databases` — lookups, creation under a lease, adoption, forgetting.
//! * `deployments` — deployment records and their outcome; the history.
//! * `jobs` — `/v2/migrate-all` jobs under a lease, one running per
//!   platform and schema, their results; a dead migrator's job `interrupted`.
//! * `drops` — a database dropped under a lease (`dropping`, announced,
//!   recorded), finished or cancelled; a stopped migrator's drop claimed.
//! * `leftovers` — at start, what a stopped migrator left, resolved.
//! * `schemas` — stored v2 schema versions, templates, the kept v1 archives.
//! * `imports` — older installations imported once.
//! * `inventory` — what the listings show: a platform's databases with
//!   their newest deployment, platforms with the API they use.
//!
//! This file only declares the rooms and names what the rest of the
//! migrator uses.

mod databases;
mod deployments;
mod drops;
mod generations;
mod handle;
mod imports;
mod inventory;
mod jobs;
mod leases;
mod leftovers;
mod platforms;
mod schemas;

pub use databases::{CreateRefused, Creation, Database, NewDatabase, SCRATCH_PREFIX};
pub use deployments::{Caller, DeploymentStart, Outcome};
pub use drops::Dropping;
pub use handle::Catalog;
pub use jobs::{JobRow, JobStart, RunningJob};
pub use platforms::Platform;
pub use schemas::SchemaVersion;
pub use schemas::V1Archive;
