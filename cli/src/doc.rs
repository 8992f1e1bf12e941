//! The configuration document as the native binary reads it: JSON or YAML (the same model;
//! YAML is turned into JSON first, so the core's parser and its JSON paths apply unchanged),
//! plus the two serve-only parts the core skips: `clusters` and `serve`.

use barbican::config::{Config, ConfigError, SecretRef};
use barbican::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A document read from a file, as JSON bytes for the core.
#[derive(Debug, Clone)]
pub struct Document {
    pub json: Vec<u8>,
    pub value: serde_json::Value,
}

/// Reads a document: YAML when the name ends in `.yaml`/`.yml`, JSON when `.json`, else
/// whichever parses (JSON first). Errors name the file and the line.
pub fn load(path: &str) -> Result<Document, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let value = match ext.as_deref() {
        Some("yaml" | "yml") => from_yaml(&bytes).map_err(|e| format!("{path}: {e}"))?,
        Some("json") => from_json(&bytes).map_err(|e| format!("{path}: {e}"))?,
        _ => from_json(&bytes)
            .or_else(|je| {
                from_yaml(&bytes).map_err(|ye| format!("neither JSON ({je}) nor YAML ({ye})"))
            })
            .map_err(|e| format!("{path}: {e}"))?,
    };
    // Pretty-printed so the core's line/column → JSON path mapping has lines to work with.
    let json = serde_json::to_vec_pretty(&value).map_err(|e| format!("{path}: {e}"))?;
    Ok(Document { json, value })
}

fn from_json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))
}

fn from_yaml(bytes: &[u8]) -> Result<serde_json::Value, String> {
    // serde_yaml_ng's messages name the line and column.
    serde_yaml_ng::from_slice(bytes).map_err(|e| format!("not valid YAML: {e}"))
}

/// Secrets given by name are read here as the proxy would read them: `check` then also says
/// whether this machine's environment and files hold them.
pub fn read_secret(r: SecretRef<'_>) -> Result<String, String> {
    match r {
        // Never VarError's own text: for a value that is not UTF-8 it quotes the value.
        SecretRef::Env(n) => std::env::var(n).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("environment variable {n} is not set (barbican reads its own environment)")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("environment variable {n} is not UTF-8 text")
            }
        }),
        // io::Error's text never holds the file's bytes (invalid UTF-8 is a fixed message).
        SecretRef::File(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("file {p}: cannot read: {e}"))
        }
    }
}

/// The engine for a document: the core's parse and validation (secrets read from this
/// process's environment and files), then every `jwks.file` read. All problems at once.
pub fn engine(doc: &Document) -> Result<(Config, Engine), Vec<ConfigError>> {
    let cfg = barbican::config::parse_with(&doc.json, &mut read_secret)?;
    let mut engine = Engine::new(&cfg)?;
    let problems = load_jwks_files(&mut engine);
    if problems.is_empty() {
        Ok((cfg, engine))
    } else {
        Err(problems)
    }
}

/// Reads every `jwks.file` the way the Traefik plugin does at start-up, so `check` says
/// whether the key set on this machine is usable and `explain` verifies tokens against it.
pub fn load_jwks_files(engine: &mut Engine) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for f in engine.jwks_files() {
        let outcome = std::fs::read(&f.path)
            .map_err(|e| format!("cannot read {}: {e}", f.path))
            .and_then(|doc| {
                engine
                    .set_jwks(f.provider, &doc)
                    .map_err(|e| format!("{}: {e}", f.path))
            });
        if let Err(problem) = outcome {
            problems.push(ConfigError {
                path: f.field,
                problem,
            });
        }
    }
    problems
}

/// Every cluster name the document uses, with the JSON path that names it: the names
/// `serve` must find in `clusters` (Envoy finds them in its bootstrap).
pub fn cluster_uses(cfg: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(s) = &cfg.session {
        if let Some(fa) = &s.forward_auth {
            out.push((fa.cluster.clone(), "session.forward_auth.cluster".into()));
        }
        if let Some(o) = &s.oidc {
            if let Some(c) = &o.cluster {
                out.push((c.clone(), "session.oidc.cluster".into()));
            }
            if let Some(c) = &o.jwks.cluster {
                out.push((c.clone(), "session.oidc.jwks.cluster".into()));
            }
        }
    }
    for (i, p) in cfg.jwt.iter().flat_map(|j| j.providers.iter()).enumerate() {
        if let Some(c) = &p.jwks.cluster {
            out.push((c.clone(), format!("jwt.providers[{i}].jwks.cluster")));
        }
    }
    if let Some(i) = &cfg.introspection {
        out.push((i.cluster.clone(), "introspection.cluster".into()));
    }
    out
}

/// Where a cluster is: `http://host[:port]` or `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    /// Host name or address, without brackets.
    pub host: String,
    pub port: u16,
}

