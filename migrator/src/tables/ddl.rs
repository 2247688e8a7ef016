//! DDL reader for `tables/` (being written).
