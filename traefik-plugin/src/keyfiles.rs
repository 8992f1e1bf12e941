//! Key sets from mounted files (`jwks.file`): read when the instance starts, and again when
//! the file changes, so rotating an IdP's keys needs no Traefik restart.
//!
//! The core has no I/O: this reads the bytes and hands them to [`Engine::set_jwks`]. Traefik's
//! WASI makes a file readable when the plugin's `settings.mounts` mounts its directory. Each
//! pooled instance watches for itself (instances share nothing), at most once a second, with
//! a `stat` (modification time and size) — the file is read only when that changed. A file
//! that no longer parses, or is gone, leaves the last good key set in place; each distinct
//! failure is reported once, not once per check.

use barbican::{Engine, JwksFile, Millis};
use std::fmt;
use std::time::SystemTime;

/// How often an instance looks at its files. Rotation takes effect within this (plus the
/// time until each pooled instance serves a request).
pub const CHECK_EVERY_MS: Millis = 1000;

/// What a check found, for the log. Never contains key material (keys are public anyway,
/// but a misplaced private key file must not end up in logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// A key set was read and is now in use (`reload`: it replaced an earlier one).
    Loaded {
        field: String,
        path: String,
        keys: usize,
        reload: bool,
    },
    /// The file could not be read or did not parse; the last good key set (if any) stays.
    Failed {
        field: String,
        path: String,
        problem: String,
        /// Whether this instance has a good set to keep (else that provider refuses tokens).
        has_keys: bool,
    },
}

impl fmt::Display for KeyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyEvent::Loaded {
                field,
                path,
                keys,
                reload,
            } => write!(
                f,
                "{field}: {} {path}: {keys} usable key(s)",
                if *reload { "reloaded" } else { "loaded" }
            ),
            KeyEvent::Failed {
                field,
                path,
                problem,
                has_keys: true,
            } => write!(
                f,
                "{field}: {path}: {problem}; keeping the last good key set"
            ),
            KeyEvent::Failed {
                field,
                path,
                problem,
                has_keys: false,
            } => write!(
                f,
                "{field}: {path}: {problem}; no key set yet: this provider's tokens are refused \
                 until the file is usable"
            ),
        }
    }
}

/// What the file looked like when last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Never,
    /// `stat` failed: missing, or not mounted.
    Missing,
    At {
        modified: Option<SystemTime>,
        len: u64,
    },
}

#[derive(Debug)]
struct Watched {
    file: JwksFile,
    seen: Seen,
    /// FNV-1a of the last bytes read: a rewrite with the same content is not a reload.
    content: Option<u64>,
    loaded: bool,
}

/// The `jwks.file` providers of one instance's engine and what each file looked like.
#[derive(Debug, Default)]
pub struct KeyFiles {
    files: Vec<Watched>,
    next_check: Millis,
}

impl KeyFiles {
    pub fn new(engine: &Engine) -> KeyFiles {
        KeyFiles {
            files: engine
                .jwks_files()
                .into_iter()
                .map(|file| Watched {
                    file,
                    seen: Seen::Never,
                    content: None,
                    loaded: false,
                })
                .collect(),
            next_check: 0,
        }
    }

    /// Reads the files that changed since the last look, if a check is due (the first call
    /// always checks). Cheap when not due: one comparison.
    pub fn poll(&mut self, engine: &mut Engine, now: Millis) -> Vec<KeyEvent> {
        // A wall clock that stepped back must not postpone checks for long.
        if self.files.is_empty()
            || (now < self.next_check && self.next_check - now <= CHECK_EVERY_MS)
        {
            return Vec::new();
        }
        self.next_check = now.saturating_add(CHECK_EVERY_MS);
        self.files
            .iter_mut()
            .filter_map(|w| w.check(engine))
            .collect()
    }
}

impl Watched {
    fn check(&mut self, engine: &mut Engine) -> Option<KeyEvent> {
        let seen = match std::fs::metadata(&self.file.path) {
            Ok(m) => Seen::At {
                modified: m.modified().ok(),
                len: m.len(),
            },
            Err(e) => {
                if self.seen == Seen::Missing {
                    return None;
                }
                self.seen = Seen::Missing;
                self.content = None;
                return Some(self.failed(format!("cannot read: {e}")));
            }
        };
        // Without a modification time, only the content can tell a change.
        let unchanged = matches!(
            seen,
            Seen::At {
                modified: Some(_),
                ..
            }
        ) && seen == self.seen;
        if unchanged {
            return None;
        }
        self.seen = seen;
        let doc = match std::fs::read(&self.file.path) {
            Ok(d) => d,
            Err(e) => {
                self.content = None;
                return Some(self.failed(format!("cannot read: {e}")));
            }
        };
        let hash = fnv(&doc);
        if self.content == Some(hash) {
            return None;
        }
        self.content = Some(hash);
        match engine.set_jwks(self.file.provider, &doc) {
            Ok(keys) => {
                let reload = self.loaded;
                self.loaded = true;
                Some(KeyEvent::Loaded {
                    field: self.file.field.clone(),
                    path: self.file.path.clone(),
                    keys,
                    reload,
                })
            }
            Err(e) => Some(self.failed(e.to_string())),
        }
    }

