//! Checks on the tree itself (rust-analyzer's tidy tests are the model):
//! docs/ARCHITECTURE.md's code map names exactly the modules the crates
//! have, and `shared` does no I/O.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The crates of the code map: its heading, and the source folder.
const CRATES: &[(&str, &str)] = &[
    ("### `shared/` ", "shared/src"),
    ("### `shared/startup/` ", "shared/startup/src"),
    ("### `router/` ", "router/src"),
    ("### `migrator/` ", "migrator/src"),
];

/// Module names the code map lists under `heading` (`- \`name\`` bullets,
/// several per bullet allowed: "- `multipart`, `form` — …").
fn mapped(doc: &str, heading: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(start) = doc.find(heading) else {
        return out;
    };
    for line in doc[start..].lines().skip(1) {
        if line.starts_with("### ") || line.starts_with("## ") {
            break;
        }
        let Some(rest) = line.strip_prefix("- ") else {
            continue;
        };
        let names = rest.split(" — ").next().unwrap_or("");
        for part in names.split(", ") {
            if let Some(name) = part
                .trim()
                .strip_prefix('`')
                .and_then(|p| p.strip_suffix('`'))
            {
                out.insert(name.trim_end_matches('/').to_owned());
            }
        }
    }
    out
}

/// The modules a crate root declares (`mod x;`), test-only ones excepted.
fn declared(src: &Path) -> BTreeSet<String> {
    let root = ["main.rs", "lib.rs"]
        .iter()
        .map(|f| src.join(f))
        .find(|p| p.exists())
        .expect("a crate root");
    let text = std::fs::read_to_string(root).unwrap();
    let mut out = BTreeSet::new();
    let mut test_only = false;
    for line in text.lines() {
        let l = line.trim();
        if l == "#[cfg(test)]" {
            test_only = true;
            continue;
        }
        let decl = l
            .strip_prefix("pub mod ")
            .or_else(|| l.strip_prefix("mod "))
            .and_then(|r| r.strip_suffix(';'));
        if let Some(name) = decl {
            if !test_only {
                out.insert(name.to_owned());
            }
        }
        test_only = false;
    }
    out
}

#[test]
fn the_code_map_names_exactly_the_modules_that_exist() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    for (heading, src) in CRATES {
        let src = root().join(src);
        let listed = mapped(&doc, heading);
        let declared = declared(&src);
        for m in &listed {
            let exists =
                src.join(format!("{m}.rs")).exists() || src.join(m).join("mod.rs").exists();
            assert!(
                exists || m == "main",
                "{heading}: the code map names `{m}`, which {} does not have",
                src.display()
            );
        }
        for m in &declared {
            assert!(
                listed.contains(m),
                "{heading}: module `{m}` is missing from the code map in docs/ARCHITECTURE.md"
            );
        }
    }
}

#[test]
fn shared_does_no_io() {
    let src = root().join("shared/src");
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for io in [
            "std::fs",
            "std::env::var",
            "std::net::Tcp",
            "tokio::",
            "std::process",
            "dotenvy",
        ] {
            assert!(
                !text.contains(io),
                "{} uses {io}: shared must stay pure (I/O belongs in shared/startup or the binaries)",
                entry.path().display()
            );
        }
    }
}

#[test]
fn code_docs_point_at_documents_in_this_repository() {
    // The product contract and the issues live outside the repository: a
    // reader of the code cannot follow "SPEC §5" or "issue 17".
    let mut files = Vec::new();
    for dir in [
        "router/src",
        "migrator/src",
        "shared",
        "tests/tests",
        "tests/src",
    ] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
    }
    for f in files {
        if f.ends_with("tidy.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for bad in ["SPEC §", "SPEC.md", "seed 00", "(issue "] {
            assert!(!text.contains(bad), "{} cites {bad:?}", f.display());
        }
    }
}
