//! What earlier deployments recorded of `tables/` in the database's
//! `_stonescriptdb_gateway_tables`: the declared model, one row per table
//! and per sequence, read back by the deployment's tables step and by
//! verification.

use super::model::{Model, QName, Sequence, Table};

/// Name of a sequence's row in `_stonescriptdb_gateway_tables`.
pub const SEQUENCE_ROW: &str = "sequence:";

/// A stand-in for a table recorded before declared models were kept: only
/// its name is known.
fn name_only(name: QName) -> Table {
    Table {
        name,
        ..Table::default()
    }
}

/// Rows `(name, declared::text, folder_checksum)` of
/// `_stonescriptdb_gateway_tables` as the declared model, and per row the
/// folder checksum it was recorded with (None for rows without a model).
/// Tables recorded before models were kept are known by name only.
pub fn declared_model(rows: &[tokio_postgres::Row]) -> (Model, Vec<Option<String>>) {
    let mut model = Model::default();
    let mut sums = Vec::new();
    for r in rows {
        let name: String = r.get(0);
        let declared: Option<String> = r.get(1);
        sums.push(if declared.is_some() { r.get(2) } else { None });
        if name.starts_with(SEQUENCE_ROW) {
            if let Some(s) = declared.and_then(|d| serde_json::from_str::<Sequence>(&d).ok()) {
                model.sequences.insert(s.name.clone(), s);
            }
            continue;
        }
        let table = match declared.and_then(|d| serde_json::from_str::<Table>(&d).ok()) {
            Some(t) => t,
            None => {
                let (sc, n) = name.split_once('.').unwrap_or(("public", name.as_str()));
                name_only(QName::new(sc, n))
            }
        };
        model.tables.insert(table.name.clone(), table);
    }
    (model, sums)
}
