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
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod reader;

/// The http-wasm calls that read the request, made raw so the host writes into the
/// plugin's own buffer (`reader`): the SDK copies every name and value into a boxed slice.
#[cfg(target_arch = "wasm32")]
mod ffi {
    #![allow(unsafe_code)]
    use crate::reader::{Unreadable, MAX_ANSWER};

    // The same imports the SDK declares (http-wasm handler ABI), with the same types.
    #[link(wasm_import_module = "http_handler")]
    extern "C" {
        fn get_method(buf: *mut u8, buf_limit: i32) -> i32;
        fn get_uri(buf: *mut u8, buf_limit: i32) -> i32;
        fn get_header_names(kind: i32, buf: *mut u8, buf_limit: i32) -> i64;
        fn get_header_values(
            kind: i32,
            name: *const u8,
            name_len: i32,
            buf: *mut u8,
            buf_limit: i32,
        ) -> i64;
    }

    /// http-wasm's header kind for the request.
    const REQUEST: i32 = 0;

    /// Appends one host answer to `out` and returns it (its low 32 bits are the length; for
    /// the header calls the high 32 bits are the count). `call` gets the buffer's start (for
    /// inputs already in it), where to write and how much room there is. The host writes
    /// only an answer that fits and otherwise just says its length, for the guest to ask
    /// again with room (http-wasm-host-go `internal/handler`: `writeNULTerminated`,
    /// `writeStringIfUnderLimit`; Traefik 3.7 embeds it).
    fn fill(
        out: &mut Vec<u8>,
        call: impl Fn(*const u8, *mut u8, i32) -> i64,
    ) -> Result<i64, Unreadable> {
        for _ in 0..2 {
            let len = out.len();
            let room = (out.capacity() - len).min(MAX_ANSWER);
            let limit = i32::try_from(room).unwrap_or(0);
            let base = out.as_mut_ptr();
            // SAFETY: `base + len` is within (or one past) `out`'s allocation and the
            // `limit` bytes after it are its spare capacity, which nothing else refers to;
            // the host writes at most `limit` bytes there. Inputs given as `base + offset`
            // lie in `out`'s initialized part, before `len`, and are only read.
            let answer = call(base, unsafe { base.add(len) }, limit);
            let wrote = answer as u32 as usize;
            if wrote <= room {
                // SAFETY: the host initialized those `wrote` bytes (it writes only answers
                // that fit, and this one did).
                unsafe { out.set_len(len + wrote) };
                return Ok(answer);
            }
            if wrote > MAX_ANSWER {
                return Err(Unreadable::TooLarge);
            }
            out.reserve(wrote);
        }
        // The answer grew between the two calls.
        Err(Unreadable::TooLarge)
    }

    pub fn method(out: &mut Vec<u8>) -> Result<(), Unreadable> {
        // SAFETY: `fill` passes a writable region of `limit` bytes.
        fill(out, |_, buf, limit| {
            i64::from(unsafe { get_method(buf, limit) })
        })
        .map(drop)
    }

    pub fn uri(out: &mut Vec<u8>) -> Result<(), Unreadable> {
        // SAFETY: as for `method`.
        fill(out, |_, buf, limit| {
            i64::from(unsafe { get_uri(buf, limit) })
        })
        .map(drop)
    }

    pub fn header_names(out: &mut Vec<u8>) -> Result<(), Unreadable> {
        // SAFETY: as for `method`.
        fill(out, |_, buf, limit| unsafe {
            get_header_names(REQUEST, buf, limit)
        })
        .map(drop)
    }

    /// The values of the header named by `out[name]`, and how many there are.
    pub fn header_values(
        out: &mut Vec<u8>,
        name: std::ops::Range<usize>,
    ) -> Result<u32, Unreadable> {
        if name.end > out.len() || name.start > name.end {
            return Err(Unreadable::TooLarge);
        }
        let name_len = i32::try_from(name.end - name.start).map_err(|_| Unreadable::TooLarge)?;
        let answer = fill(out, |base, buf, limit| {
            // SAFETY: `name` was checked to lie in `out`'s initialized bytes, read only; the
            // write region is `fill`'s.
            unsafe { get_header_values(REQUEST, base.add(name.start), name_len, buf, limit) }
        })?;
        // The count half of `count << 32 | length`.
        Ok((answer >> 32) as u32)
    }
}

#[cfg(target_arch = "wasm32")]
mod host {
    use crate::keyfiles::KeyEvent;
    use crate::plugin::{parse_source_addr, Action, Instance};
    use crate::reader::{Reader, Source, Unreadable};
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
        reader: RefCell<Reader>,
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

    /// The request, read through the raw calls of `crate::ffi`.
    struct Host;

    impl Source for Host {
        fn method(&self, out: &mut Vec<u8>) -> Result<(), Unreadable> {
            crate::ffi::method(out)
        }
        fn uri(&self, out: &mut Vec<u8>) -> Result<(), Unreadable> {
            crate::ffi::uri(out)
        }
        fn names(&self, out: &mut Vec<u8>) -> Result<(), Unreadable> {
            crate::ffi::header_names(out)
        }
        fn values(
            &self,
            out: &mut Vec<u8>,
            name: std::ops::Range<usize>,
        ) -> Result<u32, Unreadable> {
            crate::ffi::header_values(out, name)
        }
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
            let Ok(mut reader) = self.reader.try_borrow_mut() else {
                respond(response, 503, &[], b"Service Unavailable\n");
                return (false, 0);
            };
            let headers = match reader.read(&Host, |n| instance.value_needed(n)) {
                Ok(h) => h,
                Err(e) => {
                    if log::enabled(DEBUG) {
                        log::write(DEBUG, format!("barbican: request refused: {e}").as_bytes());
                    }
                    if let Action::Respond(r) = instance.refuse_not_text() {
                        respond(response, r.status, &r.headers, r.body.as_bytes());
                    }
                    return (false, 0);
                }
            };
            let peer = if instance.needs_peer() {
                parse_source_addr(&text(&request.source_addr()))
            } else {
                None
            };
            // Only the form_post ending an OIDC login is read, and only up to a bound: it
            // never continues to a backend (DESIGN §5: reading without BufferRequest is fine
            // when the body need not reach the upstream).
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
            reader: RefCell::new(Reader::default()),
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
