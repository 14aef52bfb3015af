//! ARCHITECTURE.md's invariants that a compiler or a test can hold:
//! - the domain crate depends on no SDK, no framework and no I/O crate;
//! - no module of the service crate (`handlers/`) or of the simulator
//!   (`crates/stripe-sim`) imports, directly or through others, a module that
//!   imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Crates that do I/O, or are an SDK or a framework: none may be in the
/// domain's dependency tree. A name matches when equal, or when it starts
/// with an entry that ends in `*`.
const NOT_IN_THE_DOMAIN: &[&str] = &[
    "tokio*",
    "mio",
    "socket2",
    "hyper*",
    "h2",
    "http",
    "http-body*",
    "reqwest*",
    "axum*",
    "tower*",
    "rusqlite",
    "libsqlite3-sys",
    "azure_*",
    "async-stripe*",
    "lettre",
    "rustls*",
    "ring",
    "aws-lc*",
    "openssl*",
    "native-tls",
    "tracing-subscriber",
    "jsonwebtoken",
    "argon2",
    "rand*",
    "getrandom",
    "iana-time-zone",
    "kraftd-billing",
    "kraftd-stripe-sim",
];

fn denied(name: &str) -> bool {
    NOT_IN_THE_DOMAIN
        .iter()
        .any(|rule| match rule.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *rule,
        })
}

/// The names of every crate `package` builds with (normal dependencies,
/// transitively; not its dev-dependencies), with the features `package`
/// itself asks for, as `cargo build -p package` resolves them.
fn dependency_tree(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "-f", "{p}", "-p",
        ])
        .arg(package)
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_domain_depends_on_no_sdk_framework_or_io_crate() {
    let tree = dependency_tree("kraftd-domain");
    // The check would pass vacuously if the tree were not read.
    assert!(
        tree.contains("chrono") && tree.contains("serde"),
        "{tree:?}"
    );
    let bad: Vec<&String> = tree.iter().filter(|name| denied(name)).collect();
    assert!(
        bad.is_empty(),
        "the domain crate must do no I/O and know no SDK or framework, yet depends on {bad:?}"
    );
}

#[test]
fn the_simulator_stays_out_of_the_domain_and_the_service() {
    let tree = dependency_tree("kraftd-stripe-sim");
    assert!(tree.contains("kraftd-domain"), "{tree:?}");
    assert!(!tree.contains("kraftd-billing"), "{tree:?}");
    // And the rule the check relies on does flag what it should.
    assert!(denied("tokio") && denied("azure_data_cosmos") && !denied("chrono"));
}

/// A crate's top-level modules and which of them each one names, from the
/// source: `crate::m` anywhere (also inside `use crate::{m, ..}`), and
/// `super::m` in a top-level module's own file. `#[cfg(test)]` code is left
/// out: tests may reach anywhere.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let is_top_file = file.parent() == Some(src) || file.ends_with(format!("{from}/mod.rs"));
        let mut named = referenced_after(code, "crate::");
        if is_top_file {
            named.extend(referenced_after(code, "super::"));
        }
        for to in named {
            if to != from && modules.contains(&to) {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(file.strip_prefix(root()).unwrap_or(file).to_owned());
            }
        }
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `handlers/http/routes.rs` → `http`; `handlers/config.rs` → `config`; the
/// crate roots (lib.rs, main.rs) are no module of their own.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The first path segment after each `prefix`, and inside `prefix{...}` every
/// segment that starts an item of the group.
fn referenced_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(i, _)| i);
            // Top-level items of the group: split on commas outside braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group[..end].char_indices().chain([(end, ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(group[start..i].trim_start()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

/// Every cycle's modules, as found by a depth-first search (each reported
/// once, starting from its smallest name).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>) -> Vec<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>,
        path: &mut Vec<String>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flat_map(|m| m.keys()) {
            if let Some(at) = path.iter().position(|m| m == next) {
                let mut cycle = path[at..].to_vec();
                let min = cycle.iter().enumerate().min_by_key(|(_, m)| *m).unwrap().0;
                cycle.rotate_left(min);
                found.insert(cycle);
            } else if path.len() < 12 {
                path.push(next.clone());
                walk(graph, path, found);
                path.pop();
            }
        }
    }
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        walk(graph, &mut vec![start.clone()], &mut found);
    }
    found.into_iter().collect()
}

fn assert_acyclic(src: &str) {
    let graph = module_graph(&root().join(src));
    assert!(graph.len() > 1, "{src}: no module graph read: {graph:?}");
    let found = cycles(&graph);
    let explained: Vec<String> = found
        .iter()
        .map(|cycle| {
            let steps: Vec<String> = cycle
                .iter()
                .zip(cycle.iter().cycle().skip(1))
                .map(|(a, b)| format!("{a} -> {b} ({:?})", graph[a][b]))
                .collect();
            steps.join(", ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "{src}: modules that import each other:\n{}",
        explained.join("\n")
    );
}

#[test]
fn the_service_crate_has_no_module_cycle() {
    assert_acyclic("handlers");
}

#[test]
fn the_simulator_has_no_module_cycle() {
    assert_acyclic("crates/stripe-sim/src");
}

#[test]
fn the_cycle_check_finds_a_cycle_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod c; mod d;").unwrap();
    std::fs::write(src.join("d.rs"), "").unwrap();
    // a -> b -> c -> a, and a -> c -> a; a comment names no module.
    std::fs::write(src.join("a.rs"), "use crate::{b::X, c};\n// crate::d").unwrap();
    std::fs::write(src.join("b.rs"), "use super::c::Y;").unwrap();
    std::fs::write(src.join("c.rs"), "fn f() { crate::a::g() }").unwrap();
    let graph = module_graph(src);
    assert_eq!(
        cycles(&graph),
        vec![
            vec!["a".to_owned(), "b".into(), "c".into()],
            vec!["a".to_owned(), "c".into()],
        ]
    );
    assert!(!graph["a"].contains_key("d"));
    std::fs::write(
        src.join("c.rs"),
        "#[cfg(test)]\nmod tests { use crate::a; }",
    )
    .unwrap();
    assert!(cycles(&module_graph(src)).is_empty());
}
