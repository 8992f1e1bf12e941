//! `barbican serve`'s front protocols: how Traefik/Caddy (`X-Forwarded-*`), nginx
//! (`X-Original-*`) and Envoy ext_authz describe the original request, from arbitrary header
//! bytes and peers (cli/src/front.rs, compiled in here as it is: the cli crate has no
//! library). The translated request then goes through an engine. Oracles: nothing is read
//! from an untrusted peer; what is accepted has one :path the engine can take, and a scheme
//! of http or https.
#![no_main]
use arbitrary::Arbitrary;
use barbican::net::Cidr;
use barbican::{Engine, MemStore, Request};
use barbican_fuzz::Name;
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;

#[allow(dead_code)]
#[path = "../../cli/src/front.rs"]
mod front;

#[derive(Arbitrary, Debug)]
enum Target {
    Traefik,
    Caddy,
    Nginx,
    Envoy(String),
    Own(String),
}

/// What the fronts read, so most inputs get past "required header missing".
const FRONT_NAMES: &[&str] = &[
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-forwarded-for",
    "x-original-method",
    "x-original-uri",
    "x-original-url",
    "host",
    "cookie",
    "authorization",
    "accept",
    "x-authentik-username",
];

#[derive(Arbitrary, Debug)]
enum FrontName {
    Known(u8),
    Other(Name),
}

#[derive(Arbitrary, Debug)]
struct Input {
    target: Target,
    method: String,
    headers: Vec<(FrontName, Vec<u8>)>,
    peer: [u8; 4],
    peer_trusted: bool,
    status: u16,
    answer: Vec<(Name, String)>,
}

static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

fuzz_target!(|i: Input| {
    let trusted = [Cidr::parse("10.0.0.0/8").expect("cidr")];
    let peer = if i.peer_trusted {
        std::net::IpAddr::from([10, i.peer[1], i.peer[2], i.peer[3]])
    } else {
        std::net::IpAddr::from(i.peer)
    };
    let headers: Vec<(String, Vec<u8>)> = i
        .headers
        .iter()
        .map(|(n, v)| {
            let n = match n {
                FrontName::Known(k) => FRONT_NAMES[usize::from(*k) % FRONT_NAMES.len()].to_string(),
                FrontName::Other(n) => n.get().to_ascii_lowercase(),
            };
            (n, v.clone())
        })
        .collect();
    let target = match &i.target {
        Target::Traefik => "/outpost.goauthentik.io/auth/traefik".to_string(),
        Target::Caddy => "/auth/caddy".to_string(),
        Target::Nginx => "/outpost.goauthentik.io/auth/nginx".to_string(),
        Target::Envoy(p) => format!("/outpost.goauthentik.io/auth/envoy{p}"),
        Target::Own(t) => t.clone(),
    };
    let Some(front::Endpoint::Auth(f, envoy_path)) = front::endpoint(&target) else {
        return;
    };
    let _ = f.answer_status(i.status);
    let answer = barbican_fuzz::header_list(&i.answer);
    let _ = f.answer_headers(&answer);
    let req = front::Incoming {
        method: &i.method,
        headers: &headers,
        peer,
    };
    let Ok(o) = front::original(f, envoy_path.as_deref(), &req, &trusted) else {
        return;
    };
    assert!(
        trusted[0].contains(peer),
        "read headers from an untrusted peer"
    );
    assert_eq!(o.headers.iter().filter(|(n, _)| n == ":path").count(), 1);
    let scheme = barbican::header(&o.headers, ":scheme").unwrap_or("");
    assert!(scheme == "http" || scheme == "https", "{scheme:?}");
    let mut guard = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let engine = guard.get_or_insert_with(|| {
        Engine::from_json(
            br#"{"routes": [{"match": {"path_prefix": "/public/"}, "policy": "bypass"},
                            {"match": {"path_prefix": "/admin/"}, "policy": "deny"}],
                 "trusted_proxies": ["10.0.0.0/8"], "default_policy": "deny"}"#,
        )
        .expect("config")
    });
    let _ = engine.decide(
        Request {
            id: 1,
            headers: &barbican::request::borrow_all(&o.headers),
            peer: o.peer,
            body: None,
        },
        barbican_fuzz::NOW_MS,
        &mut MemStore::default(),
    );
});
