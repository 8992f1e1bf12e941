//! OAuth 2.0 token introspection (RFC 7662): how to ask an IdP about a bearer token and how
//! to read what it says.
//!
//! Authentik serves it at `/application/o/introspect/` (`providers/oauth2/views/
//! introspection.py`): the answer is the token's stored ID-token claims (`iss`, `sub`, `aud`,
//! `exp`, `preferred_username`, `groups`, ...) plus `active`, `scope` and `client_id`, or just
//! `{"active": false}`. node-oidc-provider (`lib/actions/introspection.js`) answers `active`,
//! `sub`, `client_id`, `exp`, `iat`, `iss`, `aud`, `scope`, `token_type`.
//!
//! The answer decides whether a request reaches the upstream, so it is read strictly: `active`
//! must be a JSON boolean, appear once, and nothing in the answer may be ambiguous.

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

/// How Barbican proves itself to the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: `Authorization: Basic`, id and secret form-encoded first.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body. Use this for
    /// Authentik: its `extract_client_auth` (`providers/oauth2/utils.py`) does not
    /// form-decode Basic credentials, and the client secrets it generates contain
    /// punctuation, so RFC-conforming Basic would be refused. Its own outpost posts them
    /// (`proxyv2/application/auth_bearer.go`).
    Post,
}

/// Answers larger than this are refused unread: an introspection answer is a handful of
/// claims, and the core must stay bounded inside a proxy worker.
const MAX_BODY: usize = 64 * 1024;

/// The callout for RFC 7662 introspection: POST form body `token=<t>&token_type_hint=access_token`
/// (+ client_id/client_secret in the body for Post), headers: :method POST, :path, :authority, :scheme http,
/// content-type application/x-www-form-urlencoded, accept application/json, content-length,
/// authorization Basic base64(urlencode(id):urlencode(secret)) for Basic (RFC 6749 §2.3.1 form-encodes id and secret before base64).
pub fn build(
    path: &str,
    authority: &str,
    token: &str,
    client_id: &str,
    client_secret: &str,
    auth: ClientAuth,
) -> (Vec<(String, String)>, Vec<u8>) {
    let mut body = format!("token={}&token_type_hint=access_token", form_encode(token));
    if auth == ClientAuth::Post {
        body.push_str("&client_id=");
        body.push_str(&form_encode(client_id));
        body.push_str("&client_secret=");
        body.push_str(&form_encode(client_secret));
    }
    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), "POST".into()),
        (":path".into(), path.to_string()),
        (":authority".into(), authority.to_string()),
        (":scheme".into(), "http".into()),
        (
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ),
        ("accept".into(), "application/json".into()),
        ("content-length".into(), body.len().to_string()),
    ];
    if auth == ClientAuth::Basic {
        let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
        headers.push(("authorization".into(), format!("Basic {b64}")));
    }
    (headers, body.into_bytes())
}

/// `application/x-www-form-urlencoded` for one name or value. Everything but ALPHA, DIGIT and
/// `-._~` is escaped, space included (`%20`, which every form decoder reads, where a `+`
/// would be a literal plus to a plain percent-decoder). Bearer tokens routinely carry `+`,
/// `/` and `=` (base64), which a form decoder would otherwise turn into a space or a split.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What an introspection answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspected {
    pub active: bool,
    pub sub: Option<String>,
    /// `username`, else `preferred_username`: Authentik's answer carries only the latter.
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// From `scope`, space separated (RFC 7662 §2.2, RFC 6749 §3.3).
    pub scopes: Vec<String>,
    /// From the configured claim if present (an array of strings, or one string = one group).
    pub groups: Vec<String>,
    /// Seconds since the epoch.
    pub exp: Option<u64>,
    pub iss: Option<String>,
    /// `aud`, a string or an array of strings.
    pub aud: Vec<String>,
    /// The token is sender-constrained (`cnf`, RFC 8705 / RFC 9449): its holder must prove
    /// possession of a key, which Barbican does not check — such a token is refused.
    pub bound: bool,
}

