//! `unsafe` lives in two places, each a module named `ffi` in a host adapter: the Envoy
//! adapter's (src/host/proxy_wasm.rs, the request header map without the SDK's per-header
//! copies) and the Traefik plugin's (traefik-plugin/src/main.rs, the request's names and
//! values written straight into the plugin's buffer); issue #15. Both crates deny
//! `unsafe_code` (their Cargo.toml); this test keeps each one `allow` from spreading.

#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::path::Path;

/// Code without `//` comments (doc comments included), so prose may say "unsafe".
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Byte offsets of `word` standing alone (not part of a longer identifier).
fn words(code: &str, word: &str) -> Vec<usize> {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    code.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            !ident(code[..i].chars().next_back()) && !ident(code[i + word.len()..].chars().next())
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).expect("src/ is readable") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The byte range of `mod ffi { ... }` in an adapter.
fn ffi_block(code: &str) -> std::ops::Range<usize> {
    let start = code.find("mod ffi {").expect("the adapter has `mod ffi`");
    let mut depth = 0;
    for (i, c) in code[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return start..start + i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("`mod ffi` is not closed");
}

/// Checks one crate: its manifest denies `unsafe_code` and the only `unsafe` is inside
/// `mod ffi` of `adapter` (a path under the crate's `src/`), with the one `allow` there.
fn only_in_ffi(root: &Path, adapter: &str) {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("unsafe_code = \"deny\"")
            || manifest.contains("unsafe_code = \"forbid\""),
        "{root:?}/Cargo.toml must deny unsafe_code"
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut allows = 0;
    for f in &files {
        let code = code_of(&fs::read_to_string(f).expect("source is readable"));
        let uses = words(&code, "unsafe");
        allows += code.matches("allow(unsafe_code)").count();
        if f.ends_with(adapter) {
            let ffi = ffi_block(&code);
            let outside: Vec<_> = uses.iter().filter(|i| !ffi.contains(i)).collect();
            assert!(outside.is_empty(), "unsafe outside `mod ffi` in {f:?}");
            assert!(code[ffi].contains("#![allow(unsafe_code)]"));
        } else {
            assert!(uses.is_empty(), "unsafe in {f:?}");
        }
    }
    assert_eq!(
        allows, 1,
        "one `allow(unsafe_code)` in {root:?}/src, in `mod ffi`"
    );
}

#[test]
fn unsafe_code_is_only_in_the_adapters_ffi_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    only_in_ffi(root, "src/host/proxy_wasm.rs");
    only_in_ffi(&root.join("traefik-plugin"), "src/main.rs");
}
