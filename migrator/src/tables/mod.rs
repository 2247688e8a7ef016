//! Everything about `tables/`, the declarative end state of every table it
//! declares (docs/SCHEMA.md), in one place: `model` (the table model every
//! part shares), `reader` (the folder's DDL read into the model) and
//! `create_table` (a `tables/` file's CREATE TABLE: references, foreign keys
//! moved out to break cycles), `introspect` (the database read into the same
//! model), `align` (names the database chose differently), `diff` (desired +
//! observed + previously declared → ordered, classified steps, pure),
//! `recorded` (the declared model earlier deployments recorded), and `step`
//! (the deployment's tables phase: observe, then plan into
//! `crate::step::Step`s). None of it uses the archive's model
//! (the `schema` module): the phase is handed what it needs.

pub mod align;
pub mod create_table;
pub mod diff;
pub mod introspect;
pub mod model;
pub mod reader;
pub mod recorded;
pub mod step;