impl Introspected {
    fn inactive() -> Introspected {
        Introspected {
            active: false,
            sub: None,
            username: None,
            client_id: None,
            email: None,
            name: None,
            scopes: Vec::new(),
            groups: Vec::new(),
            exp: None,
            iss: None,
            aud: Vec::new(),
            bound: false,
        }
    }
}

/// Why an introspection answer could not be used. None of these carries the token or the
/// answer's text, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntrospectionError {
    /// Not 200. 0 means the host could not reach the endpoint.
    Status(u16),
    NotJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    ActiveMissing,
    TooLarge,
    /// A member we read has the wrong type or appears more than once (see [`REPEATED`] for a
    /// repeated member we do not read).
    BadField(&'static str),
}

/// The `BadField` name for a repeated member Barbican does not otherwise read.
pub const REPEATED: &str = "repeated member";

impl IntrospectionError {
    /// A stable code for log lines and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IntrospectionError::Status(0) => "introspection_unreachable",
            IntrospectionError::Status(_) => "introspection_status",
            IntrospectionError::NotJson => "introspection_not_json",
            IntrospectionError::NotAnObject => "introspection_not_object",
            IntrospectionError::ActiveMissing => "introspection_active_missing",
            IntrospectionError::TooLarge => "introspection_too_large",
            IntrospectionError::BadField(_) => "introspection_bad_field",
        }
    }
}

impl fmt::Display for IntrospectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntrospectionError::Status(0) => f.write_str(
                "introspection endpoint unreachable (connect failure or timeout): check its \
                 cluster, authority and timeout",
            ),
            IntrospectionError::Status(s @ (401 | 403)) => write!(
                f,
                "introspection endpoint answered {s}: it refused Barbican's client \
                 credentials — check client_id, client_secret and the client auth method \
                 (basic/post)"
            ),
            IntrospectionError::Status(s) => write!(
                f,
                "introspection endpoint answered {s}, not 200 (RFC 7662 §2.2): check the \
                 endpoint path (Authentik: /application/o/introspect/) and the client auth \
                 method"
            ),
            IntrospectionError::NotJson => f.write_str(
                "introspection answer is not valid JSON: check that the path points at the \
                 introspection endpoint (Authentik: /application/o/introspect/)",
            ),
            IntrospectionError::NotAnObject => f.write_str(
                "introspection answer is JSON but not an object (RFC 7662 §2.2 answers an \
                 object): check the endpoint path",
            ),
            IntrospectionError::ActiveMissing => f.write_str(
                "introspection answer has no `active` member, which RFC 7662 §2.2 requires: \
                 check that the path points at the introspection endpoint",
            ),
            IntrospectionError::TooLarge => write!(
                f,
                "introspection answer exceeds {} KiB and was refused unread: check the \
                 endpoint path, or trim the claims the IdP maps into its tokens",
                MAX_BODY / 1024
            ),
            IntrospectionError::BadField(field) if *field == REPEATED => f.write_str(
                "introspection answer repeats a member name; JSON with repeated names is \
                 ambiguous (RFC 8259 §4), so it is refused: fix the IdP's claim mappings or \
                 whatever rewrites its answers",
            ),
            IntrospectionError::BadField(field) => {
                let expected = match *field {
                    "active" => "a JSON boolean (true/false, not a string)",
                    "exp" => "a non-negative number of seconds since the epoch",
                    "scope" => "a space-separated string (RFC 7662 §2.2)",
                    "aud" => "a string or an array of strings",
                    "groups" => {
                        "an array of strings or a string (check the configured groups claim)"
                    }
                    _ => "a string",
                };
                write!(
                    f,
                    "introspection answer: `{field}` must appear once and be {expected}"
                )
            }
        }
    }
}

impl std::error::Error for IntrospectionError {}

/// Top-level members Barbican reads. A repeat of any of these is reported by name.
const READ: &[&str] = &[
    "active",
    "cnf",
    "sub",
    "username",
    "preferred_username",
    "client_id",
    "email",
    "name",
    "scope",
    "exp",
    "iss",
    "aud",
];

