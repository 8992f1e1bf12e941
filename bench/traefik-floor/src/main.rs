//! A benchmark baseline for Traefik: an http-wasm guest that decides nothing and makes only
//! the host calls its configuration names, then lets the request through.
//!
//! `{}` is a no-op plugin. `{"read": ["cookie"], "read_present": ["host", "accept"],
//! "set": {"x-a": "1"}, "clock": true}` reads the header names, the method and the URI (what
//! any guest deciding on a request needs), the values of the `read` headers, the values of
//! the `read_present` headers the request has, WASI's wall clock (with `clock`), and sets the
//! `set` headers. Given Barbican's list of the values it reads (`barbican::text::VALUES_READ`)
//! as `read_present`, it makes the host calls Barbican makes, without Barbican's work. Comparing the three rows tells how much
//! of a Barbican row is Traefik's price for any wasm middleware, how much the calls, and how
//! much Barbican itself.

#[cfg(target_arch = "wasm32")]
mod guest {
    use http_wasm_guest::host::{admin, Request, Response};
    use http_wasm_guest::{register, Guest};

    #[derive(Default)]
    struct Calls {
        active: bool,
        clock: bool,
        read: Vec<String>,
        read_present: Vec<String>,
        set: Vec<(String, String)>,
    }

    impl Guest for Calls {
        fn handle_request(&self, request: &Request, _response: &Response) -> (bool, i32) {
            if self.active {
                let names = request.header.names();
                let method = request.method();
                let uri = request.uri();
                let mut values: Vec<_> = self
                    .read
                    .iter()
                    .map(|n| request.header.values(n.as_bytes()))
                    .collect();
                for n in &names {
                    if self.read_present.iter().any(|p| p.as_bytes() == &n[..]) {
                        values.push(request.header.values(n));
                    }
                }
                std::hint::black_box((names, method, uri, values));
                if self.clock {
                    std::hint::black_box(std::time::SystemTime::now());
                }
                for (n, v) in &self.set {
                    request.header.set(n.as_bytes(), v.as_bytes());
                }
            }
            (true, 0)
        }
    }

    pub fn start() {
        let cfg: serde_json::Value =
            serde_json::from_slice(&admin::config()).unwrap_or(serde_json::Value::Null);
        let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let set: Vec<(String, String)> = cfg
            .get("set")
            .and_then(|s| s.as_object())
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let read = strings(cfg.get("read"));
        let read_present = strings(cfg.get("read_present"));
        register(Calls {
            active: cfg.get("read").is_some() || !read_present.is_empty() || !set.is_empty(),
            // Traefik hands plugins every scalar as a string.
            clock: matches!(cfg.get("clock"), Some(v) if v == true || v == "true"),
            read,
            read_present,
            set,
        });
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    guest::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("traefik-floor is a Traefik plugin for the benchmark: build it for wasm32-wasip1");
    std::process::exit(2);
}
