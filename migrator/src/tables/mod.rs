//! Declarative `tables/`: the folder is the end state of every table it
//! declares. `ddl` reads it into a [`model::Model`], `introspect` reads the
//! database into the same model, `diff` turns (desired, observed, previously
//! declared) into an ordered plan of classified steps, and `reconcile` runs
//! that inside a deployment (SPEC §5).

pub mod ddl;
pub mod diff;
pub mod introspect;
pub mod model;
