//! Route rules: first match wins, on host, normalized path, method and header presence.
//!
//! Rules are matched against a *normalized* path (`crate::path`) so that `/api/../admin` can
//! never ride a `/api/` bypass rule to `/admin` (measured with Envoy's default path
//! handling: DESIGN §4).

use crate::config::{GroupsMatch, MatchConfig, Policy, RouteConfig};
pub use crate::hostname::{normalize_host, HostPattern};
use crate::path::path_regex;
pub use crate::path::{normalize_path, NormalizedPath, PathError};

#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Without its trailing slash; matches on a segment boundary.
    Prefix(String),
    Exact(String),
    Regex(regex_lite::Regex),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) if p.is_empty() => true,
            PathMatch::Prefix(p) => {
                // The segment boundary first: one byte, and most paths fail on it or on length.
                let (path, p) = (path.as_bytes(), p.as_bytes());
                path.len() >= p.len()
                    && matches!(path.get(p.len()), None | Some(b'/'))
                    && path.get(..p.len()) == Some(p)
            }
            PathMatch::Exact(e) => e == path,
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// A compiled route rule.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub path: Option<PathMatch>,
    /// Upper-case method names; empty means any.
    pub methods: Vec<String>,
    /// Lower-case header names that must be present.
    pub headers: Vec<String>,
    pub policy: Policy,
    pub allow_cors_preflight: bool,
    pub require_groups: Vec<String>,
    pub groups_match: GroupsMatch,
}

impl Route {
    /// Compiles a validated rule. Errors only if the config skipped validation.
    pub fn compile(index: usize, r: &RouteConfig) -> Result<Route, String> {
        let m: &MatchConfig = &r.matcher;
        let hosts = match &m.host {
            Some(h) => h
                .to_vec()
                .iter()
                .map(|s| HostPattern::parse(s))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let path = if let Some(p) = &m.path_prefix {
            Some(PathMatch::Prefix(p.trim_end_matches('/').to_string()))
        } else if let Some(p) = &m.path_exact {
            Some(PathMatch::Exact(p.clone()))
        } else if let Some(re) = &m.path_regex {
            Some(PathMatch::Regex(path_regex(re)?))
        } else {
            None
        };
        Ok(Route {
            name: r.name.clone().unwrap_or_else(|| format!("routes[{index}]")),
            hosts,
            path,
            methods: m
                .methods
                .iter()
                .flatten()
                .map(|s| s.to_ascii_uppercase())
                .collect(),
            headers: m
                .headers
                .iter()
                .flatten()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            policy: r.policy,
            allow_cors_preflight: r.allow_cors_preflight,
            require_groups: r.require_groups.clone(),
            groups_match: r.groups_match,
        })
    }

    /// `host` normalized, `path` the normalized match path, `has_header` by lower-case name.
    pub fn matches(
        &self,
        host: &str,
        path: &str,
        method: &str,
        has_header: impl Fn(&str) -> bool,
    ) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host)))
            && self.path.as_ref().is_none_or(|p| p.matches(path))
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.headers.iter().all(|h| has_header(h))
    }
}

