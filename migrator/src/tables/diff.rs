//! Pure diff of table models (being written).
