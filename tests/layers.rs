//! The crate's layering, read from its source: which file refers to which (through `use`
//! lines and `crate::`/`super::`/`esp_aws::` paths, and a parent's `child::` paths), and
//! the rules that graph must keep. A parent module that uses the children it declares is
//! containment, not an import: only a file's references outside its own subtree are edges.
//!
//! - no file-level import cycles (in the library, and in the binary's own files);
//! - the AT driver (`src/at/`) knows nothing of AWS or HTTP;
//! - the virtual module (`src/sim/`) uses only codecs and facts, never the host driver, the
//!   shadow client, the provisioning workflow or the CLI.
//!
//! A reference counts whether it sits in test code or not: a test module that reaches a
//! layer above is as much a tie as production code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which crate a file belongs to: the library, or the binary (`main.rs` and `cli/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Krate {
    Lib,
    Bin,
}

/// A source file, by its module path (`["at", "session"]`) within its crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Node {
    krate: Krate,
    module: Vec<String>,
}

impl Node {
    fn name(&self) -> String {
        let root = match self.krate {
            Krate::Lib => "lib",
            Krate::Bin => "main",
        };
        if self.module.is_empty() {
            root.to_string()
        } else {
            self.module.join("/")
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file is, and the crate it belongs to.
fn node_of(path: &Path) -> Node {
    let rel = path.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs").to_string();
    let krate = if (parts.is_empty() && stem == "main") || parts.first().is_some_and(|p| p == "cli")
    {
        Krate::Bin
    } else {
        Krate::Lib
    };
    if !(parts.is_empty() && (stem == "lib" || stem == "main")) && stem != "mod" {
        parts.push(stem);
    }
    Node {
        krate,
        module: parts,
    }
}

/// Source without comments and string literals (their text is not a reference).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // A raw string's `#`s and an `r` prefix are harmless to leave in.
            let hashes = out.chars().rev().take_while(|&c| c == '#').count();
            i += 1;
            while i < b.len() {
                if b[i] == b'\\' && hashes == 0 {
                    i += 2;
                    continue;
                }
                if b[i] == b'"' && b[i + 1..].iter().take(hashes).all(|&c| c == b'#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\'', '\\'); lifetimes have no closing quote.
            let end = b[i + 1..]
                .iter()
                .skip(1)
                .position(|&c| c == b'\'')
                .map_or(b.len(), |p| i + 2 + p + 1);
            out.push_str("' '");
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path written in `code` (`crate::a::b`, `super::c::{d, e::f}`, `esp_aws::g`,
/// `child::h`), as segment lists, with the offset where it starts. A `{…}` group yields one
/// path per item.
fn paths(code: &str, roots: &BTreeSet<String>) -> Vec<(usize, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':');
        if !starts_word || !is_ident(chars[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && is_ident(chars[j]) {
            j += 1;
        }
        let word: String = chars[i..j].iter().collect();
        if !roots.contains(&word) || !chars[j..].starts_with(&[':', ':']) {
            i = j;
            continue;
        }
        let (paths, end) = read_path(&chars, i);
        for p in paths {
            found.push((i, p));
        }
        i = end.max(j);
    }
    found
}

/// Reads the path starting at `i`, expanding one level of `{…}` (nested groups keep their
/// prefix). Returns the paths and where reading stopped.
fn read_path(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    loop {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        segments.push(chars[start..i].iter().collect::<String>());
        if !chars[i..].starts_with(&[':', ':']) {
            return (vec![segments], i);
        }
        i += 2;
        if chars.get(i) == Some(&'{') {
            // Items of the group, split at top-level commas.
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(std::mem::take(&mut item));
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
                item.push(chars[i]);
                i += 1;
            }
            items.push(item);
            let mut out = Vec::new();
            for item in items {
                let item: Vec<String> = item
                    .split(" as ")
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .map(|s| s.trim().to_string())
                    .take_while(|s| !s.is_empty() && s.chars().all(is_ident))
                    .collect();
                let mut path = segments.clone();
                path.extend(item.into_iter().filter(|s| s != "self"));
                out.push(path);
            }
            return (out, i + 1);
        }
        if !chars.get(i).copied().is_some_and(is_ident) {
            return (vec![segments], i);
        }
    }
}

struct Crate {
    files: BTreeMap<Node, PathBuf>,
}

impl Crate {
    fn load() -> Crate {
        let mut paths = Vec::new();
        rust_files(&src(), &mut paths);
        Crate {
            files: paths.into_iter().map(|p| (node_of(&p), p)).collect(),
        }
    }

    /// The file a module path (absolute within `krate`) lives in: its longest prefix that
    /// is a file.
    fn resolve(&self, krate: Krate, path: &[String]) -> Option<Node> {
        (0..=path.len()).rev().find_map(|n| {
            let node = Node {
                krate,
                module: path[..n].to_vec(),
            };
            self.files.contains_key(&node).then_some(node)
        })
    }

    /// The modules declared as files directly below `node`.
    fn children(&self, node: &Node) -> BTreeSet<String> {
        self.files
            .keys()
            .filter(|n| {
                n.krate == node.krate
                    && n.module.len() == node.module.len() + 1
                    && n.module.starts_with(&node.module)
            })
            .map(|n| n.module.last().unwrap().clone())
            .collect()
    }

    /// Each file and the files it refers to (itself excluded).
    fn graph(&self) -> BTreeMap<Node, BTreeSet<Node>> {
        let mut graph = BTreeMap::new();
        for (node, path) in &self.files {
            let code = strip(&std::fs::read_to_string(path).unwrap());
            // In an inline `mod tests`, `super` is the file itself.
            let tests_at = code.find("mod tests {").unwrap_or(usize::MAX);
            let children = self.children(node);
            let mut roots: BTreeSet<String> = ["crate", "super", "self", "esp_aws"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            roots.extend(children.iter().cloned());
            let mut edges = BTreeSet::new();
            for (at, path) in paths(&code, &roots) {
                let (krate, absolute) = match path[0].as_str() {
                    "crate" => (node.krate, path[1..].to_vec()),
                    "esp_aws" => (Krate::Lib, path[1..].to_vec()),
                    "self" => {
                        let mut p = node.module.clone();
                        p.extend_from_slice(&path[1..]);
                        (node.krate, p)
                    }
                    "super" => {
                        let mut p = node.module.clone();
                        let mut rest = &path[..];
                        let mut ups = 0;
                        while rest.first().is_some_and(|s| s == "super") {
                            ups += 1;
                            rest = &rest[1..];
                        }
                        if at > tests_at {
                            ups -= 1;
                        }
                        for _ in 0..ups {
                            p.pop();
                        }
                        p.extend_from_slice(rest);
                        (node.krate, p)
                    }
                    child => {
                        debug_assert!(children.contains(child));
                        let mut p = node.module.clone();
                        p.extend_from_slice(&path);
                        (node.krate, p)
                    }
                };
                if let Some(target) = self.resolve(krate, &absolute) {
                    // A path that stops at a crate root names an item of that root
                    // (`crate::interrupt_flag`) only when more follows; a bare root is the
                    // crate itself.
                    // A parent that declares a child and uses it is containment, not an
                    // import: only the child's way up (`super::Error`) is an edge.
                    let descendant = target.krate == node.krate
                        && target.module.len() > node.module.len()
                        && target.module.starts_with(&node.module);
                    if target != *node
                        && !descendant
                        && !(target.module.is_empty() && absolute.is_empty())
                    {
                        edges.insert(target);
                    }
                }
            }
            graph.insert(node.clone(), edges);
        }
        graph
    }
}

/// The cycles of `graph`, each as its files in order (one per strongly connected set).
fn cycles(graph: &BTreeMap<Node, BTreeSet<Node>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iteratively small enough to be recursive here.
    struct State<'a> {
        graph: &'a BTreeMap<Node, BTreeSet<Node>>,
        index: BTreeMap<&'a Node, usize>,
        low: BTreeMap<&'a Node, usize>,
        stack: Vec<&'a Node>,
        on_stack: BTreeSet<&'a Node>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Node) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.graph[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut members = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                members.push(w.name());
                if w == v {
                    break;
                }
            }
            if members.len() > 1 {
                members.sort();
                s.found.push(members);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn lib(module: &str) -> Node {
    Node {
        krate: Krate::Lib,
        module: module.split('/').map(str::to_string).collect(),
    }
}

fn under(node: &Node, prefix: &str) -> bool {
    node.krate == Krate::Lib && node.module.first().is_some_and(|m| m == prefix)
}

#[test]
fn the_reader_sees_references_of_every_kind() {
    // The checks below are only as good as the reader: it must see each way a file refers
    // to another.
    let graph = Crate::load().graph();
    let edges = |from: &str| graph[&lib(from)].clone();
    // `use super::x::{A, B}` and `super::x::f()` in the driver.
    assert!(edges("at/session").contains(&lib("at/client")));
    assert!(edges("at/session").contains(&lib("at/wifi")));
    // `use crate::x::{self, …}` and `crate::x::CONST` in an expression.
    assert!(edges("provision/rom").contains(&lib("partition")));
    assert!(edges("rom/loader").contains(&lib("firmware")));
    // `super::Exit` from a child, and `esp_aws::` from the binary.
    assert!(graph[&Node {
        krate: Krate::Bin,
        module: vec!["cli".into(), "shadow".into()],
    }]
        .contains(&Node {
            krate: Krate::Bin,
            module: vec!["cli".into()],
        }));
    assert!(graph[&Node {
        krate: Krate::Bin,
        module: vec!["cli".into(), "shadow".into()],
    }]
        .contains(&lib("aws/shadow")));
    // The reader finds a cycle when there is one.
    let mut looped = BTreeMap::new();
    looped.insert(lib("a"), BTreeSet::from([lib("b")]));
    looped.insert(lib("b"), BTreeSet::from([lib("c")]));
    looped.insert(lib("c"), BTreeSet::from([lib("a")]));
    assert_eq!(cycles(&looped), vec![vec!["a", "b", "c"]]);
}

#[test]
fn no_file_level_import_cycles() {
    let found = cycles(&Crate::load().graph());
    assert!(
        found.is_empty(),
        "files that import each other (each line one cycle): {}",
        found
            .iter()
            .map(|c| c.join(" ⇄ "))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn the_at_driver_knows_nothing_of_aws() {
    let graph = Crate::load().graph();
    let offending: Vec<String> = graph
        .iter()
        .filter(|(from, _)| under(from, "at"))
        .flat_map(|(from, to)| {
            to.iter()
                .filter(|t| under(t, "aws"))
                .map(move |t| format!("{} → {}", from.name(), t.name()))
        })
        .collect();
    assert!(offending.is_empty(), "{offending:?}");
}

#[test]
fn the_simulator_uses_only_codecs_and_facts() {
    // What the virtual module and the endpoint may share with the host side: wire codecs
    // and facts, never the driver, the shadow client, the workflows or the CLI.
    const ALLOWED: &[&str] = &[
        "firmware",
        "partition",
        "clock",
        "files",
        "hex",
        "trace",
        "pki/atpki",
        "aws/document",
        "aws/names",
        // AWS IoT's policy grammar and evaluation, and the control plane's wire model
        // (operations, paths, bodies): the simulated account answers with the same ones the
        // client sends and checks.
        "aws/policy",
        "aws/control/model",
        // The AWS shared config/credentials file format, which the simulated account reads
        // as the CLI does.
        "aws/control/ini",
        // Shadow topic names, which the endpoint's MQTT side routes by.
        "mqtt/shadow",
        // The MQTT codec and AWS's broker limits: the endpoint's broker speaks and enforces
        // them, and the virtual module's own MQTT client (`AT+MQTT*`) speaks the codec.
        "mqtt/packet",
        "mqtt/decoder",
        "mqtt/limits",
        "rom/chip",
        "rom/command",
        "rom/packet",
        "rom/slip",
    ];
    let graph = Crate::load().graph();
    let offending: Vec<String> = graph
        .iter()
        .filter(|(from, _)| under(from, "sim"))
        .flat_map(|(from, to)| {
            to.iter()
                .filter(|t| {
                    !under(t, "sim")
                        && !ALLOWED.iter().any(|a| lib(a) == **t)
                        && !t.module.is_empty()
                })
                .map(move |t| format!("{} → {}", from.name(), t.name()))
        })
        .collect();
    assert!(offending.is_empty(), "{offending:?}");
}