/// First matching rule, by index.
pub fn find(
    routes: &[Route],
    host: &str,
    path: &str,
    method: &str,
    has_header: impl Fn(&str) -> bool,
) -> Option<usize> {
    routes
        .iter()
        .position(|r| r.matches(host, path, method, &has_header))
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the path_route fuzz target: `/;x/admin/` matched as `//admin/`, past a
    /// rule for `/admin/` (the normalization side is in `path`'s tests).
    #[test]
    fn a_parameter_only_segment_does_not_hide_a_prefix() {
        let deny = PathMatch::Prefix("/admin".into());
        assert!(deny.matches(&normalize_path("/;jsessionid=1/admin/x").unwrap().match_path));
    }

    #[test]
    fn prefix_matches_on_segment_boundary() {
        let pre = PathMatch::Prefix("/api".into());
        assert!(pre.matches("/api"));
        assert!(pre.matches("/api/"));
        assert!(pre.matches("/api/v1"));
        assert!(!pre.matches("/apix"));
        assert!(!pre.matches("/ap"));
        assert!(PathMatch::Prefix(String::new()).matches("/anything"));
    }

    #[test]
    fn regex_is_anchored_at_both_ends() {
        let cfg: RouteConfig =
            serde_json::from_str(r#"{"match":{"path_regex":"/api/.*"},"policy":"bypass"}"#)
                .unwrap();
        let r = Route::compile(0, &cfg).unwrap();
        assert!(r.matches("h", "/api/x", "GET", |_| false));
        assert!(!r.matches("h", "/admin/api/x", "GET", |_| false));
    }

    /// Patterns that take exponential time in a backtracking engine, and the costliest
    /// shapes within [`PATH_REGEX_MAX_NFA_BYTES`] (found by growing each until refused).
    /// `bench/regex_cost.py` runs each case under callgrind and counts the instructions of
    /// [`regex_cost_probe`] alone against its budget.
    pub(crate) const REGEX_COST_CASES: &[&str] = &[
        "/api/.*",
        "/(a|aa)+",
        "/(a+)+b",
        "/(.*a){20}",
        "/([a-z]+)*[0-9]",
        "/(.*a){83}",
        "/(?:.*){174}",
        "/(?:[^/]*x?){83}",
    ];

    /// The longest path a config allows (`limits.max_path_bytes` is at most 65,536; the
    /// default is 8,192), all `a` and ending in `!` so no case matches early.
    fn regex_cost_path(n: usize) -> String {
        format!("/{}!", "a".repeat(n.saturating_sub(2)))
    }

    #[inline(never)]
    fn regex_cost_probe(r: &Route, path: &str) -> bool {
        r.matches("h", path, "GET", |_| false)
    }

    #[test]
    fn pathological_path_regexes_stay_linear_and_big_ones_are_refused() {
        // BARBICAN_REGEX_CASE picks one case (bench/regex_cost.py); unset, all run.
        let only: Option<usize> = std::env::var("BARBICAN_REGEX_CASE")
            .ok()
            .and_then(|v| v.parse().ok());
        let n: usize = std::env::var("BARBICAN_REGEX_PATH_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            // Short by default: `cargo test` (and its run inside V8) checks the answers; the
            // bench passes the long paths whose cost it counts.
            .unwrap_or(2048);
        let path = regex_cost_path(n);
        for (i, re) in REGEX_COST_CASES.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let cfg: RouteConfig = serde_json::from_value(
                serde_json::json!({"match": {"path_regex": re}, "policy": "bypass"}),
            )
            .unwrap();
            let r = Route::compile(0, &cfg).unwrap();
            let expect = re.contains(".*){") || re.contains("x?)");
            assert_eq!(regex_cost_probe(&r, &path), expect, "{re}");
        }
        // What the crate's own 10 MiB bound lets through and takes seconds: refused.
        for re in [
            "/(?:(?:[a-z]{0,30}){0,30}){0,30}",
            "/(?:\\w{0,100}){0,100}",
            "/(.*a){200}",
            "/(?:.*){500}",
        ] {
            let e = path_regex(re).unwrap_err();
            assert!(e.contains("16 KiB"), "{re}: {e}");
        }
        assert!(path_regex("/[a-z0-9-]{1,64}/feed\\.(rss|atom)").is_ok());
    }

    #[test]
    fn first_match_wins_and_methods_headers_filter() {
        let routes: Vec<Route> = [
            r#"{"match":{"path_prefix":"/api/","methods":["post"]},"policy":"deny"}"#,
            r#"{"match":{"path_prefix":"/api/","headers":["X-Key"]},"policy":"api"}"#,
            r#"{"match":{"path_prefix":"/api/"},"policy":"bypass"}"#,
        ]
        .iter()
        .enumerate()
        .map(|(i, j)| Route::compile(i, &serde_json::from_str(j).unwrap()).unwrap())
        .collect();
        assert_eq!(find(&routes, "h", "/api/x", "POST", |_| false), Some(0));
        assert_eq!(
            find(&routes, "h", "/api/x", "GET", |h| h == "x-key"),
            Some(1)
        );
        assert_eq!(find(&routes, "h", "/api/x", "GET", |_| false), Some(2));
        assert_eq!(find(&routes, "h", "/other", "GET", |_| false), None);
    }
}