/// Parses a 200 answer body. `active` must be present and a JSON boolean (a string "true" is refused);
/// inactive answers return Ok with active=false and nothing else needed. Body size cap 64 KiB.
/// Non-200 → Err(Status). Numbers for exp may be float; negative/NaN → BadField("exp").
pub fn parse(
    status: u16,
    body: &[u8],
    groups_claim: &str,
) -> Result<Introspected, IntrospectionError> {
    if status != 200 {
        return Err(IntrospectionError::Status(status));
    }
    if body.len() > MAX_BODY {
        return Err(IntrospectionError::TooLarge);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let members = TopLevel { groups_claim }
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| match e.classify() {
            // The only data error the visitor can meet is a top level that is not an object.
            serde_json::error::Category::Data => IntrospectionError::NotAnObject,
            _ => IntrospectionError::NotJson,
        })?;
    let Members {
        mut read,
        groups,
        repeated,
    } = members;
    if let Some(name) = repeated {
        return Err(IntrospectionError::BadField(name));
    }
    let active = match read.remove("active") {
        None => return Err(IntrospectionError::ActiveMissing),
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(IntrospectionError::BadField("active")),
    };
    if !active {
        // RFC 7662 §2.2: an inactive answer SHOULD carry nothing else; whatever it carries
        // is not read.
        return Ok(Introspected::inactive());
    }
    let mut take = |name: &'static str| string(read.remove(name), name);
    let username = match take("username")? {
        Some(u) => Some(u),
        None => take("preferred_username")?,
    };
    let (sub, client_id, email, name, iss, scope) = (
        take("sub")?,
        take("client_id")?,
        take("email")?,
        take("name")?,
        take("iss")?,
        take("scope")?,
    );
    let bound = !matches!(read.remove("cnf"), None | Some(Value::Null));
    Ok(Introspected {
        bound,
        active,
        sub,
        username,
        client_id,
        email,
        name,
        iss,
        scopes: scope
            .map(|s| {
                s.split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        exp: seconds(read.remove("exp"))?,
        aud: strings(read.remove("aud"), "aud")?,
        groups: strings(groups, "groups")?,
    })
}

/// An optional string member. `null` counts as absent: some IdPs serialize unset claims as
/// `null` rather than omitting them.
fn string(v: Option<Value>, name: &'static str) -> Result<Option<String>, IntrospectionError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(IntrospectionError::BadField(name)),
    }
}

/// A string or an array of strings (JWT `aud`, RFC 7519 §4.1.3; group claims).
fn strings(v: Option<Value>, name: &'static str) -> Result<Vec<String>, IntrospectionError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                _ => Err(IntrospectionError::BadField(name)),
            })
            .collect(),
        Some(_) => Err(IntrospectionError::BadField(name)),
    }
}

/// `exp` in whole seconds. JSON allows `1767225600.5`; a fraction is dropped, which only
/// ends reuse earlier.
fn seconds(v: Option<Value>) -> Result<Option<u64>, IntrospectionError> {
    let bad = IntrospectionError::BadField("exp");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s) => Ok(Some(s)),
            None => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
                _ => Err(bad),
            },
        },
        Some(_) => Err(bad),
    }
}

/// The answer's top-level members that matter, as the visitor found them.
struct Members {
    /// Members named in [`READ`].
    read: BTreeMap<String, Value>,
    /// The configured groups claim.
    groups: Option<Value>,
    /// The first member name seen twice.
    repeated: Option<&'static str>,
}

