//! The layers of `trainmon/src` (ARCHITECTURE.md) hold: each module imports only from its own
//! layer or those below it, and no two modules import each other, directly or around a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, from the bottom: the top-level modules of each (a directory is one module).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &[
            "context",
            "control",
            "data",
            "error",
            "panics",
            "precision",
            "records",
            "resource",
            "schedule",
            "state",
            "step",
        ],
    ),
    ("hooks", &["hook", "param", "registry"]),
    ("engine", &["dist", "optim", "output", "trainer"]),
    ("top", &["bench", "hooks", "logging", "testing", "lib"]),
];

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(end) => &text[..end],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `text` names as `crate::module`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `trainmon_crate::`, `$crate::`
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// Which module a file is part of: `trainer/fit/run.rs` → `trainer`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The import graph of trainmon's modules: module → the other modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainmon/src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let text = code(&std::fs::read_to_string(&file).unwrap());
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to ARCHITECTURE.md and this test"))
}

#[test]
fn imports_point_down_the_layers() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (module, imports) in &graph {
        for import in imports {
            if !graph.contains_key(import) {
                continue; // an item of lib.rs (`crate::Result`), not a module
            }
            if layer_of(import) > layer_of(module) {
                wrong.push(format!(
                    "`{module}` ({}) imports `{import}` ({})",
                    LAYERS[layer_of(module)].0,
                    LAYERS[layer_of(import)].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports up the layers:\n{}", wrong.join("\n"));
    // Every module is in a layer.
    for module in graph.keys() {
        layer_of(module);
    }
}

#[test]
fn no_import_cycles() {
    let graph = graph();
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                if let Some(cycle) = visit(next, graph, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", cycle.join(" → "));
        }
    }
}

/// The training loop is small components under an outline (`trainer/fit/epoch.rs`): no file of
/// `trainer/fit/` has more than 450 lines (nor any of `trainer/` 450 lines of code), and batches
/// travel typed — the one place a batch
/// type is taken on trust is `typed.rs`'s cast of a dataset of pairs (checked when the source is
/// made; hooks see the batch erased, at the edge) — no `Rc<dyn Any>`, no step erased, no loop
/// lent to a step.
#[test]
fn the_loop_is_small_typed_components() {
    let trainer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainmon/src/trainer");
    let mut files = Vec::new();
    source_files(&trainer, &mut files);
    assert!(files.len() > 10, "{files:?}");
    for file in &files {
        let whole = std::fs::read_to_string(file).unwrap();
        let text = code(&whole);
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(lines <= 450, "{} has {lines} lines of code", file.display());
        // The loop's own files, docs and tests included.
        if file
            .strip_prefix(&trainer)
            .is_ok_and(|within| within.starts_with("fit"))
        {
            let all = whole.lines().count();
            assert!(all <= 450, "{} has {all} lines", file.display());
        }
        for erased in ["Rc<dyn Any>", "ErasedStep", "Work::Lent"] {
            assert!(!text.contains(erased), "{} has `{erased}`", file.display());
        }
        if !file.ends_with("fit/typed.rs") {
            for cast in ["downcast_ref", "downcast_mut"] {
                assert!(!text.contains(cast), "{} has `{cast}`", file.display());
            }
        }
    }
}

#[test]
fn the_scanner_sees_imports() {
    let text = code("use crate::a::B;\n// use crate::commented;\nfn f() { crate::b::c(); $crate::d; }\n");
    assert_eq!(imports(&text), ["a", "b"].map(String::from).into());
}
