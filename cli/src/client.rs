//! Callouts: the engine's `Step::Call` performed over HTTP/1.1 to `clusters[name]`, the way
//! Envoy's `dispatch_http_call` does it (DESIGN §5): the engine's pseudo-headers give the
//! method, path and Host; the answer is handed back with status 0 when the IdP could not be
//! reached, did not answer within the callout's timeout, or answered something that is not
//! HTTP. Redirects are never followed: a 3xx is the IdP's answer (a login redirect for the
//! browser), not an instruction to this client.
//!
//! One connection per callout: callouts are what the cache avoids (one per session per TTL),
//! and a fresh connection cannot carry a previous answer's state.

use crate::doc::Upstream;
use barbican::Callout;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Key sets and introspection answers are small; a hostile or broken IdP must not make the
/// server allocate without bound (the same cap as the Envoy host's).
pub const MAX_CALLOUT_BODY: usize = 512 * 1024;

/// An IdP's answer; status 0 when there is none.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Why there is no answer (for logs; never contains request or answer data).
    pub error: Option<String>,
}

impl Answer {
    fn failed(why: impl Into<String>) -> Answer {
        Answer {
            error: Some(why.into()),
            ..Answer::default()
        }
    }
}

#[derive(Clone)]
pub struct Client {
    clusters: Arc<BTreeMap<String, Upstream>>,
    tls: tokio_rustls::TlsConnector,
}

/// Reads a PEM file of CA certificates.
pub fn read_ca_file(path: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: cannot read: {e}"))?
        .collect();
    let certs = certs.map_err(|e| format!("{path}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no CERTIFICATE block"));
    }
    Ok(certs)
}

/// rustls with ring (the core's crypto already; no OpenSSL) trusting the Mozilla roots and
/// the certificates of `ca_file`.
pub fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(f) = ca_file {
        for c in read_ca_file(f)? {
            roots
                .add(c)
                .map_err(|e| format!("{f}: not a usable CA certificate: {e}"))?;
        }
    }
    // Deprecated in rustls 0.23.48 only for lacking post-quantum key exchange, which needs
    // aws-lc-rs (cmake and a C toolchain build; the brief is ring, shared with the core).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Client {
    pub fn new(clusters: BTreeMap<String, Upstream>, tls: rustls::ClientConfig) -> Client {
        Client {
            clusters: Arc::new(clusters),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        }
    }

    /// Performs a callout within its timeout.
    pub async fn call(&self, c: &Callout) -> Answer {
        let Some(up) = self.clusters.get(&c.cluster) else {
            return Answer::failed(format!("no cluster {:?} in clusters", c.cluster));
        };
        let t = Duration::from_millis(c.timeout_ms.max(1));
        match tokio::time::timeout(t, self.exchange(up, c)).await {
            Ok(a) => a,
            Err(_) => Answer::failed(format!("no answer within {} ms", c.timeout_ms)),
        }
    }

    async fn exchange(&self, up: &Upstream, c: &Callout) -> Answer {
        let req = match request(up, c) {
            Ok(r) => r,
            Err(e) => return Answer::failed(e),
        };
        let tcp = match tokio::net::TcpStream::connect((up.host.as_str(), up.port)).await {
            Ok(s) => s,
            Err(e) => return Answer::failed(format!("connect: {}", e.kind())),
        };
        let _ = tcp.set_nodelay(true);
        if up.tls {
            let name = match rustls::pki_types::ServerName::try_from(up.host.clone()) {
                Ok(n) => n,
                Err(_) => return Answer::failed("the cluster's host is not a TLS server name"),
            };
            match self.tls.connect(name, tcp).await {
                Ok(s) => send(TokioIo::new(s), req).await,
                Err(e) => Answer::failed(format!("TLS: {e}")),
            }
        } else {
            send(TokioIo::new(tcp), req).await
        }
    }
}

/// The HTTP request for a callout. Host is the callout's `:authority`, except where that is
/// the cluster's name (Envoy's default for introspection): then the cluster URL's authority.
fn request(up: &Upstream, c: &Callout) -> Result<hyper::Request<Full<Bytes>>, String> {
    let h = &c.headers;
    let method = barbican::header(h, ":method").unwrap_or("GET");
    let path = barbican::header(h, ":path").unwrap_or("/");
    let authority = match barbican::header(h, ":authority") {
        Some(a) if !a.is_empty() && a != c.cluster => a.to_string(),
        _ => up.authority(),
    };
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    for (n, v) in h.iter().filter(|(n, _)| !n.starts_with(':')) {
        b = b.header(n.as_str(), v.as_str());
    }
    let body = c.body.clone().map(Bytes::from).unwrap_or_default();
    b.body(Full::new(body))
        .map_err(|_| "the callout's method, path or a header is not valid HTTP".to_string())
}

async fn send<T>(io: TokioIo<T>, req: hyper::Request<Full<Bytes>>) -> Answer
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(x) => x,
        Err(e) => return Answer::failed(format!("HTTP: {e}")),
    };
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Answer::failed(format!("HTTP: {e}"));
        }
    };
    let status = resp.status().as_u16();
    let mut headers = Vec::with_capacity(resp.headers().len());
    for (n, v) in resp.headers() {
        // A value that is not text cannot be an identity the engine copies; leave it out.
        if let Ok(v) = v.to_str() {
            headers.push((n.as_str().to_string(), v.to_string()));
        }
    }
    let mut body = Vec::new();
    let mut incoming = resp.into_body();
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    let room = MAX_CALLOUT_BODY.saturating_sub(body.len());
                    body.extend_from_slice(d.get(..d.len().min(room)).unwrap_or_default());
                    if body.len() >= MAX_CALLOUT_BODY {
                        break;
                    }
                }
            }
            Err(e) => {
                driver.abort();
                return Answer::failed(format!("HTTP body: {e}"));
            }
        }
    }
    driver.abort();
    Answer {
        status,
        headers,
        body,
        error: None,
    }
}