impl Upstream {
    /// `host[:port]` as a Host header value (brackets around IPv6; no default port).
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    pub fn parse(url: &str) -> Result<Upstream, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err("must be an http:// or https:// URL".into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(
                "give scheme, host and port only (http://host:port): the paths come from the \
                 document's fields"
                    .into(),
            );
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or("unclosed [ in the host")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("junk after ]")?),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("the port must be a number from 1 to 65535")?,
        };
        Ok(Upstream { tls, host, port })
    }
}

/// More threads than this would only contend for the one engine lock.
pub const MAX_WORKERS: usize = 64;

/// serve's own settings (`serve` in the document). Every bound has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// `ADDRESS:PORT` to listen on; `--listen` overrides it. Default `127.0.0.1:9091`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Connections open at once; more wait in the listen queue.
    #[serde(default = "d1024")]
    pub max_connections: usize,
    /// Auth requests being decided at once (across connections); more get 503.
    #[serde(default = "d1024")]
    pub max_concurrent_requests: usize,
    /// The request line and headers together (at least 8192); a larger request gets 431.
    #[serde(default = "d32768")]
    pub max_header_bytes: usize,
    /// A request body read for the engine (the OIDC form_post); larger gets 413.
    #[serde(default = "d65536")]
    pub max_body_bytes: usize,
    /// An auth request's whole life, callouts included; past it, 503.
    #[serde(default = "d10000")]
    pub request_timeout_ms: u64,
    /// A connection that sends no complete request head for this long is closed.
    #[serde(default = "d30000")]
    pub idle_timeout_ms: u64,
    /// On SIGTERM: how long in-flight requests may take before the process exits anyway.
    #[serde(default = "d10000")]
    pub shutdown_grace_ms: u64,
    /// Extra CA certificates (PEM) trusted for https clusters, besides the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Threads answering requests. 1 (the default): one thread accepts and answers every
    /// connection, so a new connection wakes no other thread. Traefik's forwardAuth opens a
    /// connection for most auth requests (Go's default of 2 idle connections per host), and
    /// with wrk opening one per request one thread cut serve's CPU per request from 46 to
    /// 34 µs (context switches per request 1.5 -> 0.2) against two work-stealing workers.
    /// One thread answers tens of thousands of cached decisions a second; more are for a
    /// proxy sending more than that on a machine with cores to spare.
    #[serde(default = "d1")]
    pub workers: usize,
}

fn d1() -> usize {
    1
}

fn d1024() -> usize {
    1024
}
fn d32768() -> usize {
    32 * 1024
}
fn d65536() -> usize {
    64 * 1024
}
fn d10000() -> u64 {
    10_000
}
fn d30000() -> u64 {
    30_000
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            listen: None,
            max_connections: d1024(),
            max_concurrent_requests: d1024(),
            max_header_bytes: d32768(),
            max_body_bytes: d65536(),
            request_timeout_ms: d10000(),
            idle_timeout_ms: d30000(),
            shutdown_grace_ms: d10000(),
            ca_file: None,
            workers: d1(),
        }
    }
}

/// The serve-only parts of a document, parsed and checked.
#[derive(Debug, Clone, Default)]
pub struct ServeParts {
    pub clusters: BTreeMap<String, Upstream>,
    pub settings: ServeSettings,
}