    fn failed(&self, problem: String) -> KeyEvent {
        KeyEvent::Failed {
            field: self.file.field.clone(),
            path: self.file.path.clone(),
            problem,
            has_keys: self.loaded,
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
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
    use std::path::PathBuf;

    impl KeyEvent {
        pub(crate) fn is_error(&self) -> bool {
            matches!(self, KeyEvent::Failed { .. })
        }
    }

    /// RFC 8037's example Ed25519 public key, and another valid Ed25519 point.
    const KEY_A: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    const KEY_B: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "b",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "c",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("barbican-keyfiles-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("jwks.json")
    }

    fn engine(path: &std::path::Path) -> Engine {
        Engine::from_json(
            format!(
                r#"{{"jwt": {{"providers": [{{"issuer": "https://i/", "audiences": ["a"],
                     "jwks": {{"file": "{}"}}}}]}},
                    "routes": [{{"match": {{"path_prefix": "/"}}, "policy": "api"}}]}}"#,
                path.display()
            )
            .as_bytes(),
        )
        .unwrap()
    }

    /// A rewrite that keeps the same size and (on coarse clocks) the same mtime still counts:
    /// bump the mtime explicitly, as a real rewrite a second later would.
    fn write(path: &std::path::Path, doc: &str, bump_s: u64) {
        std::fs::write(path, doc).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + bump_s),
        )
        .unwrap();
    }

    fn keys(events: &[KeyEvent]) -> Vec<(usize, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                KeyEvent::Loaded { keys, reload, .. } => Some((*keys, *reload)),
                KeyEvent::Failed { .. } => None,
            })
            .collect()
    }

    #[test]
    fn loads_at_once_then_rechecks_at_most_once_a_second() {
        let path = tmp("rate");
        write(&path, KEY_A, 0);
        let mut e = engine(&path);
        let mut w = KeyFiles::new(&e);
        assert_eq!(keys(&w.poll(&mut e, 10_000)), [(1, false)]);
        write(&path, KEY_B, 1);
        assert!(w.poll(&mut e, 10_500).is_empty(), "not due yet");
        let ev = w.poll(&mut e, 11_000);
        assert_eq!(keys(&ev), [(2, true)]);
        assert!(ev[0]
            .to_string()
            .starts_with("jwt.providers[0].jwks.file: reloaded "));
        assert!(w.poll(&mut e, 12_000).is_empty(), "unchanged");
        // The same content written again is not a reload.
        write(&path, KEY_B, 2);
        assert!(w.poll(&mut e, 13_000).is_empty());
    }

    #[test]
    fn garbage_or_a_missing_file_keeps_the_last_good_set_and_is_reported_once() {
        let path = tmp("garbage");
        write(&path, KEY_A, 0);
        let mut e = engine(&path);
        let mut w = KeyFiles::new(&e);
        assert_eq!(keys(&w.poll(&mut e, 1_000)), [(1, false)]);
        write(&path, "{\"keys\": [", 1);
        let ev = w.poll(&mut e, 2_000);
        assert_eq!(ev.len(), 1);
        assert!(ev[0].is_error());
        assert!(ev[0].to_string().contains("not valid JSON"), "{}", ev[0]);
        assert!(ev[0].to_string().contains("keeping the last good key set"));
        assert!(w.poll(&mut e, 3_000).is_empty(), "reported once");
        std::fs::remove_file(&path).unwrap();
        let ev = w.poll(&mut e, 4_000);
        assert!(ev[0].is_error() && ev[0].to_string().contains("cannot read"));
        assert!(w.poll(&mut e, 5_000).is_empty(), "reported once");
        write(&path, KEY_A, 5);
        assert_eq!(keys(&w.poll(&mut e, 6_000)), [(1, true)]);
    }

    #[test]
    fn a_file_missing_at_start_is_reported_and_picked_up_when_it_appears() {
        let path = tmp("late");
        let mut e = engine(&path);
        let mut w = KeyFiles::new(&e);
        let ev = w.poll(&mut e, 1_000);
        assert!(ev[0].to_string().contains("no key set yet"), "{}", ev[0]);
        write(&path, KEY_A, 0);
        assert_eq!(keys(&w.poll(&mut e, 2_000)), [(1, false)]);
    }

    #[test]
    fn a_clock_that_steps_back_does_not_stop_the_checks() {
        let path = tmp("clock");
        write(&path, KEY_A, 0);
        let mut e = engine(&path);
        let mut w = KeyFiles::new(&e);
        let _ = w.poll(&mut e, 1_000_000);
        write(&path, KEY_B, 1);
        assert_eq!(keys(&w.poll(&mut e, 5_000)), [(2, true)]);
    }

    #[test]
    fn no_files_no_work() {
        let mut e = Engine::from_json(br#"{"routes": []}"#).unwrap();
        let mut w = KeyFiles::new(&e);
        assert!(w.poll(&mut e, 1).is_empty());
    }
}
