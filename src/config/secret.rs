//! Secrets in the configuration: inline, or named by an environment variable or a file.
//!
//! Operators keep configurations in git, in Traefik labels and in Kubernetes objects that many
//! can read; the secrets belong elsewhere. The core never does IO, so the host reads what a
//! secret names — Envoy: the VM's environment (`vm_config.environment_variables`); Traefik:
//! the plugin's `settings.envs` and `mounts`; the CLI: both — through a [`Resolver`], before
//! the configuration is validated. A secret is never printed: `Debug` shows
//! `Secret(..)`.

use super::ConfigError;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;

/// A secret from the configuration. After [`super::parse_with`] it always holds its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    /// Where the value came from, when not inline; `value` is empty until resolved.
    from: Option<Source>,
    resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Env(String),
    File(String),
}

/// What the host is asked to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRef<'a> {
    /// An environment variable of the wasm VM (or the CLI's process).
    Env(&'a str),
    /// A file path as the guest sees it.
    File(&'a str),
}

/// Reads a secret for the host. `Err` says why in words an operator can act on (which
/// variable is unset, which file is unreadable); it never contains the secret.
pub type Resolver<'r> = dyn FnMut(SecretRef<'_>) -> Result<String, String> + 'r;

impl Secret {
    /// An inline secret (tests, and hosts building a configuration in code).
    pub fn inline(value: impl Into<String>) -> Secret {
        Secret {
            value: value.into(),
            from: None,
            resolved: true,
        }
    }

    /// The secret itself. Only key derivation and the IdP calls that send it use this.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Its length in bytes: what validation checks.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Reads what the secret names, if anything. One line end at the end of a file or
    /// variable is dropped (`echo "$SECRET" > file` writes one), nothing else.
    pub(super) fn resolve(&mut self, path: &str, read: &mut Resolver) -> Option<ConfigError> {
        if self.resolved {
            return None;
        }
        let (asked, what) = match &self.from {
            Some(Source::Env(n)) => (SecretRef::Env(n), format!("environment variable {n}")),
            Some(Source::File(p)) => (SecretRef::File(p), format!("file {p}")),
            None => return None,
        };
        match read(asked) {
            Ok(mut v) => {
                for end in ["\r\n", "\n"] {
                    if v.ends_with(end) {
                        v.truncate(v.len() - end.len());
                        break;
                    }
                }
                self.value = v;
                self.resolved = true;
                if self.value.is_empty() {
                    return Some(ConfigError::new(
                        path,
                        format!("{what} is empty (is it set for the proxy?)"),
                    ));
                }
                None
            }
            Err(why) => Some(ConfigError::new(path, why)),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

const EXPECTED: &str = "a string, {\"env\": \"NAME\"} or {\"file\": \"/path\"}";

/// Through `serde_json::Value`, whose parser the key-set code already needs: a visitor of our
/// own would add a second copy of serde_json's `deserialize_any` to the wasm.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let bad = |why: String| de::Error::custom(format!("expected {EXPECTED}{why}"));
        let map = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => return Ok(Secret::inline(s)),
            serde_json::Value::Object(m) => m,
            _ => return Err(bad(String::new())),
        };
        let mut entries = map.into_iter();
        let (Some((key, name)), None) = (entries.next(), entries.next()) else {
            return Err(bad(": one source".into()));
        };
        let name = match name {
            serde_json::Value::String(n) if !n.trim().is_empty() => n,
            _ => return Err(bad(format!(": \"{key}\" must name a variable or a file"))),
        };
        let from = match key.as_str() {
            "env" => Source::Env(name),
            "file" if name.starts_with('/') && !name.contains('\0') => Source::File(name),
            "file" => return Err(bad(": \"file\" must be an absolute path".into())),
            other => return Err(bad(format!(", not a source named \"{other}\""))),
        };
        Ok(Secret {
            value: String::new(),
            from: Some(from),
            resolved: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(json: &str) -> Result<Secret, String> {
        serde_json::from_str::<Secret>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_secret_is_a_string_or_one_named_source() {
        assert_eq!(secret(r#""abc""#).unwrap().expose(), "abc");
        for (json, problem) in [
            (r#"{"env": "A", "file": "/b"}"#, "/path\"}: one source"),
            (r#"{"vault": "x"}"#, "not a source named \"vault\""),
            (r#"{}"#, ": one source"),
            (r#"{"env": " "}"#, "\"env\" must name a variable or a file"),
            (r#"{"env": 3}"#, "\"env\" must name a variable or a file"),
            (
                r#"{"file": "relative/s"}"#,
                "\"file\" must be an absolute path",
            ),
            (
                "42",
                "expected a string, {\"env\": \"NAME\"} or {\"file\": \"/path\"}",
            ),
        ] {
            let e = secret(json).unwrap_err();
            assert!(e.contains(problem), "{json}: {e}");
        }
    }

    #[test]
    fn the_host_reads_what_a_secret_names_and_line_ends_are_dropped() {
        let mut asked = Vec::new();
        let mut read = |r: SecretRef<'_>| {
            asked.push(format!("{r:?}"));
            match r {
                SecretRef::Env("SET") => Ok("from-env\n".to_string()),
                SecretRef::File("/s") => Ok("from-file\r\n\r\n".to_string()),
                SecretRef::Env("EMPTY") => Ok("\n".to_string()),
                _ => Err("not there".to_string()),
            }
        };
        let mut env = secret(r#"{"env": "SET"}"#).unwrap();
        assert!(env.resolve("a", &mut read).is_none());
        assert_eq!(env.expose(), "from-env");
        let mut file = secret(r#"{"file": "/s"}"#).unwrap();
        assert!(file.resolve("b", &mut read).is_none());
        // One line end only.
        assert_eq!(file.expose(), "from-file\r\n");
        let mut gone = secret(r#"{"env": "UNSET"}"#).unwrap();
        assert_eq!(
            gone.resolve("c", &mut read).map(|e| e.to_string()),
            Some("c: not there".to_string())
        );
        let mut empty = secret(r#"{"env": "EMPTY"}"#).unwrap();
        assert_eq!(
            empty.resolve("d", &mut read).map(|e| e.to_string()),
            Some("d: environment variable EMPTY is empty (is it set for the proxy?)".to_string())
        );
        // Inline secrets ask nothing; a resolved one is not read twice.
        let mut inline = secret(r#""x""#).unwrap();
        assert!(inline.resolve("e", &mut read).is_none());
        assert!(env.resolve("a", &mut read).is_none());
        assert_eq!(asked.len(), 4, "{asked:?}");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::inline("hunter2-hunter2-hunter2-hunter2-!");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let mut e = secret(r#"{"env": "S"}"#).unwrap();
        e.resolve("p", &mut |_| Ok("top-secret".into()));
        assert_eq!(format!("{e:?}"), "Secret(..)");
    }
}