fn err(path: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Parses `clusters` and `serve` and checks that every cluster the document uses is listed.
/// `cfg` is `None` when the core refused the document: the serve parts are still checked, so
/// an operator sees every problem in one pass.
pub fn serve_parts(doc: &Document, cfg: Option<&Config>) -> Result<ServeParts, Vec<ConfigError>> {
    let mut errs = Vec::new();
    let mut parts = ServeParts::default();
    match doc.value.get("clusters") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(m)) => {
            for (name, v) in m {
                let at = format!("clusters.{name}");
                match v.as_str() {
                    Some(url) => match Upstream::parse(url) {
                        Ok(u) => {
                            parts.clusters.insert(name.clone(), u);
                        }
                        Err(e) => errs.push(err(at, e)),
                    },
                    None => errs.push(err(at, "must be a URL string (http://host:port)")),
                }
            }
        }
        Some(_) => errs.push(err(
            "clusters",
            "must be a map from cluster name to URL, e.g. {\"authentik\": \"http://127.0.0.1:9000\"}",
        )),
    }
    match doc.value.get("serve") {
        None | Some(serde_json::Value::Null) => {}
        Some(v) => match ServeSettings::deserialize(v) {
            Ok(s) => {
                let mut at_least = |name: &str, v: u64, min: u64| {
                    if v < min {
                        errs.push(err(
                            format!("serve.{name}"),
                            format!("must be at least {min}"),
                        ));
                    }
                };
                at_least("max_connections", s.max_connections as u64, 1);
                at_least(
                    "max_concurrent_requests",
                    s.max_concurrent_requests as u64,
                    1,
                );
                at_least("max_header_bytes", s.max_header_bytes as u64, 8192);
                at_least("request_timeout_ms", s.request_timeout_ms, 1);
                at_least("idle_timeout_ms", s.idle_timeout_ms, 1);
                at_least("workers", s.workers as u64, 1);
                if s.workers > MAX_WORKERS {
                    errs.push(err(
                        "serve.workers",
                        format!("must be at most {MAX_WORKERS}"),
                    ));
                }
                if let Some(l) = &s.listen {
                    if l.parse::<std::net::SocketAddr>().is_err() {
                        errs.push(err(
                            "serve.listen",
                            "must be ADDRESS:PORT, e.g. 127.0.0.1:9091 or [::]:9091",
                        ));
                    }
                }
                if let Some(f) = &s.ca_file {
                    if let Err(e) = crate::client::read_ca_file(f) {
                        errs.push(err("serve.ca_file", e));
                    }
                }
                parts.settings = s;
            }
            Err(e) => errs.push(err("serve", e.to_string())),
        },
    }
    if let Some(cfg) = cfg {
        for (name, at) in cluster_uses(cfg) {
            if !parts.clusters.contains_key(&name) {
                errs.push(err(
                    "clusters",
                    format!(
                        "missing {name:?} (used at {at}): give its URL, e.g. \"{name}\": \
                         \"http://127.0.0.1:9000\""
                    ),
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(parts)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: serde_json::Value) -> Document {
        Document {
            json: serde_json::to_vec(&v).unwrap_or_default(),
            value: v,
        }
    }

    #[test]
    fn upstream_urls_parse_with_default_ports() {
        let u = Upstream::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 9000));
        let u = Upstream::parse("https://auth.example/").unwrap();
        assert_eq!(
            (u.tls, u.port, u.authority()),
            (true, 443, "auth.example".to_string())
        );
        let u = Upstream::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("::1", "[::1]:8080".to_string())
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://x:0",
            "http://x:99999",
            "http://x/path",
            "x:80",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_used_cluster_must_be_listed_with_the_path_that_uses_it() {
        let v = serde_json::json!({
            "session": {"mode": "forward_auth",
                        "forward_auth": {"dialect": "authentik", "cluster": "authentik"}},
            "jwt": {"providers": [{"issuer": "http://idp/", "audiences": ["a"],
                                   "jwks": {"uri": "http://idp/jwks", "cluster": "idp"}}]},
            "routes": [{"match": {"path_prefix": "/"}, "policy": "protected"}],
            "clusters": {"idp": "http://127.0.0.1:1", "spare": "https://x"},
            "serve": {"listen": "nonsense", "max_connections": 0}
        });
        let d = doc(v);
        let cfg = barbican::config::parse(&d.json).unwrap();
        let errs = serve_parts(&d, Some(&cfg)).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|t| t.starts_with(
                "clusters: missing \"authentik\" (used at session.forward_auth.cluster)"
            )),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("serve.listen:")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("serve.max_connections:")),
            "{text:?}"
        );
        assert_eq!(text.len(), 3, "{text:?}");
    }

    #[test]
    fn workers_default_to_one_and_are_bounded() {
        let d = doc(serde_json::json!({"serve": {"listen": "127.0.0.1:1"}}));
        assert_eq!(serve_parts(&d, None).unwrap().settings.workers, 1);
        let d = doc(serde_json::json!({"serve": {"workers": 2}}));
        assert_eq!(serve_parts(&d, None).unwrap().settings.workers, 2);
        for bad in [0, MAX_WORKERS + 1] {
            let d = doc(serde_json::json!({"serve": {"workers": bad}}));
            let errs = serve_parts(&d, None).unwrap_err();
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].to_string().starts_with("serve.workers: must be at"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn the_core_skips_clusters_and_serve() {
        let d = doc(serde_json::json!({
            "routes": [], "clusters": {"a": "http://127.0.0.1:1"}, "serve": {"listen": "x"}}));
        assert!(barbican::config::parse(&d.json).is_ok());
        let bad = doc(serde_json::json!({"serve": {"lisen": "127.0.0.1:1"}}));
        let errs = serve_parts(&bad, None).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .starts_with("serve: unknown field `lisen`"),
            "{errs:?}"
        );
    }

    #[test]
    fn yaml_and_json_give_the_same_document() {
        let dir = std::env::temp_dir().join(format!("barbican-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let y = dir.join("c.yaml");
        std::fs::write(
            &y,
            "routes:\n  - match: {path_prefix: /}\n    policy: bypass\n",
        )
        .unwrap();
        let j = dir.join("c.conf");
        std::fs::write(
            &j,
            r#"{"routes":[{"match":{"path_prefix":"/"},"policy":"bypass"}]}"#,
        )
        .unwrap();
        let a = load(y.to_str().unwrap()).unwrap();
        let b = load(j.to_str().unwrap()).unwrap();
        assert_eq!(a.value, b.value);
        // Unsuffixed YAML is recognised by content.
        let n = dir.join("c");
        std::fs::write(&n, "routes: []\n").unwrap();
        assert_eq!(
            load(n.to_str().unwrap()).unwrap().value["routes"],
            serde_json::json!([])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
