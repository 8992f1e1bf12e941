//! Native CLI over the same core: check a config, explain a decision, without a proxy.
//!
//! ```text
//! barbican check CONFIG.json
//! barbican explain CONFIG.json --url http://sonarr.lan/api/v3/queue [--method GET]
//!                  [--header 'Cookie: authentik_proxy_x=...'] [--idp-status 200 --idp-header 'X-authentik-username: alice']
//! ```

use barbican::decision::{Request, Step};
use barbican::{Engine, MemStore};
use std::process::ExitCode;

const USAGE: &str = "usage:
  barbican check CONFIG.json
  barbican explain CONFIG.json --url URL [--method M] [--header 'Name: value']...
                   [--client IP] [--idp-status N] [--idp-header 'Name: value']...

check    validates a configuration; prints every problem with its JSON path; exit 1 if any.
explain  shows which rule a request matches and what Barbican does with it. When the
         decision needs the IdP, --idp-status/--idp-header give its answer (default: none,
         so the callout is shown and not answered).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => match args.get(1) {
            Some(path) => check(path),
            None => usage(),
        },
        Some("explain") => match args.get(1) {
            Some(path) => explain(path, args.get(2..).unwrap_or_default()),
            None => usage(),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn load(path: &str) -> Result<Engine, ExitCode> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("{path}: cannot read: {e}");
        ExitCode::from(2)
    })?;
    let report = |errors: Vec<barbican::ConfigError>| {
        for e in &errors {
            println!("{path}: {e}");
        }
        println!("{} problem(s)", errors.len());
        ExitCode::from(1)
    };
    let mut engine = Engine::from_json_with(&bytes, &mut read_secret).map_err(report)?;
    let problems = load_jwks_files(&mut engine);
    if problems.is_empty() {
        Ok(engine)
    } else {
        Err(report(problems))
    }
}

/// Secrets given by name are read here as the proxy would read them: `check` then also says
/// whether this machine's environment and files hold them.
fn read_secret(r: barbican::config::SecretRef<'_>) -> Result<String, String> {
    use barbican::config::SecretRef;
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

/// Reads every `jwks.file` the way the Traefik plugin does at start-up, so `check` says
/// whether the key set on this machine is usable and `explain` verifies tokens against it.
fn load_jwks_files(engine: &mut Engine) -> Vec<barbican::ConfigError> {
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
            problems.push(barbican::ConfigError {
                path: f.field,
                problem,
            });
        }
    }
    problems
}

fn check(path: &str) -> ExitCode {
    match load(path) {
        Ok(_) => {
            println!("{path}: ok");
            ExitCode::SUCCESS
        }
        Err(code) => code,
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

fn explain(path: &str, rest: &[String]) -> ExitCode {
    let mut engine = match load(path) {
        Ok(e) => e,
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
            return usage();
        };
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--method" => method = value.to_ascii_uppercase(),
            "--header" | "-H" => match split_header(value) {
                Some(h) => headers.push(h),
                None => return usage(),
            },
            "--idp-status" => match value.parse() {
                Ok(s) => idp_status = Some(s),
                Err(_) => return usage(),
            },
            "--client" => match value.parse() {
                Ok(ip) => peer = Some(ip),
                Err(_) => return usage(),
            },
            "--idp-header" => match split_header(value) {
                Some(h) => idp_headers.push(h),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let Some(url) = url else { return usage() };
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

    match engine.route_of(&all) {
        Ok((Some(r), policy)) => println!("rule:   {} (policy {})", r.name, policy.as_str()),
        Ok((None, policy)) => println!("rule:   none matched: default_policy {}", policy.as_str()),
        Err(why) => println!("rule:   not consulted: {why}"),
    }
    let mut store = MemStore::default();
    let now = 1_700_000_000_000;
    let step = engine.decide(
        Request {
            id: 1,
            headers: &all,
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
            for (n, v) in a.set.iter() {
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
