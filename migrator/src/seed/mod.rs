//! Seeding in one place (docs/SCHEMA.md, "Seeders"): `inserts` (a
//! seeder's INSERT statements taken apart), `rows` (seeded rows checked row
//! by row against a table, and the statement that inserts the missing ones),
//! and `step` (the deployment's seeders phase: observe, then plan into
//! `crate::step::Step`s, and the report's results).

pub mod inserts;
pub mod rows;
pub mod step;

pub use inserts::{parse_insert, Insert};
pub use rows::{check, results};
