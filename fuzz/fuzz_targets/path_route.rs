//! Path normalization and route matching. Besides "never panics", every normalized path must
//! be a fixed point, carry no dot segment, empty segment, encoded or raw slash/backslash or
//! control character, and match the same rule as the raw path it came from.
#![no_main]
use barbican::config::RouteConfig;
use barbican::route::{find, normalize_path, Route};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn routes() -> &'static [Route] {
    static R: OnceLock<Vec<Route>> = OnceLock::new();
    R.get_or_init(|| {
        [
            r#"{"match":{"path_prefix":"/api/"},"policy":"bypass"}"#,
            r#"{"match":{"path_exact":"/admin"},"policy":"deny"}"#,
            r#"{"match":{"path_prefix":"/caf%C3%A9/"},"policy":"deny"}"#,
            r#"{"match":{"path_regex":"/v[0-9]+/(users|groups)/[^/]*"},"policy":"api"}"#,
            r#"{"match":{"host":"*.lan","path_prefix":"/outpost.goauthentik.io/"},"policy":"bypass"}"#,
            r#"{"match":{"path_prefix":"/static/","methods":["GET"]},"policy":"bypass"}"#,
        ]
        .iter()
        .enumerate()
        .filter_map(|(i, j)| {
            let c: RouteConfig = serde_json::from_str(j).ok()?;
            Route::compile(i, &c).ok()
        })
        .collect()
    })
}

fn check_clean(p: &str) {
    assert!(p.starts_with('/'), "{p:?}");
    assert!(!p.contains("//"), "{p:?}");
    for seg in p.split('/') {
        let base = seg.split(';').next().unwrap_or(seg);
        assert!(base != "." && base != "..", "{p:?}");
    }
    let upper = p.to_ascii_uppercase();
    assert!(
        !upper.contains("%2F") && !upper.contains("%5C") && !p.contains('\\'),
        "{p:?}"
    );
    assert!(!p.chars().any(char::is_control), "{p:?}");
}

// Input: the raw path, then optionally a newline and the Host. Plain text, so the unit
// tests' path vectors are seeds as they are.
fuzz_target!(|data: &str| {
    let (raw, host) = data.split_once('\n').unwrap_or((data, "app.lan"));
    let method = if raw.len() % 2 == 0 { "GET" } else { "POST" };
    let host = barbican::route::normalize_host(host);
    let Ok(n) = normalize_path(raw) else { return };
    check_clean(&n.path);
    check_clean(&n.match_path);
    let pq = n.path_and_query();
    let again = normalize_path(&pq).expect("a normalized path normalizes");
    assert_eq!(again, n, "not idempotent: {raw:?}");
    let m = normalize_path(&n.match_path).expect("a match path normalizes");
    assert_eq!(m.path, n.match_path, "match path not normal: {raw:?}");
    let before = find(routes(), &host, &n.match_path, method, |_| false);
    let after = find(routes(), &host, &again.match_path, method, |_| false);
    assert_eq!(before, after, "{raw:?}");
});
