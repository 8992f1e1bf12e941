//! `check` and `explain`: validate a document, or show what the engine does with one
//! request, without a proxy. Moved here from the core crate's src/bin/barbican.rs unchanged
//! in behaviour; `check --host` adds each host's own rules.

use crate::doc;
use barbican::decision::{Request, Step};
use barbican::{Config, ConfigError, Engine, MemStore};
use std::process::ExitCode;

/// The document's engine, or the exit code after every problem was printed.
fn load(path: &str) -> Result<(Config, Engine), ExitCode> {
    let document = doc::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    doc::engine(&document).map_err(|errors| report(path, &errors))
}

fn report(path: &str, errors: &[ConfigError]) -> ExitCode {
    for e in errors {
        println!("{path}: {e}");
    }
    println!("{} problem(s)", errors.len());
    ExitCode::from(1)
}

/// Which host's rules `check` applies besides the core's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Envoy,
    Traefik,
    Serve,
}

impl Host {
    pub fn parse(s: &str) -> Option<Host> {
        match s {
            "envoy" | "istio" => Some(Host::Envoy),
            "traefik" => Some(Host::Traefik),
            "serve" => Some(Host::Serve),
            _ => None,
        }
    }
}

/// Validates a document; with a host, also what that host refuses. Every problem at once,
/// each with its JSON path.
pub fn check(path: &str, host: Option<Host>) -> ExitCode {
    let document = match doc::load(path) {
        Ok(d) => d,
        Err(e) => {
            println!("{e}");
            return ExitCode::from(1);
        }
    };
    let built = doc::engine(&document);
    let mut problems: Vec<ConfigError> = match &built {
        Ok(_) => Vec::new(),
        Err(e) => e.clone(),
    };
    // A document the core refused may still deserialize: the host's problems are told too.
    let cfg: Option<Config> = match &built {
        Ok((c, _)) => Some(c.clone()),
        Err(_) => serde_json::from_slice(&document.json).ok(),
    };
    match host {
        None => {}
        Some(Host::Envoy) => {
            if let Ok((_, e)) = &built {
                // Envoy's wasm VMs have no filesystem: jwks.file is refused there, and the
                // engine built above read the files only because this machine has them.
                problems.extend(barbican::tokens::refuse_jwks_files(
                    &e.jwks_files(),
                    "Envoy",
                ));
            }
        }
        Some(Host::Traefik) => {
            if let Some(c) = &cfg {
                problems.extend(barbican::config::traefik_problems(c));
            }
        }
        Some(Host::Serve) => {
            if let Err(e) = doc::serve_parts(&document, cfg.as_ref()) {
                problems.extend(e);
            }
            if let Some(c) = &cfg {
                problems.extend(crate::server::serve_problems(c));
            }
        }
    }
    if problems.is_empty() {
        println!("{path}: ok");
        ExitCode::SUCCESS
    } else {
        report(path, &problems)
    }
}

fn split_header(h: &str) -> Option<(String, String)> {
    let (n, v) = h.split_once(':')?;
    Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
}

/// Credentials are shown by length only: the CLI output ends up in tickets and chats.
fn redact(name: &str, value: &str) -> String {
    match name {
        "cookie" | "authorization" | "set-cookie" | "x-authentik-jwt" => {
            format!("<{} bytes>", value.len())
        }
        _ => value.to_string(),
    }
}

pub fn explain(path: &str, rest: &[String]) -> ExitCode {
    let mut engine = match load(path) {
        Ok((_, e)) => e,
        Err(code) => return code,
    };
    let mut url = None;
    let mut method = "GET".to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut idp_status: Option<u16> = None;
    let mut idp_headers: Vec<(String, String)> = Vec::new();
    let mut peer = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return crate::usage();
        };
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--method" => method = value.to_ascii_uppercase(),
            "--header" | "-H" => match split_header(value) {
                Some(h) => headers.push(h),
                None => return crate::usage(),
            },
            "--idp-status" => match value.parse() {
                Ok(s) => idp_status = Some(s),
                Err(_) => return crate::usage(),
            },
            "--client" => match value.parse() {
                Ok(ip) => peer = Some(ip),
                Err(_) => return crate::usage(),
            },
            "--idp-header" => match split_header(value) {
                Some(h) => idp_headers.push(h),
                None => return crate::usage(),
            },
            _ => return crate::usage(),
        }
    }
    let Some(url) = url else {
        return crate::usage();
    };
    let (scheme, rest_url) = url.split_once("://").unwrap_or(("http", url.as_str()));
    let (authority, target) = match rest_url.find('/') {
        Some(i) => rest_url.split_at(i),
        None => (rest_url, "/"),
    };
    let mut all = vec![
        (":method".to_string(), method),
        (":scheme".to_string(), scheme.to_string()),
        (":authority".to_string(), authority.to_string()),
        (":path".to_string(), target.to_string()),
    ];
    all.extend(headers);

    match engine.route_of(&barbican::request::borrow_all(&all)) {
        Ok((Some(r), policy)) => println!("rule:   {} (policy {})", r.name, policy.as_str()),
        Ok((None, policy)) => println!("rule:   none matched: default_policy {}", policy.as_str()),
        Err(why) => println!("rule:   not consulted: {why}"),
    }
    let mut store = MemStore::default();
    let now = 1_700_000_000_000;
    let step = engine.decide(
        Request {
            id: 1,
            headers: &barbican::request::borrow_all(&all),
            peer,
            body: None,
        },
        now,
        &mut store,
    );
    let step = match step {
        Step::Call(c) => {
            println!(
                "callout: cluster {:?}, timeout {} ms",
                c.cluster, c.timeout_ms
            );
            for (n, v) in &c.headers {
                println!("  {n}: {}", redact(n, v));
            }
            match idp_status {
                None => {
                    println!("decision: waits for the IdP (give --idp-status to see the outcome)");
                    return ExitCode::SUCCESS;
                }
                Some(s) => {
                    let mut steps =
                        engine.on_callout_response(c.id, s, &idp_headers, now, &mut store);
                    match steps.pop() {
                        Some((_, step)) => step,
                        None => return ExitCode::SUCCESS,
                    }
                }
            }
        }
        other => other,
    };
    print_step(&step);
    ExitCode::SUCCESS
}

fn print_step(step: &Step) {
    match step {
        Step::Allow(a) => {
            println!("decision: allow");
            for n in &a.remove {
                println!("  remove request header {n}");
            }
            for (n, v) in a.upstream() {
                println!("  set request header {n}: {}", redact(n, v));
            }
            if let Some(p) = &a.path {
                println!("  rewrite :path to {p}");
            }
            for (n, v) in &a.response_headers {
                println!("  add response header {n}: {}", redact(n, v));
            }
        }
        Step::Respond(r) => {
            println!("decision: respond {} (reason {})", r.status, r.reason);
            for (n, v) in &r.headers {
                println!("  {n}: {}", redact(n, v));
            }
        }
        Step::Call(_) | Step::Wait => println!("decision: waits for the IdP"),
    }
}
