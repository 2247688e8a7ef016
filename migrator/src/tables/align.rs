//! Names the database chose differently for the same object: a desired
//! constraint or index the database has under another name (same table,
//! kind and definition) takes the database's name before diffing.

use super::model::{ident, Model};

/// Index definition without its name, to compare two indexes' substance.
fn unnamed_index(definition: &str, name: &str) -> String {
    definition.replacen(&format!("INDEX {} ON", ident(name)), "INDEX ON", 1)
}

/// Give desired constraints and indexes that the database has under another
/// name (same table, same kind, same definition) the database's name. The
/// names PostgreSQL chooses for unnamed constraints follow rules the DDL
/// reader imitates (`t_a_check`, `t_a_key`, `t_a_idx`); where truncation or
/// numbering makes them differ, the object is still the same one and must be
/// neither added twice nor reported as a change.
pub fn align_names(desired: &Model, observed: &Model) -> Model {
    let mut out = desired.clone();
    for (name, want) in out.tables.iter_mut() {
        let Some(have) = observed.tables.get(name) else {
            continue;
        };
        let wanted: Vec<String> = want.constraints.iter().map(|c| c.name.clone()).collect();
        for c in want.constraints.iter_mut() {
            if have.constraint(&c.name).is_some() {
                continue;
            }
            if let Some(h) = have.constraints.iter().find(|h| {
                h.kind == c.kind && h.definition == c.definition && !wanted.contains(&h.name)
            }) {
                c.name = h.name.clone();
            }
        }
        want.constraints.sort_by(|a, b| a.name.cmp(&b.name));
        let wanted: Vec<String> = want.indexes.iter().map(|i| i.name.clone()).collect();
        for i in want.indexes.iter_mut() {
            if have.index(&i.name).is_some() {
                continue;
            }
            let substance = unnamed_index(&i.definition, &i.name);
            if let Some(h) = have.indexes.iter().find(|h| {
                unnamed_index(&h.definition, &h.name) == substance && !wanted.contains(&h.name)
            }) {
                i.definition = h.definition.clone();
                i.name = h.name.clone();
            }
        }
        want.indexes.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::model::{Constraint, ConstraintKind, Index, QName, Table};

    fn table(constraints: &[(&str, &str)], indexes: &[(&str, &str)]) -> Table {
        Table {
            name: QName::public("t"),
            columns: Vec::new(),
            constraints: constraints
                .iter()
                .map(|(n, d)| Constraint {
                    name: (*n).into(),
                    kind: ConstraintKind::Check,
                    columns: Vec::new(),
                    references: None,
                    definition: (*d).into(),
                })
                .collect(),
            indexes: indexes
                .iter()
                .map(|(n, d)| Index {
                    name: (*n).into(),
                    unique: false,
                    definition: d.replace("NAME", n),
                })
                .collect(),
        }
    }

    fn model(t: Table) -> Model {
        let mut m = Model::default();
        m.tables.insert(t.name.clone(), t);
        m
    }

    #[test]
    fn same_object_under_another_name_takes_the_database_name() {
        let idx = "CREATE INDEX NAME ON public.t USING btree (a)";
        let desired = model(table(
            &[("t_check", "CHECK ((a > 0))")],
            &[("t_a_idx", idx)],
        ));
        let observed = model(table(
            &[("t_check1", "CHECK ((a > 0))")],
            &[("t_a_idx1", idx)],
        ));
        let aligned = align_names(&desired, &observed);
        let t = &aligned.tables[&QName::public("t")];
        assert_eq!(t.constraints[0].name, "t_check1");
        assert_eq!(t.indexes[0].name, "t_a_idx1");
        assert_eq!(
            t.indexes[0].definition,
            "CREATE INDEX t_a_idx1 ON public.t USING btree (a)"
        );
    }

    #[test]
    fn different_definitions_or_declared_names_are_left_alone() {
        let desired = model(table(
            &[("t_check", "CHECK ((a > 0))"), ("t_b", "CHECK ((b > 0))")],
            &[],
        ));
        // t_b is declared itself, and t_other has a different definition
        let observed = model(table(
            &[("t_b", "CHECK ((a > 0))"), ("t_other", "CHECK ((a > 1))")],
            &[],
        ));
        let aligned = align_names(&desired, &observed);
        let names: Vec<&str> = aligned.tables[&QName::public("t")]
            .constraints
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["t_b", "t_check"]);
    }
}
