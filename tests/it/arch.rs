//! The architecture rule, checked on the source: every `crate::…` path a
//! module names must point down the layers
//!
//! ```text
//! main → cli → nightly → config → beskedfordeler → {register, store} → domain → base
//! ```
//!
//! (`base`: exit, fsutil, crash, secret, tls, harden, rt, http). `sim`, the lab, may
//! use anything below `cli`; nothing uses `sim` but the `simulate` and
//! `generate` commands. `domain` does no I/O. No module cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layer of a source file (relative to `src/`), and its rank.
fn layer(rel: &str) -> (&'static str, u32) {
    let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
    match top {
        "main" => ("main", 9),
        "lib" => ("lib", 10),
        "cli" => ("cli", 8),
        "nightly" => ("nightly", 7),
        "sim" => ("sim", 7),
        "config" => ("config", 6),
        "beskedfordeler" => ("beskedfordeler", 5),
        "register" => ("register", 4),
        "store" => ("store", 4),
        "domain" => ("domain", 3),
        "exit" | "fsutil" | "crash" | "secret" | "tls" | "harden" | "rt" | "http" => ("base", 1),
        other => panic!("src/{rel}: {other} is in no layer: add it to tests/it/arch.rs"),
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a source file defines, as a path below the crate root.
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    rel.replace('/', "::")
}

/// Expands `crate::{a::{b, c}, d}` into `a::b`, `a::c`, `d`.
fn expand(group: &str, prefix: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut start = 0;
    let bytes = group.as_bytes();
    let mut parts = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&group[start..]);
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.find('{') {
            Some(open) => {
                let head = part[..open].trim_end_matches("::");
                let inner = &part[open + 1..part.rfind('}').unwrap()];
                expand(inner, &format!("{prefix}{head}::"), out);
            }
            None => out.push(format!("{prefix}{part}")),
        }
    }
}

/// Every `crate::` path `text` names (outside its unit tests).
fn crate_paths(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. nemsms_diff_crate::
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .unwrap()
                .0;
            expand(&group[..end], "", &mut out);
        } else {
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(path.trim_end_matches(':').to_owned());
        }
    }
    out
}

#[test]
fn dependencies_point_down_the_layers_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (module_of(&rel), rel)
        })
        .collect();
    let mut broken = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, rel) in &modules {
        let text = fs::read_to_string(src.join(rel)).unwrap();
        let (from, from_rank) = layer(rel);
        if from == "domain" {
            for io in [
                "std::fs", "std::net", "tokio", "reqwest", "lapin", "File::", "std::env",
            ] {
                if text.split("#[cfg(test)]").next().unwrap().contains(io) {
                    broken.push(format!("src/{rel}: domain does no I/O, but uses {io}"));
                }
            }
        }
        for path in crate_paths(&text) {
            // The longest module prefix of the path is what it points at.
            let segments: Vec<&str> = path.split("::").collect();
            let Some(target) = (1..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|m| modules.contains_key(m))
            else {
                continue; // an item of lib.rs
            };
            if &target == module {
                continue;
            }
            let (to, to_rank) = layer(&modules[&target]);
            graph
                .entry(module.clone())
                .or_default()
                .insert(target.clone());
            let allowed = from == to
                || (from == "sim" && !matches!(to, "cli" | "main"))
                || (to == "sim" && matches!(rel.as_str(), "cli/simulate.rs" | "cli/generate.rs"))
                || (to != "sim" && from_rank > to_rank);
            if !allowed {
                broken.push(format!(
                    "src/{rel} ({from}) uses crate::{path} ({to}): against the layers"
                ));
            }
        }
    }
    // No cycles between modules.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|s| s == m) {
            cycles.push(format!("cycle: {} → {m}", stack[at..].join(" → ")));
            return;
        }
        if !done.insert(m.to_owned()) {
            return;
        }
        stack.push(m.to_owned());
        for n in graph.get(m).into_iter().flatten() {
            visit(n, graph, stack, done, cycles);
        }
        stack.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done, &mut broken);
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    // The rule has teeth: these would be reported.
    assert!(layer("domain/keys.rs").1 < layer("store/outbox.rs").1);
    let paths = crate_paths("use crate::{a::{b, c}, d};\nlet x = crate::e::f(1);");
    assert_eq!(paths, ["a::b", "a::c", "d", "e::f"]);
}
