//! Properties of path normalization and route matching, checked on generated paths
//! (proptest). Paths are built from the pieces that make normalizers disagree: dot segments
//! plain and encoded, empty segments, `;` parameters, escapes of unreserved and reserved
//! bytes, backslashes, controls, non-ASCII; plus arbitrary text.
//!
//! The reference for "where a path really goes" is RFC 3986 §6.2.2 normalization written
//! out independently here (decode unreserved escapes, §5.2.4 remove_dot_segments), with
//! empty segments merged as Envoy (`merge_slashes`) and nginx do, and each segment's `;`
//! parameters dropped after dot removal, as servers that honour parameters (Tomcat, Jetty)
//! route — the reading Barbican's match path follows (see `NormalizedPath::match_path`).

use super::*;
use crate::cache::MemStore;
use crate::decision::{Engine, Request, Step};
use crate::path::is_unreserved;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, FileFailurePersistence};

/// Rules the decision properties run against; no session, so every decision is immediate.
const CONFIG: &str = r#"{
  "routes": [
    {"name": "api", "match": {"path_prefix": "/api/"}, "policy": "bypass"},
    {"name": "admin", "match": {"path_prefix": "/admin/"}, "policy": "deny"},
    {"name": "exact", "match": {"path_exact": "/a-b.c~d"}, "policy": "bypass"},
    {"name": "regex", "match": {"path_regex": "/v[0-9]+/[a-z]+/.*"}, "policy": "bypass"},
    {"name": "utf8", "match": {"path_prefix": "/caf%C3%A9/"}, "policy": "bypass"}
  ],
  "default_policy": "deny"
}"#;

fn config() -> RunConfig {
    RunConfig {
        cases: 512,
        // Inside V8 (wasm32-wasip1) there is no working directory to persist failures in;
        // a failure prints its minimal case, which goes into route.rs's tests by hand.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..RunConfig::default()
    }
}

/// Segments that exercise the normalizer; plain words among them so rules can match.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "api", "admin", "a-b.c~d", "v1", "users", "x", "caf%C3%A9", "café",
        ]).prop_map(String::from),
        3 => prop::sample::select(vec![
            "", ".", "..", "%2e", "%2E%2e", ".%2E", "%2e.", "...", ".a", "a.",
        ]).prop_map(String::from),
        2 => prop::sample::select(vec![
            ";", ";x", "a;b", "..;", ".;x", "%3B", "%61pi", "%41dmin", "%7e", "%7E", "%2D",
            "%5F", "%2f", "%2F", "%5c", "\\", "%00", "%1f", "%7F", " ", "#", "%zz", "%4",
            "\u{85}", "\u{7f}", "\t", "%25", "%252e",
        ]).prop_map(String::from),
        2 => "[a-zA-Z0-9._~;%-]{0,6}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (prop::collection::vec(segment(), 0..8), prop::option::of("[a-z=&/.%]{0,8}"))
            .prop_map(|(segs, q)| {
                let mut p = format!("/{}", segs.join("/"));
                if let Some(q) = q {
                    p.push('?');
                    p.push_str(&q);
                }
                p
            }),
        1 => "/\\PC{0,24}",
        1 => "\\PC{0,12}",
    ]
}

/// RFC 3986 §5.2.4 remove_dot_segments, applied after merging empty segments.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let last = segs.len().saturating_sub(1);
    let mut trailing = false;
    for (i, s) in segs.iter().enumerate() {
        trailing = false;
        match *s {
            "" if i == last => trailing = true,
            "" => {}
            "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            s => out.push(s),
        }
    }
    let mut p = format!("/{}", out.join("/"));
    if trailing && !p.ends_with('/') {
        p.push('/');
    }
    p
}

/// RFC 3986 §6.2.2 on a path with no escapes left but unreserved ones (the generator's
/// clean paths): decode those, then resolve dots. `None` for what the RFC leaves ambiguous.
fn rfc3986(raw: &str) -> Option<String> {
    let path = raw.split('?').next()?;
    let mut decoded = String::new();
    let b = path.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let v = u8::from_str_radix(path.get(i + 1..i + 3)?, 16).ok()?;
            if !is_unreserved(v) {
                return None;
            }
            decoded.push(char::from(v));
            i += 3;
        } else {
            decoded.push(char::from(c));
            i += 1;
        }
    }
    let resolved = remove_dot_segments(&decoded);
    let stripped: Vec<&str> = resolved
        .split('/')
        .map(|s| s.split(';').next().unwrap_or(s))
        .collect();
    Some(remove_dot_segments(&stripped.join("/")))
}

