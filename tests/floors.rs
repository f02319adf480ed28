//! The floors of the crate: each top-level module of `src/` may import (`crate::...`) only modules on its own
//! floor or below, and modules on one floor do not import each other in a circle (the one listed exception
//! aside). This test reads the sources, so a new upward import fails it; a new module fails it until it is
//! given a floor here.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The floors, lowest first.
const FLOORS: &[(&str, &[&str])] = &[
    // Foundations: errors, numbers, memory checks, settings by name, shape strings, the thread pool, file
    // formats below the model file.
    (
        "foundation",
        &[
            "error",
            "numeric",
            "memory",
            "spec",
            "shapes",
            "random",
            "speed_notice",
            "png_file",
            "threads",
            "formats",
        ],
    ),
    // Where buffers live and kernels run: the device seam (the CPU backend today).
    ("device", &["device"]),
    // The engine: the tape, the ops and their backward rules, over device storage.
    ("engine", &["autodiff"]),
    // What layers and models are made of, and what feeds them.
    (
        "parts",
        &[
            "activations",
            "initializers",
            "regularizers",
            "losses",
            "metrics",
            "optimizers",
            "utils",
            "datasets",
            "distributed",
        ],
    ),
    ("layers", &["layers"]),
    // Callbacks take `&mut Model` and the trainer calls them: one feature in two modules.
    ("models", &["models", "callbacks"]),
    // The public face of model files: re-exports only.
    ("saving", &["saving"]),
];

/// Same-floor import circles that are allowed, with the reason above.
const ALLOWED_CIRCLES: &[(&str, &str)] = &[("models", "callbacks")];

/// Items of the crate root (`crate::Error`) and the module they come from.
const ROOT_ITEMS: &[(&str, &str)] = &[("Error", "error"), ("Result", "error"), ("Numeric", "numeric")];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, modules)| modules.contains(&module))
}

/// The source without comments (doc links name higher floors without importing them). String literals stay:
/// serde's `deserialize_with = "crate::..."` is an import.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find('/') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("//") {
            rest = tail.find('\n').map_or("", |n| &tail[n..]);
        } else if tail.starts_with("/*") {
            rest = tail.find("*/").map_or("", |n| &tail[n + 2..]);
        } else {
            out.push('/');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules (or root items) a source file names through `crate::`, grouped imports included.
fn imports(src: &str) -> BTreeSet<String> {
    let src = strip_comments(src);
    let mut found = BTreeSet::new();
    for (i, _) in src.match_indices("crate::") {
        let after = src[i + "crate::".len()..].trim_start();
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the first name of each top-level item.
            let (mut depth, mut item_start) = (0usize, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        found.insert(ident(&group[j..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(after).to_string());
        }
    }
    found.remove("");
    found
}

fn module_of(file: &Path, src_dir: &Path) -> String {
    let rel = file.strip_prefix(src_dir).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every module's imports of other top-level modules, with the files that make them.
fn import_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src_dir, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let module = module_of(&file, &src_dir);
        if module == "lib" {
            continue;
        }
        let src = std::fs::read_to_string(&file).unwrap();
        for name in imports(&src) {
            let target = match ROOT_ITEMS.iter().find(|(item, _)| *item == name) {
                Some((_, m)) => m.to_string(),
                None => name,
            };
            if target != module {
                let rel = file.strip_prefix(&src_dir).unwrap().display().to_string();
                graph.entry(module.clone()).or_default().entry(target).or_default().insert(rel);
            }
        }
    }
    graph
}

#[test]
fn the_scan_finds_grouped_and_inline_imports_but_not_comments() {
    let src = "use crate::{autodiff::{Tape, Var}, Error};\n\
               /// See [`crate::models::Model`].\n\
               #[serde(deserialize_with = \"crate::formats::settings::exact_f64\")]\n\
               fn f() { crate::threads::num_threads(); } /* crate::saving */";
    let found: Vec<_> = imports(src).into_iter().collect();
    assert_eq!(found, ["Error", "autodiff", "formats", "threads"]);
}

#[test]
fn every_module_has_a_floor_and_imports_only_its_floor_or_below() {
    let graph = import_graph();
    let mut problems = Vec::new();
    for (module, targets) in &graph {
        let Some(floor) = floor_of(module) else {
            problems.push(format!("`{module}` has no floor in tests/floors.rs"));
            continue;
        };
        for (target, files) in targets {
            match floor_of(target) {
                None => problems
                    .push(format!("`{target}` (imported by {files:?}) has no floor in tests/floors.rs")),
                Some(f) if f > floor => problems.push(format!(
                    "`{module}` (floor {}) imports `{target}` (floor {}, higher) in {files:?}",
                    FLOORS[floor].0, FLOORS[f].0
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_import_circles() {
    let graph = import_graph();
    let allowed =
        |a: &str, b: &str| ALLOWED_CIRCLES.iter().any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b));
    // Depth-first search for a path back to the start, over edges that are not an allowed pair.
    fn reaches(
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        from: &str,
        goal: &str,
        seen: &mut BTreeSet<String>,
        allowed: &dyn Fn(&str, &str) -> bool,
    ) -> bool {
        let Some(targets) = graph.get(from) else { return false };
        for next in targets.keys() {
            if allowed(from, next) {
                continue;
            }
            if next == goal || (seen.insert(next.clone()) && reaches(graph, next, goal, seen, allowed)) {
                return true;
            }
        }
        false
    }
    let circles: Vec<_> =
        graph.keys().filter(|m| reaches(&graph, m, m, &mut BTreeSet::new(), &allowed)).cloned().collect();
    assert!(circles.is_empty(), "modules on an import circle: {circles:?}; the graph: {graph:#?}");
}
