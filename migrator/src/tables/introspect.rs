//! Catalog reader (being written).
