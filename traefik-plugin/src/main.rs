//! Barbican as a Traefik middleware (http-wasm ABI): read the request, ask the engine, act.
//!
//! Traefik instantiates this program once per pooled instance (one per concurrent request)
//! and runs `_start`: `main` reads the middleware's configuration, builds the engine once and
//! registers the handler. Statics live as long as the instance; nothing is shared between
//! instances, so each keeps its own token cache.
//!
//! Never panic here: a trap is answered 500 with the wasm stack trace in the body, and a trap
//! in `main` makes Traefik drop the middleware's router — requests then fall through to any
//! lower-priority router (fail-open). A bad configuration therefore does not trap: it is
//! logged and every request is answered 503.

// Natively only the tests use it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod keyfiles;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod plugin;

#[cfg(target_arch = "wasm32")]
mod host {
    use crate::keyfiles::KeyEvent;
    use crate::plugin::{header_list, parse_source_addr, Action, Instance};
    use barbican::Millis;
    use http_wasm_guest::host::{admin, log, Request, Response};
    use http_wasm_guest::{register, Guest};
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// http-wasm log levels (Traefik maps them onto its own).
    const ERROR: i32 = 2;
    const INFO: i32 = 0;
    const DEBUG: i32 = -1;

    /// An id_token and a state fit in a few KiB.
    const MAX_CALLBACK_BODY: usize = 64 * 1024;

    struct Plugin {
        instance: RefCell<Instance>,
    }

    /// Wall-clock time: Traefik's WASI clock is the real one (its monotonic clock is not).
    fn now() -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// The request as the engine reads it: one host call for the names, then one per header
    /// whose value the engine reads; the others go by name alone (`VALUES_READ` says why).
    /// `None` when the method, the URI, a name or a value the engine reads is not UTF-8: it is
    /// refused (`barbican::text`), never judged on a lossy copy of what the backend receives.
    fn read_request(instance: &Instance, request: &Request) -> Option<Vec<(String, String)>> {
        use barbican::text::value_text;
        let names = request.header.names();
        let mut headers = Vec::with_capacity(names.len() + 4);
        for name in names {
            let name = String::from_utf8(Vec::from(name)).ok()?;
            if instance.value_needed(&name) {
                for value in request.header.values(name.as_bytes()) {
                    let v = value_text(&name, &value).ok()?;
                    headers.push((name.clone(), v));
                }
            } else {
                headers.push((name, String::new()));
            }
        }
        let method = value_text(":method", &request.method()).ok()?;
        let uri = value_text(":path", &request.uri()).ok()?;
        Some(header_list(method, uri, headers))
    }

    impl Guest for Plugin {
        fn handle_request(&self, request: &Request, response: &Response) -> (bool, i32) {
            let Ok(mut instance) = self.instance.try_borrow_mut() else {
                // Not re-entered in a single-threaded guest; refuse rather than pass.
                respond(response, 503, &[], b"Service Unavailable\n");
                return (false, 0);
            };
            let t = now();
            log_key_events(&instance.refresh_keys(t));
            let Some(headers) = read_request(&instance, request) else {
                if let Action::Respond(r) = instance.refuse_not_text() {
                    respond(response, r.status, &r.headers, r.body.as_bytes());
                }
                return (false, 0);
            };
            let peer = if instance.needs_peer() {
                parse_source_addr(&text(&request.source_addr()))
            } else {
                None
            };
            // Only the form_post ending an OIDC login is read, and only up to a bound: it
            // never continues to a backend (DESIGN §5: reading without BufferRequest is fine
            // when the body need not reach the upstream).
            let headers = barbican::request::borrow_all(&headers);
            let body = if instance.wants_body(&headers) {
                let mut b = Vec::new();
                for chunk in request.body.read_iter() {
                    b.extend_from_slice(&chunk);
                    if b.len() > MAX_CALLBACK_BODY {
                        respond(response, 413, &[], b"Payload Too Large\n");
                        return (false, 0);
                    }
                }
                Some(b)
            } else {
                None
            };
            match instance.handle(&headers, body.as_deref(), peer, t) {
                Action::Allow(a) => {
                    for name in &a.remove {
                        request.header.remove(name.as_bytes());
                    }
                    for (n, v) in a.upstream() {
                        request.header.set(n.as_bytes(), v.as_bytes());
                    }
                    if let Some(p) = &a.path {
                        request.set_uri(p.as_bytes());
                    }
                    // Only forward-auth answers carry response headers (Set-Cookie), and
                    // sessions are refused on Traefik.
                    (true, 0)
                }
                Action::Respond(r) => {
                    if log::enabled(DEBUG) {
                        log::write(
                            DEBUG,
                            format!("barbican: {} ({})", r.status, r.reason).as_bytes(),
                        );
                    }
                    respond(response, r.status, &r.headers, r.body.as_bytes());
                    (false, 0)
                }
            }
        }
    }

    /// Headers before the status: without response buffering the status write sends them.
    fn respond(response: &Response, status: u16, headers: &[(String, String)], body: &[u8]) {
        for (n, v) in headers {
            response.header.add(n.as_bytes(), v.as_bytes());
        }
        response.set_status(i32::from(status));
        if !body.is_empty() {
            response.body.write(body);
        }
    }

    /// Key-set loads and failures. Every pooled instance reads for itself, so a rotation is
    /// logged once per instance; the first load of each instance only at debug level.
    fn log_key_events(events: &[KeyEvent]) {
        for e in events {
            let level = match e {
                KeyEvent::Failed { .. } => ERROR,
                KeyEvent::Loaded { reload: true, .. } => INFO,
                KeyEvent::Loaded { reload: false, .. } => DEBUG,
            };
            if log::enabled(level) {
                log::write(level, format!("barbican: {e}").as_bytes());
            }
        }
    }

    /// Per-instance data for the login generator: the wall clock in nanoseconds (instances
    /// start at different times), addresses, and WASI random (deterministic here, harmless).
    fn instance_seed() -> Vec<u8> {
        use std::hash::{BuildHasher, Hasher};
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let probe = Box::new(0u8);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        let mut seed = nanos.to_le_bytes().to_vec();
        seed.extend_from_slice(&h.finish().to_le_bytes());
        seed.extend_from_slice(&(std::ptr::addr_of!(*probe) as usize).to_le_bytes());
        seed
    }

    pub fn start() {
        let (mut instance, problems) = Instance::new(&admin::config());
        instance.seed(&instance_seed());
        log_key_events(&instance.refresh_keys(now()));
        if !problems.is_empty() {
            for p in &problems {
                log::write(ERROR, format!("barbican: config: {p}").as_bytes());
            }
            log::write(
                ERROR,
                format!(
                    "barbican: {} config problem(s); every request is answered 503",
                    problems.len()
                )
                .as_bytes(),
            );
        }
        register(Plugin {
            instance: RefCell::new(instance),
        });
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    host::start();
}

/// Natively there is no host: the program only exists for its tests.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("barbican-traefik is a Traefik plugin: build it for wasm32-wasip1 (build.sh)");
    std::process::exit(2);
}
