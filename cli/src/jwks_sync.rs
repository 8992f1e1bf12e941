//! `barbican jwks-sync`: keeps a key-set file for the Traefik plugin's `jwks.file` (Traefik
//! plugins cannot make network calls, DESIGN §5), as a CronJob (once) or a sidecar (loop).
//!
//! The file is replaced only by a key set the core itself parses with at least one usable
//! key, only when its keys changed (the core's fingerprint), and atomically (a temporary file
//! in the same directory, synced, then renamed over the old one): the plugin, which re-reads
//! the file when it changes, never sees a half-written or an empty set. An unreachable IdP or
//! an invalid answer leaves the old file alone and says why.
//!
//! Discovery follows OpenID Connect Discovery 1.0 §4: `<issuer>/.well-known/openid-configuration`,
//! whose `issuer` must equal the one asked for, and whose `jwks_uri` names the key set.

use crate::client::{tls_config, Answer, Client};
use crate::doc::Upstream;
use crate::log;
use barbican::Callout;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Issuer(String),
    JwksUri(String),
}

#[derive(Debug, Clone)]
struct Options {
    source: Source,
    out: PathBuf,
    interval: Option<u64>,
    timeout_ms: u64,
    ca_file: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut source = None;
    let mut out = None;
    let mut interval = None;
    let mut timeout_ms = 5000;
    let mut ca_file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--issuer" | "--jwks-uri" if source.is_some() => {
                return Err("give one of --issuer or --jwks-uri".into())
            }
            "--issuer" => source = Some(Source::Issuer(value()?)),
            "--jwks-uri" => source = Some(Source::JwksUri(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--interval" => {
                interval = Some(
                    value()?
                        .parse::<u64>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or("--interval: seconds, at least 1")?,
                )
            }
            "--timeout-ms" => {
                timeout_ms = value()?
                    .parse::<u64>()
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or("--timeout-ms: milliseconds, at least 1")?
            }
            "--ca-file" => ca_file = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        source: source.ok_or("give --issuer URL or --jwks-uri URL")?,
        out: out.ok_or("give --out FILE")?,
        interval,
        timeout_ms,
        ca_file,
    })
}

pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", crate::USAGE);
        return ExitCode::SUCCESS;
    }
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("jwks-sync: {e}");
            return crate::usage();
        }
    };
    log::init(None);
    let tls = match tls_config(opts.ca_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("jwks-sync: --ca-file: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jwks-sync: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(opts, tls))
}

async fn run(opts: Options, tls: rustls::ClientConfig) -> ExitCode {
    let Some(every) = opts.interval else {
        return match sync(&opts, &tls).await {
            Ok(msg) => {
                println!("jwks-sync: {msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("jwks-sync: {e}; {} left as it was", opts.out.display());
                ExitCode::from(1)
            }
        };
    };
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        eprintln!("jwks-sync: cannot watch SIGTERM");
        return ExitCode::from(1);
    };
    loop {
        match sync(&opts, &tls).await {
            Ok(msg) => log!(Info, "jwks-sync: {msg}"),
            Err(e) => log!(
                Warn,
                "jwks-sync: {e}; {} left as it was",
                opts.out.display()
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = term.recv() => return ExitCode::SUCCESS,
        }
    }
}

/// `http(s)://authority/path?query` → the upstream to connect to, the Host, the target.
fn split_url(url: &str) -> Result<(Upstream, String, String), String> {
    let scheme_end = url
        .find("://")
        .ok_or(format!("{url:?} is not an http(s) URL"))?;
    let after = url.get(scheme_end + 3..).unwrap_or("");
    let auth_end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, target) = after.split_at(auth_end);
    let base = url.get(..scheme_end + 3 + auth_end).unwrap_or(url);
    let up = Upstream::parse(base).map_err(|e| format!("{url:?}: {e}"))?;
    let target = if target.is_empty() {
        "/".to_string()
    } else if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    Ok((up, authority.to_string(), target))
}

async fn get(url: &str, timeout_ms: u64, tls: &rustls::ClientConfig) -> Result<Vec<u8>, String> {
    let (up, authority, target) = split_url(url)?;
    let client = Client::new(BTreeMap::from([("idp".to_string(), up)]), tls.clone());
    let call = Callout {
        id: 0,
        cluster: "idp".into(),
        headers: vec![
            (":method".into(), "GET".into()),
            (":path".into(), target),
            (":authority".into(), authority),
            ("accept".into(), "application/json".into()),
        ],
        body: None,
        timeout_ms,
    };
    let Answer {
        status,
        body,
        error,
        ..
    } = client.call(&call).await;
    match (status, error) {
        (_, Some(e)) => Err(format!("{url}: {e}")),
        (200, None) => Ok(body),
        (s, None) => Err(format!("{url}: answered HTTP {s}")),
    }
}

/// One sync: returns what was done, or why nothing was.
async fn sync(opts: &Options, tls: &rustls::ClientConfig) -> Result<String, String> {
    let jwks_uri = match &opts.source {
        Source::JwksUri(u) => u.clone(),
        Source::Issuer(iss) => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                iss.trim_end_matches('/')
            );
            let doc = get(&url, opts.timeout_ms, tls).await?;
            let v: serde_json::Value = serde_json::from_slice(&doc)
                .map_err(|_| format!("{url}: the discovery document is not JSON"))?;
            if v.get("issuer").and_then(|i| i.as_str()) != Some(iss.as_str()) {
                return Err(format!(
                    "{url}: the discovery document names another issuer (OpenID Connect \
                     Discovery §4.3: it must be {iss:?})"
                ));
            }
            v.get("jwks_uri")
                .and_then(|u| u.as_str())
                .ok_or(format!("{url}: no jwks_uri in the discovery document"))?
                .to_string()
        }
    };
    let body = get(&jwks_uri, opts.timeout_ms, tls).await?;
    let set = barbican::jwks::parse(&body).map_err(|e| format!("{jwks_uri}: {e}"))?;
    if set.keys.is_empty() {
        return Err(format!("{jwks_uri}: no usable key in the set"));
    }
    let old = std::fs::read(&opts.out).ok();
    let same = old.as_deref().is_some_and(|o| {
        o == body.as_slice()
            || barbican::jwks::parse(o).is_ok_and(|s| s.fingerprint == set.fingerprint)
    });
    if same {
        return Ok(format!(
            "{} unchanged ({} keys)",
            opts.out.display(),
            set.keys.len()
        ));
    }
    write_atomically(&opts.out, &body)
        .map_err(|e| format!("cannot write {}: {e}", opts.out.display()))?;
    Ok(format!(
        "{} {} ({} keys from {jwks_uri})",
        opts.out.display(),
        if old.is_some() { "updated" } else { "written" },
        set.keys.len()
    ))
}

/// A temporary file next to `path`, synced, renamed over it: readers see the old file or the
/// new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "jwks.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn urls_split_into_upstream_host_and_target() {
        let (u, a, t) = split_url("https://auth.lan/application/o/app/jwks/?x=1").unwrap();
        assert_eq!(
            (u.tls, u.port, a.as_str(), t.as_str()),
            (true, 443, "auth.lan", "/application/o/app/jwks/?x=1")
        );
        let (u, a, t) = split_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.port, a.as_str(), t.as_str()),
            (8080, "127.0.0.1:8080", "/")
        );
        assert!(split_url("auth.lan/jwks").is_err());
    }

    #[test]
    fn arguments_need_one_source_and_an_output() {
        assert!(parse_args(&args(&["--out", "f"])).is_err());
        assert!(parse_args(&args(&["--issuer", "http://a", "--jwks-uri", "http://b"])).is_err());
        assert!(parse_args(&args(&["--issuer", "http://a"])).is_err());
        assert!(parse_args(&args(&[
            "--issuer",
            "http://a",
            "--out",
            "f",
            "--interval",
            "0"
        ]))
        .is_err());
        let o = parse_args(&args(&[
            "--jwks-uri",
            "http://a/j",
            "--out",
            "f",
            "--interval",
            "60",
        ]))
        .unwrap();
        assert_eq!(
            (o.source, o.interval),
            (Source::JwksUri("http://a/j".into()), Some(60))
        );
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("barbican-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("jwks.json");
        write_atomically(&f, b"one").unwrap();
        write_atomically(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
