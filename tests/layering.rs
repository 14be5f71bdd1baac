//! The crate's layering, read from its sources: cudarc is used only inside src/device/, the
//! device layer imports no other part of the crate but its errors, and the top-level modules
//! (src/<folder>/ and src/<file>.rs) import each other without a circle, so the imports run one
//! way, down the layers lib.rs lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments (doc comments mention other modules freely).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a source file belongs to ("device" for src/device/cuda.rs).
fn module_of(src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::<module>` a file's code names.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// Which top-level modules each one imports.
type Imports = BTreeMap<String, BTreeSet<String>>;

/// The import graph, and every source file with its code.
fn graph() -> (Imports, Vec<(PathBuf, String)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges = Imports::new();
    let mut texts = Vec::new();
    for f in files {
        let m = module_of(&src, &f);
        let c = code(&f);
        if m != "lib" && m != "main" {
            let refs = crate_refs(&c).into_iter().filter(|r| *r != m);
            edges.entry(m.clone()).or_default().extend(refs);
        }
        texts.push((f, c));
    }
    (edges, texts)
}

#[test]
fn cudarc_stays_inside_the_device_layer() {
    let (_, texts) = graph();
    let outside: Vec<String> = texts
        .iter()
        .filter(|(p, c)| !p.to_string_lossy().contains("/src/device/") && c.contains("cudarc"))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "cudarc used outside src/device/: {outside:?}"
    );
}

#[test]
fn the_device_layer_knows_no_domain() {
    let (edges, _) = graph();
    let device: Vec<&String> = edges["device"].iter().filter(|m| *m != "error").collect();
    assert!(
        device.is_empty(),
        "src/device/ imports {device:?}: it may use only crate::error"
    );
}

/// The first import circle of a graph, found depth-first.
fn find_circle(edges: &Imports) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &Imports,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_each_other_without_a_circle() {
    let (edges, _) = graph();
    if let Some(circle) = find_circle(&edges) {
        panic!("import circle between modules: {}", circle.join(" -> "));
    }
}

/// Every `super::<name>` a file's code names.
fn super_refs(code: &str) -> BTreeSet<String> {
    code.match_indices("super::")
        .map(|(i, _)| {
            code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn the_files_of_each_folder_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut folders: BTreeMap<PathBuf, Imports> = BTreeMap::new();
    for f in &files {
        let dir = f.parent().unwrap();
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        if name == "mod" {
            continue;
        }
        let sibling = |m: &String| dir.join(format!("{m}.rs")).is_file() || dir.join(m).is_dir();
        let refs: BTreeSet<String> = super_refs(&code(f)).into_iter().filter(sibling).collect();
        folders
            .entry(dir.to_path_buf())
            .or_default()
            .insert(name, refs);
    }
    for (dir, edges) in &folders {
        if let Some(circle) = find_circle(edges) {
            panic!(
                "import circle between the files of {}: {}",
                dir.display(),
                circle.join(" -> ")
            );
        }
    }
}
