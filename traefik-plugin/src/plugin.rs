//! The Traefik adapter without the host: what to build from the plugin configuration, the
//! header list the engine reads, and what each request gets. `main.rs` only moves bytes
//! between this and the http-wasm host calls, so everything here is tested natively.
//!
//! Traefik's wasm plugins run with no sockets (DESIGN §5), so a configuration that would make
//! the engine call out — forward-auth sessions, key sets by URI or discovery, introspection —
//! is refused when the plugin starts instead of failing on the first request.

use crate::keyfiles::{KeyEvent, KeyFiles};
use barbican::config::{self, Config, ConfigError, SecretRef};
use barbican::request::Header;
use barbican::{Allow, Engine, MemStore, Millis, Request, Respond, Step};
use std::net::IpAddr;

/// What one request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Continue to the next handler after editing the request.
    Allow(Allow),
    /// Answer the client; the request goes no further.
    Respond(Respond),
}

/// One pooled guest instance: an engine built from the configuration, or the knowledge that
/// the configuration is unusable (then every request is refused).
#[derive(Debug)]
pub struct Instance {
    state: State,
}

#[derive(Debug)]
enum State {
    Ready(Box<Ready>),
    Broken,
}

#[derive(Debug)]
struct Ready {
    engine: Engine,
    /// Traefik has no data shared between instances: the "shared" level is this instance's.
    store: MemStore,
    needs_peer: bool,
    next_id: u32,
    /// `jwks.file` key sets this instance watches.
    files: KeyFiles,
}

// What Traefik refuses lives in the core (`barbican check --host traefik` reports it too).
use barbican::config::traefik_problems;

impl Instance {
    /// Builds the instance from the plugin configuration (Traefik's JSON, every scalar a
    /// string). Returns the problems found, all at once; when there are any the instance is
    /// broken and refuses every request.
    pub fn new(json: &[u8]) -> (Instance, Vec<ConfigError>) {
        match build(json) {
            Ok(mut engine) => {
                engine.store_is_per_instance();
                let needs_peer = engine.needs_peer();
                let ready = Ready {
                    files: KeyFiles::new(&engine),
                    engine,
                    store: MemStore::default(),
                    needs_peer,
                    next_id: 0,
                };
                (
                    Instance {
                        state: State::Ready(Box::new(ready)),
                    },
                    Vec::new(),
                )
            }
            Err(problems) => (
                Instance {
                    state: State::Broken,
                },
                problems,
            ),
        }
    }

    /// Whether the engine wants the client address (a rule has `allow_cidrs`): reading it
    /// costs a host call, so only then.
    pub fn needs_peer(&self) -> bool {
        matches!(&self.state, State::Ready(r) if r.needs_peer)
    }

    /// Whether the host must fetch this header's value for the engine: one of the values the
    /// core reads (`barbican::text::VALUES_READ`, kept in the core next to the rule for
    /// values that are not text); every other header reaches the engine by name with an
    /// empty value, which is all identity stripping and `match.headers` need.
    /// X-Forwarded-For only matters with the client address (trusted proxies in front of
    /// Traefik), so it is fetched only then: every value costs a host call.
    /// Names come as the host's bytes, before anything is known to be text.
    pub fn value_needed(&self, name: &[u8]) -> bool {
        barbican::text::in_values_read(name)
            && (self.needs_peer() || !barbican::ascii::lower_eq(name, b"x-forwarded-for"))
    }

    /// Reads the `jwks.file` key sets that changed (at most one check a second; the first
    /// call reads them all). What it found is for the log.
    pub fn refresh_keys(&mut self, now: Millis) -> Vec<KeyEvent> {
        match &mut self.state {
            State::Ready(r) => r.files.poll(&mut r.engine, now),
            State::Broken => Vec::new(),
        }
    }

