//! The native `barbican` binary over the same core as the Envoy and Traefik filters.
//!
//! ```text
//! barbican check [--host envoy|traefik|serve] CONFIG
//! barbican explain CONFIG --url URL [--method M] [--header 'Name: value']...
//! barbican serve CONFIG [--listen ADDR] [--log-level LEVEL]
//! barbican jwks-sync (--issuer URL | --jwks-uri URL) --out FILE [--interval S]
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod client;
mod doc;
mod front;
mod inspect;
mod jwks_sync;
mod log;
mod metrics;
mod server;

use std::process::ExitCode;

pub const USAGE: &str = "usage:
  barbican check [--host envoy|traefik|serve] CONFIG
  barbican explain CONFIG --url URL [--method M] [--header 'Name: value']...
                   [--client IP] [--idp-status N] [--idp-header 'Name: value']...
  barbican serve CONFIG [--listen ADDR:PORT] [--log-level error|warn|info|debug]
  barbican jwks-sync (--issuer URL | --jwks-uri URL) --out FILE [--interval SECONDS]
                     [--timeout-ms N] [--ca-file PEM]

CONFIG is the Barbican document (JSON, or YAML by a .yaml/.yml name or by content).

check      validates a configuration; prints every problem with its JSON path; exit 1 if any.
           --host adds what that host refuses (serve: the clusters map, trusted_proxies).
explain    shows which rule a request matches and what Barbican does with it. When the
           decision needs the IdP, --idp-status/--idp-header give its answer (default: none,
           so the callout is shown and not answered).
serve      answers forward-auth requests (Traefik forwardAuth, Caddy forward_auth, nginx
           auth_request, Envoy ext_authz) at Authentik's outpost paths
           /outpost.goauthentik.io/auth/{traefik,caddy,nginx,envoy} (and /auth/...), with
           /healthz and /metrics. Log level also from BARBICAN_LOG or RUST_LOG. SIGTERM drains.
jwks-sync  writes the IdP's key set to FILE (for the Traefik plugin's jwks.file) atomically,
           only when it changed and is a valid key set; once (exit 1 on failure, the old file
           kept) or every --interval seconds.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("check") => check(rest),
        Some("explain") => match rest.first() {
            Some(path) => inspect::explain(path, rest.get(1..).unwrap_or_default()),
            None => usage(),
        },
        Some("serve") => serve(rest),
        Some("jwks-sync") => jwks_sync::main(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

pub fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn check(args: &[String]) -> ExitCode {
    let mut host = None;
    let mut path = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--host" => match it.next().map(String::as_str).and_then(inspect::Host::parse) {
                Some(h) => host = Some(h),
                None => {
                    eprintln!("--host: give envoy, traefik or serve");
                    return usage();
                }
            },
            p if path.is_none() && !p.starts_with('-') => path = Some(p.to_string()),
            _ => return usage(),
        }
    }
    match path {
        Some(p) => inspect::check(&p, host),
        None => usage(),
    }
}

fn serve(args: &[String]) -> ExitCode {
    let mut config = None;
    let mut listen = None;
    let mut level = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--listen" => match it.next() {
                Some(v) => listen = Some(v.clone()),
                None => return usage(),
            },
            "--log-level" => match it.next().filter(|v| log::parse(v).is_some()) {
                Some(v) => level = Some(v.clone()),
                None => return usage(),
            },
            p if config.is_none() && !p.starts_with('-') => config = Some(p.to_string()),
            _ => return usage(),
        }
    }
    log::init(level.as_deref());
    match config {
        Some(config) => server::run(server::Options { config, listen }),
        None => usage(),
    }
}