/// Walks the top-level object once, keeping what [`READ`] and the groups claim name and
/// noting any repeated name. serde_json's own maps keep the last of repeated names, while
/// other parsers keep the first; an answer saying `"active":false,"active":true` would mean
/// different things to the IdP's tooling and to Barbican, so repeats are refused. Names are
/// compared after unescaping, so `"act\u0069ve"` repeats `"active"`.
struct TopLevel<'a> {
    groups_claim: &'a str,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Members;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Members, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut out = Members {
            read: BTreeMap::new(),
            groups: None,
            repeated: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            let known = READ.iter().copied().find(|n| *n == key);
            let is_groups = !self.groups_claim.is_empty() && key == self.groups_claim;
            if seen.contains(&key) {
                if out.repeated.is_none() {
                    out.repeated = Some(match known {
                        Some(n) => n,
                        None if is_groups => "groups",
                        None => REPEATED,
                    });
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if known.is_none() && !is_groups {
                map.next_value::<IgnoredAny>()?;
                seen.insert(key);
                continue;
            }
            let v: Value = map.next_value()?;
            if is_groups {
                out.groups = Some(v.clone());
            }
            if known.is_some() {
                out.read.insert(key.clone(), v);
            }
            seen.insert(key);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn get<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// An independent `application/x-www-form-urlencoded` decoder (WHATWG URL §5.1), to
    /// check what an IdP reads back.
    fn form_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }

    fn form(body: &[u8]) -> Vec<(String, String)> {
        std::str::from_utf8(body)
            .unwrap()
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (form_decode(k), form_decode(v))
            })
            .collect()
    }

    fn ok(body: &str) -> Introspected {
        parse(200, body.as_bytes(), "groups").unwrap()
    }

    fn err(body: &str) -> IntrospectionError {
        parse(200, body.as_bytes(), "groups").unwrap_err()
    }

    #[test]
    fn post_auth_puts_the_client_in_the_form_body_like_authentiks_outpost() {
        let (h, body) = build(
            "/application/o/introspect/",
            "authentik.lan",
            "tok",
            "Xk3client",
            "s3cr:t&x",
            ClientAuth::Post,
        );
        assert_eq!(
            h,
            vec![
                (":method".to_string(), "POST".to_string()),
                (":path".into(), "/application/o/introspect/".into()),
                (":authority".into(), "authentik.lan".into()),
                (":scheme".into(), "http".into()),
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into()
                ),
                ("accept".into(), "application/json".into()),
                ("content-length".into(), body.len().to_string()),
            ],
            "no authorization header with post auth"
        );
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "token=tok&token_type_hint=access_token&client_id=Xk3client&client_secret=s3cr%3At%26x"
        );
        assert_eq!(
            form(&body),
            vec![
                ("token".to_string(), "tok".to_string()),
                ("token_type_hint".into(), "access_token".into()),
                ("client_id".into(), "Xk3client".into()),
                ("client_secret".into(), "s3cr:t&x".into()),
            ]
        );
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret_before_base64() {
        // RFC 6749 §2.3.1; oidc-provider's decodeAuthToken undoes exactly this.
        let (h, body) = build(
            "/token/introspection",
            "op:3000",
            "tok",
            "urn:barbican:client",
            "p+ss w/rd=",
            ClientAuth::Basic,
        );
        let auth = get(&h, "authorization").unwrap();
        let raw = STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert_eq!(raw, "urn%3Abarbican%3Aclient:p%2Bss%20w%2Frd%3D");
        // The only unencoded ':' is the separator, so the id survives the split.
        let (id, secret) = raw.split_once(':').unwrap();
        assert_eq!(form_decode(id), "urn:barbican:client");
        assert_eq!(form_decode(secret), "p+ss w/rd=");
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "token=tok&token_type_hint=access_token",
            "credentials never go in the body with basic auth"
        );
        assert_eq!(get(&h, "content-length"), Some("38"));
    }

    #[test]
    fn tokens_with_plus_slash_and_equals_reach_the_idp_unchanged() {
        // A base64 token: unencoded, '+' would arrive as a space and '=' could split a pair.
        let token = "ab+cd/ef==";
        let (h, body) = build("/i", "idp", token, "c", "s", ClientAuth::Post);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.starts_with("token=ab%2Bcd%2Fef%3D%3D&"), "{text}");
        assert_eq!(form(&body).first().unwrap().1, token);
        assert_eq!(get(&h, "content-length").unwrap(), body.len().to_string());
    }

    #[test]
    fn form_encoding_round_trips_every_character() {
        let all: String = (1u8..0x80).map(char::from).chain("é€😀".chars()).collect();
        let enc = form_encode(&all);
        assert!(
            enc.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{enc}"
        );
        assert_eq!(form_decode(&enc), all);
    }

    #[test]
    fn authentik_answer_is_read() {
        // The shape of `TokenIntrospectionView.post`: the token's ID-token claims
        // (`IDToken.to_dict`, with the default email/profile/ak_proxy scope mappings), then
        // `active`, `scope` (joined with spaces) and `client_id`.
        let body = r#"{
            "iss": "https://authentik.lan/application/o/sonarr/",
            "sub": "b2f6a4e1c0d94d1f9e5c5d0c2a7e8f31b2f6a4e1c0d94d1f9e5c5d0c2a7e8f31",
            "aud": "Xk3pQ9sT2vW8yZ1aB4cD6eF7gH0jK5mN",
            "exp": 1767225600,
            "iat": 1767222000,
            "auth_time": 1767221990,
            "acr": "goauthentik.io/providers/oauth2/default",
            "amr": ["pwd", "mfa"],
            "sid": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "email": "alice@example.lan",
            "email_verified": true,
            "name": "Alice Liddell",
            "given_name": "Alice Liddell",
            "preferred_username": "alice",
            "nickname": "alice",
            "groups": ["authentik Admins", "media"],
            "ak_proxy": {"user_attributes": {"settings": {"locale": "en"}}, "is_superuser": true},
            "active": true,
            "scope": "openid email profile ak_proxy",
            "client_id": "Xk3pQ9sT2vW8yZ1aB4cD6eF7gH0jK5mN"
        }"#;
        assert_eq!(
            ok(body),
            Introspected {
                active: true,
                sub: Some(
                    "b2f6a4e1c0d94d1f9e5c5d0c2a7e8f31b2f6a4e1c0d94d1f9e5c5d0c2a7e8f31".into()
                ),
                username: Some("alice".into()),
                client_id: Some("Xk3pQ9sT2vW8yZ1aB4cD6eF7gH0jK5mN".into()),
                email: Some("alice@example.lan".into()),
                name: Some("Alice Liddell".into()),
                scopes: vec![
                    "openid".into(),
                    "email".into(),
                    "profile".into(),
                    "ak_proxy".into()
                ],
                groups: vec!["authentik Admins".into(), "media".into()],
                exp: Some(1_767_225_600),
                iss: Some("https://authentik.lan/application/o/sonarr/".into()),
                aud: vec!["Xk3pQ9sT2vW8yZ1aB4cD6eF7gH0jK5mN".into()],
                bound: false,
            }
        );
    }

    #[test]
    fn authentik_minimal_and_inactive_answers() {
        // Authentik's own test (`test_introspect.py`): an ID token with only iss and sub.
        let m = ok(
            r#"{"acr":"goauthentik.io/providers/oauth2/default","sub":"bar","iss":"foo","active":true,"client_id":"cid","scope":"openid user profile"}"#,
        );
        assert!(m.active);
        assert_eq!(m.sub.as_deref(), Some("bar"));
        assert_eq!(m.username, None);
        assert!(m.groups.is_empty() && m.aud.is_empty() && m.exp.is_none());
        // Unknown, expired or revoked token, and bad client credentials alike: Authentik
        // answers 200 `{"active": false}` to all of them.
        assert_eq!(ok(r#"{"active": false}"#), Introspected::inactive());
    }

    #[test]
    fn oidc_provider_answer_is_read() {
        // `renderTokenResponse` in node-oidc-provider's lib/actions/introspection.js; extra
        // token claims are spread first.
        let body = r#"{"groups":"ops","active":true,"sub":"alice","client_id":"barbican",
            "exp":1767225600,"iat":1767222000,"sid":"x5Qm","iss":"http://localhost:3000",
            "aud":["urn:api:a","urn:api:b"],"scope":"openid  api:read","token_type":"Bearer"}"#;
        let m = ok(body);
        assert_eq!(m.sub.as_deref(), Some("alice"));
        assert_eq!(m.client_id.as_deref(), Some("barbican"));
        assert_eq!(m.iss.as_deref(), Some("http://localhost:3000"));
        assert_eq!(
            m.aud,
            vec!["urn:api:a".to_string(), "urn:api:b".to_string()]
        );
        assert_eq!(m.scopes, vec!["openid".to_string(), "api:read".to_string()]);
        assert_eq!(m.groups, vec!["ops".to_string()], "a string is one group");
        assert_eq!(m.exp, Some(1_767_225_600));
        assert_eq!(
            ok(r#"{"active":true,"aud":"urn:api"}"#).aud,
            vec!["urn:api".to_string()]
        );
    }

    #[test]
    fn username_wins_over_preferred_username() {
        let m = ok(r#"{"active":true,"username":"a@corp","preferred_username":"a"}"#);
        assert_eq!(m.username.as_deref(), Some("a@corp"));
    }

    #[test]
    fn groups_come_from_the_configured_claim() {
        let body = br#"{"active":true,"groups":["g"],"roles":["admin","dev"]}"#;
        assert_eq!(
            parse(200, body, "roles").unwrap().groups,
            vec!["admin".to_string(), "dev".to_string()]
        );
        assert!(parse(200, body, "").unwrap().groups.is_empty());
        assert!(parse(200, body, "missing").unwrap().groups.is_empty());
        // A claim that is also a standard member is read as both.
        let m = parse(200, br#"{"active":true,"aud":["x","y"]}"#, "aud").unwrap();
        assert_eq!(m.groups, m.aud);
        assert_eq!(
            parse(200, br#"{"active":true,"roles":["a",1]}"#, "roles"),
            Err(IntrospectionError::BadField("groups"))
        );
        assert_eq!(
            parse(200, br#"{"active":true,"roles":{"a":1}}"#, "roles"),
            Err(IntrospectionError::BadField("groups"))
        );
    }

    #[test]
    fn inactive_answers_need_nothing_else() {
        let m = ok(r#"{"active":false,"exp":"never","sub":7,"groups":{"x":1}}"#);
        assert_eq!(m, Introspected::inactive());
    }

    #[test]
    fn active_must_be_a_json_boolean() {
        for body in [
            r#"{"active":"true"}"#,
            r#"{"active":1}"#,
            r#"{"active":null}"#,
            r#"{"active":[true]}"#,
        ] {
            assert_eq!(err(body), IntrospectionError::BadField("active"), "{body}");
        }
        assert_eq!(err(r#"{"sub":"a"}"#), IntrospectionError::ActiveMissing);
        assert_eq!(err("{}"), IntrospectionError::ActiveMissing);
    }

    #[test]
    fn repeated_members_are_refused() {
        for body in [
            r#"{"active":false,"active":true}"#,
            r#"{"active":true,"active":false}"#,
            r#"{"active":true,"act\u0069ve":false}"#,
        ] {
            assert_eq!(err(body), IntrospectionError::BadField("active"), "{body}");
        }
        assert_eq!(
            err(r#"{"active":true,"sub":"a","sub":"b"}"#),
            IntrospectionError::BadField("sub")
        );
        assert_eq!(
            err(r#"{"active":true,"groups":[],"groups":["admins"]}"#),
            IntrospectionError::BadField("groups")
        );
        assert_eq!(
            err(r#"{"active":true,"acr":"a","acr":"b"}"#),
            IntrospectionError::BadField(REPEATED)
        );
        // Only the top level is ours to judge; nested objects are never read.
        assert!(ok(r#"{"active":true,"ak_proxy":{"a":1,"a":2}}"#).active);
    }

    #[test]
    fn exp_may_be_a_float_but_never_negative() {
        assert_eq!(
            ok(r#"{"active":true,"exp":1767225600.9}"#).exp,
            Some(1_767_225_600)
        );
        assert_eq!(
            ok(r#"{"active":true,"exp":1.7672256e9}"#).exp,
            Some(1_767_225_600)
        );
        assert_eq!(ok(r#"{"active":true,"exp":null}"#).exp, None);
        for body in [
            r#"{"active":true,"exp":-1}"#,
            r#"{"active":true,"exp":-0.5}"#,
            r#"{"active":true,"exp":"1767225600"}"#,
            r#"{"active":true,"exp":true}"#,
        ] {
            assert_eq!(err(body), IntrospectionError::BadField("exp"), "{body}");
        }
        // JSON has no NaN or infinity; a number too large for f64 is not valid to serde_json.
        assert_eq!(
            err(r#"{"active":true,"exp":NaN}"#),
            IntrospectionError::NotJson
        );
        assert_eq!(
            err(r#"{"active":true,"exp":1e400}"#),
            IntrospectionError::NotJson
        );
    }

    #[test]
    fn wrong_types_name_the_member() {
        for (body, field) in [
            (r#"{"active":true,"sub":1}"#, "sub"),
            (
                r#"{"active":true,"preferred_username":["a"]}"#,
                "preferred_username",
            ),
            (r#"{"active":true,"email":false}"#, "email"),
            (r#"{"active":true,"scope":["a","b"]}"#, "scope"),
            (r#"{"active":true,"aud":["a",2]}"#, "aud"),
            (r#"{"active":true,"iss":{}}"#, "iss"),
        ] {
            assert_eq!(err(body), IntrospectionError::BadField(field), "{body}");
        }
    }

    #[test]
    fn huge_answers_are_refused_unread() {
        let pad = |n: usize| format!(r#"{{"active":true,"x":"{}"}}"#, "a".repeat(n));
        let fixed = pad(0).len();
        assert!(ok(&pad(MAX_BODY - fixed)).active, "exactly 64 KiB is fine");
        assert_eq!(
            err(&pad(MAX_BODY - fixed + 1)),
            IntrospectionError::TooLarge
        );
        assert_eq!(
            parse(200, &vec![b' '; 10 * MAX_BODY], "groups"),
            Err(IntrospectionError::TooLarge)
        );
    }

    #[test]
    fn non_objects_and_non_json_are_refused() {
        for body in [
            "[]",
            "true",
            "null",
            r#""active""#,
            "1",
            r#"[{"active":true}]"#,
        ] {
            assert_eq!(err(body), IntrospectionError::NotAnObject, "{body}");
        }
        for body in [
            "",
            "{",
            "<html>login</html>",
            r#"{"active":true} {"active":false}"#,
            r#"{"active":true,}"#,
            "\u{feff}{\"active\":true}",
        ] {
            assert_eq!(err(body), IntrospectionError::NotJson, "{body}");
        }
        assert_eq!(
            parse(200, b"{\"active\":true,\"sub\":\"\xff\"}", "groups"),
            Err(IntrospectionError::NotJson)
        );
    }

    #[test]
    fn only_200_is_an_answer() {
        for status in [0, 201, 204, 302, 400, 401, 403, 500, 503] {
            assert_eq!(
                parse(status, br#"{"active":true}"#, "groups"),
                Err(IntrospectionError::Status(status))
            );
        }
    }

    #[test]
    fn errors_never_echo_the_token_or_the_answer() {
        let token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.sig";
        let bodies = [
            format!(r#"{{"active":"{token}"}}"#),
            format!(r#"{{"active":true,"sub":["{token}"]}}"#),
            format!(r#"{{"{token}":1,"{token}":2,"active":true}}"#),
            format!("not json {token}"),
            format!(r#"["{token}"]"#),
        ];
        let mut seen = Vec::new();
        for b in &bodies {
            let e = parse(200, b.as_bytes(), "groups").unwrap_err();
            let text = e.to_string();
            assert!(
                !text.contains(token) && !text.contains("c2VjcmV0"),
                "{text}"
            );
            assert!(e.reason().starts_with("introspection_"));
            seen.push(e);
        }
        for e in [
            IntrospectionError::Status(0),
            IntrospectionError::Status(401),
            IntrospectionError::Status(404),
            IntrospectionError::ActiveMissing,
            IntrospectionError::TooLarge,
            IntrospectionError::BadField("exp"),
        ] {
            assert!(!e.to_string().is_empty());
        }
        assert!(IntrospectionError::Status(401)
            .to_string()
            .contains("client_secret"));
    }
}
