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
    ("### `cli/` ", "cli/src"),
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

/// The modules a crate root declares (`mod x;`), test-only ones excepted:
/// the library's root when the crate has one (a binary beside it only
/// calls it).
fn declared(src: &Path) -> BTreeSet<String> {
    let root = ["lib.rs", "main.rs"]
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

/// Each top-level module of `src` and the top-level modules it uses
/// (`crate::x`), submodules counting as their parent.
fn module_graph(src: &Path) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut graph = std::collections::BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            // the module's own tests (inline or in a `tests.rs`) may use anything
            if top == "main" || top == "lib" || top == "fuzz" || p.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // the module's own tests may use anything
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            let uses: &mut BTreeSet<String> = graph.entry(top.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn no_module_uses_a_module_that_uses_it() {
    for src in ["router/src", "migrator/src", "shared/src", "cli/src"] {
        let graph = module_graph(&root().join(src));
        // depth-first search for a cycle
        fn visit(
            m: &str,
            graph: &std::collections::BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == m) {
                let mut cycle = path[at..].to_vec();
                cycle.push(m.to_owned());
                return Some(cycle);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_owned());
            for next in graph.get(m).into_iter().flatten() {
                if let Some(c) = visit(next, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
                panic!("{src}: modules in a circle: {}", cycle.join(" -> "));
            }
        }
    }
}

/// What `cargo build --bins` (deploy/install.sh, Dockerfile.build) and
/// `cargo install --path router|migrator` compile: the normal dependencies
/// of the workspace, features unified. The OpenAPI derives (utoipa) are for
/// the tests only and must not be among them.
#[test]
fn the_binaries_never_compile_the_openapi_derives() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |args: &[&str]| {
        let out = std::process::Command::new(&cargo)
            .current_dir(root())
            .args(["tree", "--offline", "-i", "utoipa"])
            .args(args)
            .output()
            .expect("cargo tree runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for args in [
        &["--workspace", "-e", "normal"][..],
        &["-p", "stonescriptdb-router", "-e", "normal"][..],
        &["-p", "stonescriptdb-migrator", "-e", "normal"][..],
    ] {
        let found = tree(args);
        assert!(
            !found.contains("utoipa v"),
            "utoipa is compiled into a normal build ({args:?}):\n{found}"
        );
    }
    // the tests do have it (the check above can fail)
    assert!(tree(&["--workspace", "-e", "normal,dev"]).contains("utoipa v"));
}

/// The first path segment after each `super::` a file names, or after
/// `parent` (the module above it as `crate::a::`): `use super::{a, b::c}`
/// gives `a` and `b`. Tests aside.
fn super_uses(text: &str, parent: &str) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let text = text.replace(parent, "super::");
    let word = |s: &str| -> String {
        let s = s.trim();
        if s.starts_with('*') {
            return "*".into();
        }
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("super::") {
        let rest = &text[i + 7..];
        if rest.starts_with("super::") {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(word(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(word(&item));
        } else {
            out.insert(word(rest));
        }
    }
    out.remove("");
    out
}

/// Inside every folder module (`x/mod.rs` and its files), a file uses only
/// its siblings, never the module above it (which declares it: an arrow
/// back up), and siblings never use each other in a circle.
#[test]
fn no_submodule_uses_the_module_above_it_or_a_sibling_in_a_circle() {
    let mut wrong = Vec::new();
    for src in ["router/src", "migrator/src", "shared/src"] {
        let mut stack = vec![root().join(src)];
        while let Some(d) = stack.pop() {
            let entries: Vec<PathBuf> = std::fs::read_dir(&d)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            stack.extend(entries.iter().filter(|p| p.is_dir()).cloned());
            if !d.join("mod.rs").exists() {
                continue;
            }
            let stem = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
            let children: BTreeSet<String> = entries
                .iter()
                .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
                .map(|p| stem(p))
                .filter(|s| s != "mod" && s != "tests")
                .collect();
            let mut graph: std::collections::BTreeMap<String, BTreeSet<String>> =
                Default::default();
            for child in &children {
                let file = d.join(format!("{child}.rs"));
                let file = if file.exists() {
                    file
                } else {
                    d.join(child).join("mod.rs")
                };
                let Ok(text) = std::fs::read_to_string(&file) else {
                    continue;
                };
                let parent = format!(
                    "crate::{}::",
                    d.strip_prefix(root().join(src))
                        .unwrap()
                        .to_string_lossy()
                        .replace('/', "::")
                );
                for used in super_uses(&text, &parent) {
                    if !children.contains(&used) {
                        wrong.push(format!(
                            "{}: uses `super::{used}`, which is the module above it: move what it needs into a sibling",
                            file.strip_prefix(root()).unwrap_or(&file).display()
                        ));
                    }
                    if &used != child {
                        graph.entry(child.clone()).or_default().insert(used);
                    }
                }
            }
            fn visit(
                m: &str,
                graph: &std::collections::BTreeMap<String, BTreeSet<String>>,
                path: &mut Vec<String>,
            ) -> Option<Vec<String>> {
                if let Some(at) = path.iter().position(|p| p == m) {
                    let mut cycle = path[at..].to_vec();
                    cycle.push(m.to_owned());
                    return Some(cycle);
                }
                path.push(m.to_owned());
                for next in graph.get(m).into_iter().flatten() {
                    if let Some(c) = visit(next, graph, path) {
                        return Some(c);
                    }
                }
                path.pop();
                None
            }
            for m in graph.keys() {
                if let Some(cycle) = visit(m, &graph, &mut Vec::new()) {
                    wrong.push(format!(
                        "{}: modules in a circle: {}",
                        d.display(),
                        cycle.join(" -> ")
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
