//! Host names as rules see them: the request's Host/`:authority` normalized, and the host
//! patterns rules are written with (exact, or `*.suffix`). A leaf: `config`, `route` and
//! `oidc` all read hosts.

/// A host rule: exact, or `*.suffix` (any name ending in `.suffix`, not `suffix` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// Holds the suffix with its leading dot: `.lan`.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.to_ascii_lowercase();
        let (suffix, body) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if body.is_empty()
            || body.contains('*')
            || !body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            || body.starts_with('.')
            || body.ends_with('.')
        {
            return Err(format!(
                "{s:?} — use an exact host name (no port) or a leading \"*.\" wildcard such as \"*.lan\""
            ));
        }
        Ok(if suffix {
            HostPattern::Suffix(format!(".{body}"))
        } else {
            HostPattern::Exact(body.to_string())
        })
    }

    /// `host` must already be normalized by [`normalize_host`].
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// Lower-cases a Host/`:authority` value and drops the port and a trailing dot.
pub fn normalize_host(authority: &str) -> std::borrow::Cow<'_, str> {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        crate::ascii::split_once(rest, b']').map_or(rest, |(h, _)| h)
    } else {
        crate::ascii::rsplit_once(a, b':').map_or(a, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                a
            }
        })
    };
    let host = host.trim_end_matches('.');
    // Borrowed when already lower case (nearly every request): no copy per request.
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_exact_and_wildcard() {
        let w = HostPattern::parse("*.LAN").unwrap();
        assert!(w.matches("sonarr.lan"));
        assert!(w.matches("a.b.lan"));
        assert!(!w.matches("lan"));
        assert!(!w.matches("evillan"));
        assert!(HostPattern::parse("a.*.lan").is_err());
        assert!(HostPattern::parse("a.lan:80").is_err());
        assert_eq!(normalize_host("Sonarr.LAN:8080"), "sonarr.lan");
        assert_eq!(normalize_host("sonarr.lan."), "sonarr.lan");
        assert_eq!(normalize_host("[::1]:80"), "::1");
    }
}
