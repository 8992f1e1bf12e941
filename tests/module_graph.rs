//! The core's modules form a tree of imports, never a circle: no module imports one that
//! imports it back (issue #15). A circle makes each side untestable and unreadable without
//! the other; shared pieces belong in a leaf both import (`url`, `text`, `net`, ...).
//!
//! A top-level module is `src/NAME.rs` with its `src/NAME/` children. Its imports are every
//! `crate::NAME` it names outside test code (`#[cfg(test)]` modules and `*tests.rs` files
//! may reach anywhere). The crate root and the host adapters (`host`) are the top and are
//! left out: nothing in the core may import them at all, which is checked too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Source text without comments and without `#[cfg(test)]` items.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if skip_depth.is_none() && t.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = i32::try_from(line.matches('{').count()).unwrap_or(0);
        let closes = i32::try_from(line.matches('}').count()).unwrap_or(0);
        if pending_test {
            pending_test = false;
            if opens > closes {
                skip_depth = Some(depth);
            }
            depth += opens - closes;
            continue; // `mod x;` or a one-line item: dropped with it
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Top-level module names a piece of code imports through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = code.get(i + "crate::".len()..).unwrap_or("");
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::X, b, c::{..}}`: the names at the group's first level.
            let mut depth = 0;
            let mut start = true;
            let mut name = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !name.is_empty() {
                            found.insert(std::mem::take(&mut name));
                        }
                        start = true;
                    }
                    c if depth == 0 && start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ => {
                        if !name.is_empty() {
                            found.insert(std::mem::take(&mut name));
                            start = false;
                        }
                    }
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut visit = |module: &str, path: &Path| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with("tests.rs") || name == "properties.rs" {
            return;
        }
        let text = fs::read_to_string(path).unwrap_or_default();
        g.entry(module.to_string())
            .or_default()
            .extend(imports(&code_of(&text)));
    };
    for entry in fs::read_dir(&src).into_iter().flatten().flatten() {
        let p = entry.path();
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if p.is_file() && stem != "lib" {
            visit(&stem, &p);
        } else if p.is_dir() {
            for child in fs::read_dir(&p).into_iter().flatten().flatten() {
                if child.path().extension().is_some_and(|e| e == "rs") {
                    visit(&stem, &child.path());
                }
            }
        }
    }
    for deps in g.values_mut() {
        deps.retain(|d| !d.is_empty());
    }
    for (m, deps) in g.iter_mut() {
        deps.remove(m);
    }
    g
}

/// Whether `to` is reachable from `from`.
fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(g.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    assert!(g.len() > 10, "read too few modules: {g:?}");
    let mut circles = Vec::new();
    for (m, deps) in &g {
        if m == "host" {
            continue;
        }
        for d in deps {
            if d != "host" && reaches(&g, d, m) {
                circles.push(format!("{m} -> {d} -> ... -> {m}"));
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn nothing_in_the_core_imports_a_host_adapter() {
    let g = graph();
    let offenders: Vec<_> = g
        .iter()
        .filter(|(m, deps)| m.as_str() != "host" && deps.contains("host"))
        .map(|(m, _)| m.clone())
        .collect();
    assert!(offenders.is_empty(), "{offenders:?} import crate::host");
}

#[test]
fn the_reader_sees_grouped_and_plain_imports() {
    let got = imports("use crate::{a::X, b, c::{d::Y, e}};\nlet z = crate::f::g();");
    let want: BTreeSet<String> = ["a", "b", "c", "f"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
    let code = code_of("use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n");
    assert_eq!(imports(&code).into_iter().collect::<Vec<_>>(), vec!["a"]);
}