/// The route and the kind of answer a fresh engine gives a GET for `path`.
fn decision(e: &mut Engine, path: &str) -> (Option<String>, &'static str) {
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "app.lan".to_string()),
    ];
    let headers = crate::request::borrow_all(&headers);
    let route = match e.route_of(&headers) {
        Ok((r, _)) => r.map(|r| r.name.clone()),
        Err(why) => Some(why.to_string()),
    };
    let step = e.decide(
        Request {
            id: 1,
            headers: &headers,
            peer: None,
            body: None,
        },
        0,
        &mut MemStore::default(),
    );
    let kind = match step {
        Step::Allow(_) => "allow",
        Step::Respond(r) if r.status == 403 => "403",
        Step::Respond(r) if r.status == 400 => "400",
        Step::Respond(_) => "other response",
        Step::Call(_) | Step::Wait => "callout",
    };
    (route, kind)
}

fn engine() -> Engine {
    Engine::from_json(CONFIG.as_bytes()).unwrap()
}

fn under_api(p: &str) -> bool {
    p == "/api" || p.starts_with("/api/")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalization_is_idempotent(raw in path()) {
        if let Ok(n) = normalize_path(&raw) {
            let pq = n.path_and_query();
            prop_assert_eq!(normalize_path(&pq), Ok(n.clone()));
            prop_assert_eq!(normalize_path(&n.match_path).map(|m| m.path), Ok(n.match_path.clone()));
        }
    }

    #[test]
    fn normalized_paths_hold_no_dot_segment_empty_segment_slash_escape_or_control(raw in path()) {
        if let Ok(n) = normalize_path(&raw) {
            for p in [&n.path, &n.match_path] {
                prop_assert!(p.starts_with('/'));
                prop_assert!(!p.contains("//"), "{:?} -> {:?}", raw, p);
                for seg in p.split('/') {
                    let base = seg.split(';').next().unwrap_or(seg);
                    prop_assert!(base != "." && base != "..", "{:?} -> {:?}", raw, p);
                }
                let upper = p.to_ascii_uppercase();
                prop_assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{:?}", p);
                prop_assert!(!p.contains('\\'), "{:?}", p);
                prop_assert!(!p.chars().any(char::is_control), "{:?} -> {:?}", raw, p);
            }
        }
    }

    #[test]
    fn the_decision_for_a_raw_path_is_the_decision_for_its_normalized_form(raw in path()) {
        let mut e = engine();
        if let Ok(n) = normalize_path(&raw) {
            prop_assert_eq!(decision(&mut e, &raw), decision(&mut e, &n.path_and_query()), "{:?}", raw);
        } else {
            prop_assert_eq!(decision(&mut e, &raw).1, "400", "{:?}", raw);
        }
    }

    #[test]
    fn a_rule_for_api_never_matches_a_path_that_leaves_api(raw in path()) {
        let mut e = engine();
        if let Some(reference) = rfc3986(&raw) {
            if !under_api(&reference) {
                let (route, _) = decision(&mut e, &raw);
                prop_assert_ne!(route.as_deref(), Some("api"), "{:?} normalizes to {:?}", raw, reference);
            }
        }
    }

    #[test]
    fn decoding_unreserved_escapes_never_changes_the_route(
        plain in "(/[a-zA-Z0-9._~-]{0,6}){1,5}",
        which in prop::collection::vec((any::<bool>(), any::<bool>()), 0..40),
    ) {
        let mut e = engine();
        let mut encoded = String::new();
        for (i, c) in plain.chars().enumerate() {
            match which.get(i) {
                Some((true, lower)) if c != '/' => {
                    let hex = format!("%{:02X}", u32::from(c));
                    encoded.push_str(&if *lower { hex.to_ascii_lowercase() } else { hex });
                }
                _ => encoded.push(c),
            }
        }
        prop_assert_eq!(decision(&mut e, &encoded), decision(&mut e, &plain), "{:?} vs {:?}", encoded, plain);
    }
}

/// The reference itself, on RFC 3986 §5.4's own examples (as paths) and merging.
#[test]
fn the_reference_resolves_dots_as_rfc_3986_says() {
    assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
    assert_eq!(remove_dot_segments("/mid/content=5/../6"), "/mid/6");
    assert_eq!(remove_dot_segments("/api/.."), "/");
    assert_eq!(remove_dot_segments("/api/."), "/api/");
    assert_eq!(remove_dot_segments("/api//x"), "/api/x");
    assert_eq!(rfc3986("/%61pi/%2e%2E/admin"), Some("/admin".into()));
    assert_eq!(rfc3986("/a%2Fb"), None);
}