    /// Whether the host must read the body first: only the browser's form_post that ends an
    /// OIDC login (its body is the id_token and state, and never goes to a backend).
    pub fn wants_body(&self, headers: &[Header<'_>]) -> bool {
        matches!(&self.state, State::Ready(r) if r.engine.wants_body(headers))
    }

    /// Mixes per-instance data into the login generator. Traefik's WASI random is the same
    /// in every instance (DESIGN §5), so the host passes the clock and addresses; the
    /// operator's secret keeps the output unpredictable.
    pub fn seed(&mut self, data: &[u8]) {
        if let State::Ready(r) = &mut self.state {
            r.engine.seed(data);
        }
    }

    /// The answer to a request the host could not read as text (`barbican::text`): 400.
    pub fn refuse_not_text(&mut self) -> Action {
        match &mut self.state {
            State::Ready(r) => match r.engine.refuse_not_text() {
                Step::Respond(resp) => Action::Respond(resp),
                _ => Action::Respond(unavailable("internal")),
            },
            State::Broken => Action::Respond(unavailable("config_invalid")),
        }
    }

    /// Decides one request. `headers` is what [`crate::reader::Reader`] read; `body` is given only when
    /// [`Instance::wants_body`] asked for it.
    pub fn handle(
        &mut self,
        headers: &[Header<'_>],
        body: Option<&[u8]>,
        peer: Option<IpAddr>,
        now: Millis,
    ) -> Action {
        let State::Ready(r) = &mut self.state else {
            return Action::Respond(unavailable("config_invalid"));
        };
        r.next_id = r.next_id.wrapping_add(1);
        let id = r.next_id;
        let req = Request {
            id,
            headers,
            peer,
            body,
        };
        match r.engine.decide(req, now, &mut r.store) {
            Step::Allow(a) => Action::Allow(a),
            Step::Respond(resp) => Action::Respond(resp),
            // Refused at start-up (`traefik_problems`), so this cannot happen; if it ever
            // does, the request is refused and the engine forgets it.
            Step::Call(_) | Step::Wait => {
                r.engine.cancel(id);
                Action::Respond(unavailable("callout_impossible"))
            }
        }
    }
}

/// The engine for a configuration that is valid and needs no network.
fn build(json: &[u8]) -> Result<Engine, Vec<ConfigError>> {
    let cfg = match config::parse_with(json, &mut read_secret) {
        Ok(cfg) => cfg,
        Err(mut problems) => {
            // `parse` validates too; when the document itself deserializes, say what Traefik
            // refuses as well, so an operator fixes everything in one pass.
            if let Ok(cfg) = serde_json::from_slice::<Config>(json) {
                problems.extend(traefik_problems(&cfg));
            }
            return Err(problems);
        }
    };
    let problems = traefik_problems(&cfg);
    if !problems.is_empty() {
        return Err(problems);
    }
    Engine::new(&cfg)
}

/// Secrets named in the configuration: Traefik hands the plugin the variables listed in
/// `settings.envs` and the directories listed in `settings.mounts` (static configuration).
/// Each instance reads them when it starts.
fn read_secret(r: SecretRef<'_>) -> Result<String, String> {
    match r {
        SecretRef::Env(n) => std::env::var(n).map_err(|e| match e {
            std::env::VarError::NotUnicode(_) => {
                format!("environment variable {n} is not UTF-8 text")
            }
            std::env::VarError::NotPresent => format!(
                "environment variable {n} is not set for the plugin: set it for Traefik and \
                 list it in experimental.localPlugins.<name>.settings.envs"
            ),
        }),
        SecretRef::File(p) => std::fs::read_to_string(p).map_err(|e| {
            format!(
                "file {p}: cannot read ({e}); mount its directory with \
                 experimental.localPlugins.<name>.settings.mounts"
            )
        }),
    }
}

/// The client address from http-wasm's `get_source_addr` ("1.2.3.4:5678", "[::1]:5678").
pub fn parse_source_addr(addr: &str) -> Option<IpAddr> {
    barbican::net::parse_peer(addr)
}

/// Every request of a broken instance, and anything that would need a callout: refused,
/// never passed through.
fn unavailable(reason: &'static str) -> Respond {
    Respond {
        status: 503,
        headers: Vec::new(),
        body: "Service Unavailable\n".into(),
        reason,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    /// The list `reader::Reader` gives the engine, from owned parts.
    fn header_list(
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        let mut out = vec![(":method".to_string(), method), (":path".to_string(), uri)];
        out.extend(headers);
        out
    }

    /// A test's owned header list as the engine reads it.
    fn bh(h: &[(String, String)]) -> Vec<Header<'_>> {
        barbican::request::borrow_all(h)
    }
    use barbican::config::TRAEFIK_NO_CALLOUTS as NO_CALLOUTS;

    const NOW: Millis = 1_800_000_000_000;
    /// RFC 8037's example Ed25519 public key.
    const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn req(method: &str, uri: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = vec![
            ("host".to_string(), "app.test".to_string()),
            ("x-forwarded-proto".to_string(), "http".to_string()),
        ];
        h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        header_list(method.into(), uri.into(), h)
    }

    fn ready(json: &str) -> Instance {
        let (inst, problems) = Instance::new(json.as_bytes());
        assert!(problems.is_empty(), "{problems:?}");
        inst
    }

    fn paths(problems: &[ConfigError]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn pseudo_headers_come_first_from_the_request() {
        let h = req("POST", "/a?b=1", &[("x-forwarded-proto", "https")]);
        assert_eq!(barbican::header(&h, ":method"), Some("POST"));
        assert_eq!(barbican::header(&h, ":path"), Some("/a?b=1"));
        let b = bh(&h);
        let v = barbican::request::View::read(&b, &[]);
        assert_eq!(v.authority, Some("app.test"));
        // The first X-Forwarded-Proto is Traefik's own.
        assert_eq!(v.forwarded_proto, Some("http"));
        let h = header_list("GET".into(), "/".into(), Vec::new());
        let b = bh(&h);
        let v = barbican::request::View::read(&b, &[]);
        assert_eq!(
            (v.authority, v.scheme, v.forwarded_proto),
            (None, None, None)
        );
    }

    /// What the host adapter does: headers whose values the instance does not need keep
    /// their name and lose their value.
    fn blanked(inst: &Instance, h: &[(String, String)]) -> Vec<(String, String)> {
        h.iter()
            .map(|(n, v)| {
                let keep = n.starts_with(':') || inst.value_needed(n.as_bytes());
                (n.clone(), if keep { v.clone() } else { String::new() })
            })
            .collect()
    }

    fn with<'a>(
        other: &[(&'a str, &'a str)],
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut all = other.to_vec();
        all.extend_from_slice(extra);
        all
    }

    /// Each Traefik instance keeps its own store: bounded by `local_max_entries`, not by
    /// `max_entries` (which on Envoy bounds one store for every worker).
    #[test]
    fn the_instance_store_holds_at_most_local_max_entries() {
        let secret = "0123456789abcdef0123456789abcdef";
        let cfg = format!(
            r#"{{"jwt": {{"providers": [{{"issuer": "https://idp.test/", "audiences": ["api"],
                   "hmac_secret": "{secret}", "algorithms": ["HS256"], "jwks": {{}}}}]}},
                "routes": [{{"match": {{"path_prefix": "/"}}, "policy": "api"}}]}}"#
        );
        let mut inst = ready(&cfg);
        let exp = NOW / 1000 + 600;
        for i in 0..1500 {
            let tok = hs256(
                secret,
                &format!(r#"{{"iss":"https://idp.test/","aud":"api","sub":"u{i}","exp":{exp}}}"#),
            );
            let bearer = format!("Bearer {tok}");
            let a = inst.handle(
                &bh(&req("GET", "/x", &[("authorization", &bearer)])),
                None,
                None,
                NOW,
            );
            assert!(matches!(a, Action::Allow(_)), "{i}");
        }
        let State::Ready(r) = &inst.state else {
            panic!("broken")
        };
        assert!(
            (500..=1024).contains(&r.store.map.len()),
            "{}",
            r.store.map.len()
        );
    }

    #[test]
    fn values_of_other_headers_never_change_the_answer() {
        let secret = "0123456789abcdef0123456789abcdef";
        let cfg = format!(
            r#"{{"jwt": {{"providers": [{{"issuer": "https://idp.test/", "audiences": ["api"],
                   "hmac_secret": "{secret}", "algorithms": ["HS256"], "jwks": {{}}}}]}},
                "strip_headers": ["x-trusted-user"],
                "routes": [
                  {{"match": {{"path_prefix": "/pub/"}}, "policy": "bypass"}},
                  {{"match": {{"path_prefix": "/need/", "headers": ["x-must"]}}, "policy": "bypass"}},
                  {{"match": {{"path_prefix": "/c/"}}, "policy": "api", "token_cookie": "at"}},
                  {{"match": {{"path_prefix": "/lan/"}}, "policy": "api",
                    "allow_cidrs": ["192.0.2.0/24"]}},
                  {{"match": {{"path_prefix": "/api/"}}, "policy": "api",
                    "allow_cors_preflight": true}}],
                "trusted_proxies": ["127.0.0.1/32"]}}"#
        );
        let exp = NOW / 1000 + 600;
        let tok = hs256(
            secret,
            &format!(r#"{{"iss":"https://idp.test/","aud":"api","sub":"u1","exp":{exp}}}"#),
        );
        let bearer = format!("Bearer {tok}");
        let cookie = format!("a=1; at={tok}");
        let other = [
            ("x-must", "1"),
            ("x-authentik-username", "evil"),
            ("x-trusted-user", "evil"),
            ("user-agent", "curl"),
            ("content-type", "text/html"),
        ];
        let peer = parse_source_addr("127.0.0.1:1");
        let cases = [
            req("GET", "/pub/x", &with(&other, &[])),
            req("GET", "/need/x", &with(&other, &[])),
            req(
                "GET",
                "/api/x",
                &with(&other, &[("authorization", &bearer)]),
            ),
            req(
                "GET",
                "/api/x",
                &with(&other, &[("authorization", "Bearer nope")]),
            ),
            req("GET", "/c/x", &with(&other, &[("cookie", &cookie)])),
            req(
                "GET",
                "/lan/x",
                &with(&other, &[("x-forwarded-for", "192.0.2.7")]),
            ),
            req(
                "OPTIONS",
                "/api/x",
                &with(
                    &other,
                    &[
                        ("origin", "https://ui.test"),
                        ("access-control-request-method", "GET"),
                    ],
                ),
            ),
            req("GET", "/nowhere", &with(&other, &[("accept", "text/html")])),
        ];
        for h in &cases {
            let mut full = ready(&cfg);
            let mut thin = ready(&cfg);
            assert_eq!(
                full.handle(&bh(h), None, peer, NOW),
                thin.handle(&bh(&blanked(&full, h)), None, peer, NOW),
                "{h:?}"
            );
        }
    }

    #[test]
    fn session_secrets_come_from_the_plugin_environment_and_mounted_files() {
        let dir = std::env::temp_dir().join(format!("barbican-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let file = dir.join("session");
        std::fs::write(&file, format!("{}\n", "f".repeat(40))).unwrap_or_default();
        std::env::set_var("BARBICAN_PLUGIN_TEST_OLD", "e".repeat(40));
        let cfg = |old: &str| {
            format!(
                r#"{{"session": {{"mode": "oidc", "oidc": {{"issuer": "http://idp", "client_id": "c",
                    "authorization_endpoint": "http://idp/auth", "redirect_uri": "http://app.test/cb",
                    "secrets": [{{"file": "{}"}}, {{"env": "{old}"}}], "flow": "form_post",
                    "jwks": {{"inline": {JWKS}}}}}}},
                   "routes": [{{"match": {{"path_prefix": "/"}}, "policy": "protected"}}]}}"#,
                file.display()
            )
        };
        let (inst, problems) = Instance::new(cfg("BARBICAN_PLUGIN_TEST_OLD").as_bytes());
        assert!(problems.is_empty(), "{problems:?}");
        assert!(matches!(inst.state, State::Ready(_)));
        // An unset variable: the instance refuses every request and says what to set.
        let (mut inst, problems) = Instance::new(cfg("BARBICAN_PLUGIN_TEST_UNSET").as_bytes());
        assert_eq!(paths(&problems), ["session.oidc.secrets[1]"]);
        assert!(
            problems[0].problem.contains("settings.envs"),
            "{}",
            problems[0]
        );
        match inst.handle(&bh(&req("GET", "/", &[])), None, None, NOW) {
            Action::Respond(r) => assert_eq!(r.status, 503),
            a => panic!("{a:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap_or_default();
    }

    #[test]
    fn x_forwarded_for_is_fetched_only_when_a_rule_uses_the_client_address() {
        let plain = ready(r#"{"routes": [{"match": {"path_prefix": "/"}, "policy": "bypass"}]}"#);
        let cidrs = ready(
            r#"{"routes": [{"match": {"path_prefix": "/"}, "policy": "api",
                "allow_cidrs": ["192.0.2.0/24"]}], "trusted_proxies": ["127.0.0.1/32"]}"#,
        );
        for name in ["X-Forwarded-For", "x-forwarded-for"] {
            assert!(!plain.value_needed(name.as_bytes()));
            assert!(cidrs.value_needed(name.as_bytes()));
        }
        for name in [
            "Cookie",
            "authorization",
            "Host",
            "accept",
            "x-forwarded-proto",
        ] {
            assert!(
                plain.value_needed(name.as_bytes()) && cidrs.value_needed(name.as_bytes()),
                "{name}"
            );
        }
        assert!(!plain.value_needed(b"user-agent"));
    }

    #[test]
    fn traefik_strings_are_accepted_for_numbers_and_booleans() {
        // What Traefik hands the plugin for a YAML config with numbers and booleans.
        let mut inst = ready(
            r#"{"limits": {"max_path_bytes": "512"},
                "jwt": {"providers": [{"issuer": "https://idp.test/", "audiences": ["a"],
                                       "clock_skew_s": "30", "jwks": {"inline": JWKS}}]},
                "routes": [{"match": {"path_prefix": "/api/"}, "policy": "api",
                            "allow_cors_preflight": "true"}],
                "default_policy": "deny"}"#
                .replace("JWKS", JWKS)
                .as_str(),
        );
        let long = format!("/api/{}", "a".repeat(600));
        match inst.handle(&bh(&req("GET", &long, &[])), None, None, NOW) {
            Action::Respond(r) => assert_eq!(r.status, 414),
            a => panic!("{a:?}"),
        }
        let preflight = req(
            "OPTIONS",
            "/api/x",
            &[
                ("origin", "https://ui.test"),
                ("access-control-request-method", "GET"),
            ],
        );
        assert!(matches!(
            inst.handle(&bh(&preflight), None, None, NOW),
            Action::Allow(_)
        ));
    }

    #[test]
    fn bypass_strips_identity_headers_and_deny_is_403() {
        let mut inst = ready(
            r#"{"routes": [{"match": {"path_prefix": "/pub/"}, "policy": "bypass"}],
                "default_policy": "deny"}"#,
        );
        let h = req(
            "GET",
            "/pub/x",
            &[("x_authentik_username", "evil"), ("remote-user", "evil")],
        );
        match inst.handle(&bh(&h), None, None, NOW) {
            Action::Allow(a) => {
                assert!(a.remove.contains(&"x_authentik_username".to_string()));
                assert!(a.remove.contains(&"remote-user".to_string()));
                assert_eq!(a.path, None);
            }
            a => panic!("{a:?}"),
        }
        match inst.handle(&bh(&req("GET", "/pub/../admin", &[])), None, None, NOW) {
            Action::Respond(r) => assert_eq!(r.status, 403),
            a => panic!("{a:?}"),
        }
        match inst.handle(&bh(&req("GET", "/pub%2f..%2fadmin", &[])), None, None, NOW) {
            Action::Respond(r) => assert_eq!(r.status, 400),
            a => panic!("{a:?}"),
        }
    }

    fn hs256(secret: &str, claims: &str) -> String {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        let sig = hmac_sha256::HMAC::mac(input.as_bytes(), secret.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    #[test]
    fn a_valid_token_sets_identity_and_a_bad_one_is_401() {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut inst = ready(&format!(
            r#"{{"jwt": {{"providers": [{{"issuer": "https://idp.test/", "audiences": ["api"],
                   "hmac_secret": "{secret}", "algorithms": ["HS256"], "jwks": {{}}}}]}},
                "routes": [{{"match": {{"path_prefix": "/api/"}}, "policy": "api",
                             "require_scopes": ["read"]}}]}}"#
        ));
        let exp = NOW / 1000 + 600;
        let good = hs256(
            secret,
            &format!(
                r#"{{"iss":"https://idp.test/","aud":"api","sub":"u1","preferred_username":"alice","scope":"read","exp":{exp}}}"#
            ),
        );
        let h = req(
            "GET",
            "/api/x",
            &[
                ("authorization", &format!("Bearer {good}")),
                ("x-authentik-username", "evil"),
            ],
        );
        match inst.handle(&bh(&h), None, None, NOW) {
            Action::Allow(a) => {
                assert!(a.remove.contains(&"x-authentik-username".to_string()));
                assert!(a
                    .set
                    .iter()
                    .any(|(n, v)| n == "x-authentik-username" && v == "alice"));
            }
            a => panic!("{a:?}"),
        }
        let bad = format!("{}x", &good[..good.len() - 1]);
        let h = req(
            "GET",
            "/api/x",
            &[("authorization", &format!("Bearer {bad}"))],
        );
        match inst.handle(&bh(&h), None, None, NOW) {
            Action::Respond(r) => {
                assert_eq!(r.status, 401);
                assert!(r
                    .headers
                    .iter()
                    .any(|(n, v)| n == "www-authenticate" && v.contains("invalid_token")));
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn normalized_path_is_what_the_upstream_gets() {
        let mut inst =
            ready(r#"{"routes": [{"match": {"path_prefix": "/pub/"}, "policy": "bypass"}]}"#);
        match inst.handle(&bh(&req("GET", "/pub//a/./b?q=1", &[])), None, None, NOW) {
            Action::Allow(a) => assert_eq!(a.path.as_deref(), Some("/pub/a/b?q=1")),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn allow_cidrs_reads_the_peer_only_when_a_rule_needs_it() {
        let json = r#"{"routes": [{"match": {"path_prefix": "/lan/"}, "policy": "api",
                                   "allow_cidrs": ["127.0.0.0/8"]}],
                       "jwt": {"providers": [{"issuer": "https://idp.test/",
                               "audiences": ["a"], "jwks": {"inline": JWKS}}]}}"#;
        let mut inst = ready(&json.replace("JWKS", JWKS));
        assert!(inst.needs_peer());
        let peer = parse_source_addr("127.0.0.1:40000");
        assert!(matches!(
            inst.handle(&bh(&req("GET", "/lan/x", &[])), None, peer, NOW),
            Action::Allow(_)
        ));
        let far = parse_source_addr("[2001:db8::1]:40000");
        match inst.handle(&bh(&req("GET", "/lan/x", &[])), None, far, NOW) {
            Action::Respond(r) => assert_eq!(r.status, 401),
            a => panic!("{a:?}"),
        }
        assert!(!ready(r#"{"routes": []}"#).needs_peer());
    }

    #[test]
    fn invalid_config_refuses_every_request() {
        for bad in [
            &b""[..],
            b"not json",
            b"[]",
            br#"{"routes": [{"match": {"path_prefix": "/x/"}, "policy": "bypas"}]}"#,
            br#"{"rutes": []}"#,
        ] {
            let (mut inst, problems) = Instance::new(bad);
            assert!(!problems.is_empty());
            for path in ["/", "/x/y", "/anything"] {
                match inst.handle(&bh(&req("GET", path, &[])), None, None, NOW) {
                    Action::Respond(r) => assert_eq!(r.status, 503),
                    a => panic!("{a:?}"),
                }
            }
        }
    }

    #[test]
    fn values_of_other_headers_never_change_a_session_answer() {
        let cfg = format!(
            r#"{{"session": {{"mode": "oidc", "oidc": {{"issuer": "http://idp", "client_id": "c",
                "authorization_endpoint": "http://idp/auth", "redirect_uri": "http://app.test/cb",
                "secrets": ["0123456789abcdef0123456789abcdef"], "flow": "form_post",
                "jwks": {{"inline": {JWKS}}}}}}},
               "routes": [{{"match": {{"path_prefix": "/"}}, "policy": "protected"}}]}}"#
        );
        // No rule uses the client address here, so X-Forwarded-For is never fetched.
        let other = [
            ("user-agent", "curl"),
            ("x-authentik-username", "evil"),
            ("x-forwarded-for", "203.0.113.9"),
        ];
        let form = "application/x-www-form-urlencoded";
        let body = b"id_token=a.b.c&state=xyz";
        type Case<'a> = (Vec<(String, String)>, Option<&'a [u8]>);
        let cases: [Case; 5] = [
            (
                req("GET", "/x", &with(&other, &[("accept", "text/html")])),
                None,
            ),
            (
                req(
                    "GET",
                    "/x",
                    &with(&other, &[("accept", "application/json")]),
                ),
                None,
            ),
            (
                req(
                    "GET",
                    "/x",
                    &with(
                        &other,
                        &[("accept", "text/html"), ("cookie", "barbican_session=zz")],
                    ),
                ),
                None,
            ),
            (
                req("POST", "/cb", &with(&other, &[("content-type", form)])),
                Some(&body[..]),
            ),
            (
                req(
                    "POST",
                    "/cb",
                    &with(&other, &[("content-type", "text/plain")]),
                ),
                Some(&body[..]),
            ),
        ];
        for (h, b) in &cases {
            let mut full = ready(&cfg);
            let mut thin = ready(&cfg);
            assert_eq!(
                full.handle(&bh(h), *b, None, NOW),
                thin.handle(&bh(&blanked(&full, h)), *b, None, NOW),
                "{h:?}"
            );
        }
    }

    #[test]
    fn oidc_sessions_run_form_post_with_inline_keys_only() {
        let oidc = |extra: &str| {
            format!(
                r#"{{"session": {{"mode": "oidc", "oidc": {{"issuer": "http://idp", "client_id": "c",
                    "authorization_endpoint": "http://idp/auth", "redirect_uri": "http://app.test/cb",
                    "secrets": ["0123456789abcdef0123456789abcdef"], {extra}}}}},
                   "routes": [{{"match": {{"path_prefix": "/"}}, "policy": "protected"}}]}}"#
            )
        };
        let ok = oidc(&format!(
            r#""flow": "form_post", "jwks": {{"inline": {JWKS}}}"#
        ));
        let mut inst = ready(&ok);
        match inst.handle(
            &bh(&req("GET", "/x", &[("accept", "text/html")])),
            None,
            None,
            NOW,
        ) {
            Action::Respond(r) => {
                assert_eq!(r.status, 302);
                let loc = &r.headers.iter().find(|(n, _)| n == "location").unwrap().1;
                assert!(
                    loc.starts_with("http://idp/auth?response_type=id_token&"),
                    "{loc}"
                );
                assert!(loc.ends_with("&response_mode=form_post"), "{loc}");
            }
            a => panic!("{a:?}"),
        }
        let mut cb = req("POST", "/cb", &[]);
        assert!(inst.wants_body(&bh(&cb)));
        cb[0].1 = "GET".into();
        assert!(!inst.wants_body(&bh(&cb)));
        assert!(!inst.wants_body(&bh(&req("POST", "/other", &[]))));

        let (_, p) = Instance::new(
            oidc(r#""token_endpoint": "http://idp/token", "cluster": "idp", "jwks": {"cluster": "idp"}"#)
                .as_bytes(),
        );
        assert_eq!(paths(&p), ["session.oidc.flow", "session.oidc.jwks"]);
        assert!(
            p.iter().all(|p| p.problem.starts_with(NO_CALLOUTS)),
            "{p:?}"
        );
    }

    #[test]
    fn configs_that_need_callouts_are_refused_at_start() {
        let (_, p) = Instance::new(
            br#"{"session": {"mode": "forward_auth",
                             "forward_auth": {"dialect": "authentik", "cluster": "ak"}},
                 "routes": [{"match": {"host": "*.lan"}, "policy": "protected"}]}"#,
        );
        assert_eq!(paths(&p), ["session"]);
        assert!(p[0].problem.starts_with(NO_CALLOUTS), "{p:?}");
        let (_, p) = Instance::new(
            br#"{"jwt": {"providers": [
                   {"issuer": "https://a/", "audiences": ["x"],
                    "jwks": {"uri": "http://a/jwks", "cluster": "a"}},
                   {"issuer": "https://b/", "audiences": ["x"], "jwks": {"cluster": "b"}},
                   {"issuer": "https://c/", "audiences": ["x"], "hmac_secret": "0123456789abcdef0123456789abcdef",
                    "algorithms": ["HS256"], "jwks": {}}]},
                 "routes": [{"match": {"path_prefix": "/api/"}, "policy": "api"}]}"#,
        );
        assert_eq!(
            paths(&p),
            ["jwt.providers[0].jwks.uri", "jwt.providers[1].jwks.cluster"]
        );
        assert!(p[0].problem.contains("`jwks.file`"), "{p:?}");
        let (_, p) = Instance::new(
            br#"{"introspection": {"cluster": "idp", "path": "/introspect",
                                   "client_id": "c", "client_secret": "s"},
                 "routes": [{"match": {"path_prefix": "/api/"}, "policy": "api",
                             "accept": ["introspection"]}]}"#,
        );
        assert_eq!(paths(&p), ["introspection", "routes[0].accept"]);
    }

    #[test]
    fn a_file_key_set_is_read_by_the_instance() {
        let dir = std::env::temp_dir().join(format!("barbican-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, JWKS).unwrap();
        let json = r#"{"routes": [{"match": {"path_prefix": "/api/"}, "policy": "api"}],
                       "jwt": {"providers": [{"issuer": "https://idp.test/",
                               "audiences": ["a"], "jwks": {"file": "PATH"}}]}}"#;
        let mut inst = ready(&json.replace("PATH", &path.display().to_string()));
        let ev = inst.refresh_keys(NOW);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(!ev[0].is_error(), "{}", ev[0]);
        assert!(inst.refresh_keys(NOW + 10).is_empty(), "not due");
        let (mut broken, _) = Instance::new(b"{");
        assert!(broken.refresh_keys(NOW).is_empty());
    }

    #[test]
    fn core_problems_and_traefik_problems_are_reported_together() {
        let (_, p) = Instance::new(
            br#"{"jwt": {"providers": [{"issuer": "https://a/", "audiences": ["x"],
                                        "jwks": {"uri": "http://a/jwks", "cluster": "a"}}]},
                 "routes": [{"match": {"path_prefix": "/api/", "path_exact": "/x"},
                             "policy": "api"}]}"#,
        );
        let paths = paths(&p);
        assert!(paths.contains(&"routes[0].match"), "{p:?}");
        assert!(paths.contains(&"jwt.providers[0].jwks.uri"), "{p:?}");
    }
}
