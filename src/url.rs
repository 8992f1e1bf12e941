//! Absolute http(s) URLs as configuration and redirects carry them. A leaf: `config`,
//! `oidc`, `tokens` and the engine all read URLs, and none of them need import another for it.

/// The parts of an absolute http(s) URL Barbican needs, after refusing anything a browser
/// could read differently from us (backslashes, controls, spaces, userinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Lower-case host without the port.
    pub host: String,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Parses an absolute `http://` or `https://` URL strictly. `None` for everything else,
/// including `//host`, `\\host`, `javascript:`, a `user@` part and a fragment.
pub fn split_url(u: &str) -> Option<Url<'_>> {
    if u.bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'\\' || b == b'#' || b >= 0x80)
    {
        return None;
    }
    let (scheme, rest) = if let Some(r) = u.strip_prefix("https://") {
        ("https", r)
    } else {
        ("http", u.strip_prefix("http://")?)
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (h, rest) = authority.split_at(close + 1);
        match rest {
            "" => (h, None),
            r => (h, Some(r.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !host_ok {
        return None;
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    if path.starts_with("//") {
        return None;
    }
    Some(Url {
        scheme,
        authority,
        host: host.to_ascii_lowercase(),
        path,
        query,
    })
}

/// `http(s)://authority/path` → (authority, path).
pub fn split_http_uri(u: &str) -> Option<(String, String)> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || authority.bytes().any(|b| b <= b' ' || b == b'@')
        || path.bytes().any(|b| b <= b' ')
    {
        return None;
    }
    Some((authority.to_string(), path.to_string()))
}
