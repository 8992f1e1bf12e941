//! Envoy/Istio glue (proxy-wasm ABI 0.2.1): read the request, ask the engine, act on the step.
//!
//! One VM runs per worker thread; the engine lives in a thread-local shared by the root
//! context and the worker's HTTP contexts. Cross-worker decisions go through Envoy shared
//! data (all VMs with the same `vm_id` see it).
//!
//! Every host call goes through `proxy_wasm::hostcalls`, whose functions return `Result`,
//! instead of the SDK's trait helpers, which `unwrap()`: a panic here would kill the worker's
//! VM (DESIGN §5: with FAIL_CLOSED, 503 until reload). The engine's `RefCell` is never held
//! across a call that could re-enter the guest.

use crate::cache::{Headers, SharedStore};
use crate::decision::{Allow, CallId, Counters, Engine, ReqId, Request, Step};
use crate::text::MapError;
use crate::Millis;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, calls: HashMap::new() })
    });
}}

/// Per-VM state shared by the root and HTTP contexts.
struct State {
    engine: Engine,
    /// Read the peer address only when a rule uses it: it costs a host call.
    needs_peer: bool,
    metrics: Vec<(&'static str, u32)>,
    /// `Set-Cookie` and the like to add to a request's response, by request id.
    response_headers: HashMap<ReqId, Vec<(String, String)>>,
    /// The last set of upstream headers checked by [`addable`], and the answer.
    addable: Option<(Headers, bool)>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Runs `f` on the state; `None` when there is none (not configured) or it is busy.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    STATE.with(|s| s.try_borrow_mut().ok().and_then(|mut g| g.as_mut().map(f)))
}

/// The host's clock in milliseconds; 0 if the host refuses the call (Envoy's never does).
fn now() -> Millis {
    ffi::time_nanos().map_or(0, |n| n / 1_000_000)
}

/// Secrets named in the configuration: Envoy hands the VM the variables listed in
/// `vm_config.environment_variables` (`host_env_keys` from Envoy's own environment, or
/// `key_values`) and gives it no files.
fn read_secret(r: crate::config::SecretRef<'_>) -> Result<String, String> {
    use crate::config::SecretRef;
    match r {
        // Never VarError's own text: for a value that is not UTF-8 it quotes the value.
        SecretRef::Env(n) => std::env::var(n).map_err(|_| {
            format!(
                "environment variable {n} is not set (or not UTF-8 text) in the wasm VM: list \
                 it in vm_config.environment_variables (host_env_keys or key_values)"
            )
        }),
        SecretRef::File(p) => Err(format!(
            "file {p}: Envoy's wasm VMs cannot read files; put the secret in an environment \
             variable (vm_config.environment_variables) and name it with {{\"env\": \"NAME\"}}"
        )),
    }
}

/// Per-VM data for the login generator (see `seal::Entropy`): the clock in nanoseconds, the
/// host's randomness (WASI `random_get`, through std's hasher keys), the context id and a
/// heap address. The operator's secret is what makes the output unpredictable; this keeps
/// the workers' sequences apart.
fn instance_seed(context_id: u32) -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    let nanos = u128::from(ffi::time_nanos().unwrap_or(0));
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    let probe = Box::new(0u8);
    let mut seed = nanos.to_le_bytes().to_vec();
    seed.extend_from_slice(&h.finish().to_le_bytes());
    seed.extend_from_slice(&context_id.to_le_bytes());
    seed.extend_from_slice(&(std::ptr::addr_of!(*probe) as usize).to_le_bytes());
    seed
}

/// The answer to the callout being delivered: its status and headers. An answer with a
/// header that is not text reads as status 0 (no usable answer: stale grace or 503, never
/// an allow).
///
/// Read as requests are ([`ffi::header_map_bytes`], [`crate::text::read_map`]), never with
/// the SDK's `get_map`: it unwraps every value into a `String`, and one `Cookie: \xff`
/// trapped the VM.
fn callout_answer() -> (u16, Vec<(String, String)>) {
    let raw = ffi::header_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let Ok(pairs) = crate::text::read_map(&raw, true) else {
        return (0, Vec::new());
    };
    let mut h = Vec::with_capacity(pairs.len());
    for (n, v) in pairs {
        h.push((n.to_owned(), v.to_owned()));
    }
    (response_status(&h), h)
}

/// The one host call made without the SDK's wrapper, for the hot path: the request header
/// map exactly as the host serialized it, decoded in place by [`crate::text::read_map`].
/// The SDK's `get_map_bytes` makes a `String` and a `Vec` of every name and value; with a
/// cached session that was ~12k of the ~286k instructions Envoy spent per request
/// (bench/hostcost.py). The crate denies `unsafe` everywhere else (tests/unsafe_code.rs).
mod ffi {
    #![allow(unsafe_code)]
    use proxy_wasm::types::{MapType, Status};

    // The same imports the SDK declares (proxy-wasm ABI 0.2.1), with the same types.
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> Status;
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
    }

    /// The host's clock in nanoseconds since the Unix epoch. The SDK's `get_current_time`
    /// makes a `SystemTime` of it, and turning that back into milliseconds took 128-bit
    /// arithmetic (library calls in wasm32) on every request.
    pub fn time_nanos() -> Option<u64> {
        let mut t: u64 = 0;
        // SAFETY: the out-pointer points at a live local `u64`; the host writes it only.
        let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
        matches!(status, Status::Ok).then_some(t)
    }

    /// The serialized map, or `None` when the host refuses the call.
    pub fn header_map_bytes(map: MapType) -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: both out-pointers point at live locals of the right types; the host
        // writes them and nothing else.
        let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
        match status {
            Status::Ok if data.is_null() => Some(Vec::new()),
            // SAFETY: the host got these `size` bytes from this module's exported
            // `proxy_on_memory_allocate` (the SDK's allocator: a boxed slice of exactly
            // `size` bytes, so capacity equals length) and hands them over; the SDK's
            // `get_map_bytes` takes ownership the same way.
            Status::Ok => Some(unsafe { Vec::from_raw_parts(data, size, size) }),
            _ => None,
        }
    }
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

/// Envoy shared data as the cross-worker cache level.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, slot: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(slot).ok().and_then(|(v, _)| v)
    }
    fn set(&mut self, slot: &str, value: &[u8]) {
        let _ = hostcalls::set_shared_data(slot, Some(value), None);
    }
}

/// Counters reach Envoy's stats on the root's tick, not per request: each increment is a
/// host call, and the hot path of a cached allow should make as few as possible.
fn flush_metrics(state: &mut State) {
    let c: Counters = state.engine.take_counters();
    for (name, v) in c.iter() {
        if v == 0 {
            continue;
        }
        if let Some((_, id)) = state.metrics.iter().find(|(n, _)| *n == name) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(v).unwrap_or(i64::MAX));
        }
    }
}

/// Whether `set` may be written with `add` instead of `replace`: every name is one `decide`
/// strips from every request (so the request holds none of them once `remove` is applied)
/// and no name repeats. Then both give the same headers, and `add` is cheaper: Envoy's
/// `replace` looks the name up and removes it first. A cached allow sets ~13 identity
/// headers; callgrind on Envoy counts ~12k fewer instructions per request (306.6k -> 294.4k,
/// bench/hostcost.py). A cached session hands out the same `Arc` on every hit, so the answer
/// is kept for the last one seen: checked on every request, the names would cost in V8 about
/// what `add` saves.
fn addable(s: &mut State, a: &Allow) -> bool {
    let set = &a.set;
    if let Some((seen, ok)) = &s.addable {
        if Headers::ptr_eq(seen, set) {
            return *ok;
        }
    }
    let ok = a.upstream().enumerate().all(|(i, (n, _))| {
        s.engine.always_strips(n) && !a.upstream().take(i).any(|(m, _)| m.eq_ignore_ascii_case(n))
    });
    s.addable = Some((Headers::clone(set), ok));
    ok
}

/// Applies a step to the request whose context is currently effective.
/// Returns the action for the host when the request is the one being called back
/// (`resume` false), or resumes it itself (`resume` true).
fn act(id: ReqId, step: Step, resume: bool) -> Action {
    match step {
        Step::Allow(a) => {
            for name in &a.remove {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
            }
            let add = with_state(|s| addable(s, &a)).unwrap_or(false);
            for (n, v) in a.upstream() {
                let _ = if add {
                    hostcalls::add_map_value(MapType::HttpRequestHeaders, n, v)
                } else {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, n, Some(v))
                };
            }
            if let Some(p) = &a.path {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(p));
            }
            if !a.response_headers.is_empty() {
                with_state(|s| s.response_headers.insert(id, a.response_headers));
            }
            if resume {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Step::Respond(r) => {
            log(
                LogLevel::Debug,
                &format!("barbican: {} ({})", r.status, r.reason),
            );
            let headers: Vec<(&str, &str)> = r
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            if hostcalls::send_http_response(u32::from(r.status), headers, Some(r.body.as_bytes()))
                .is_err()
            {
                // The stream may already be gone; nothing else is safe to do.
                log(LogLevel::Debug, "barbican: could not send local response");
            }
            Action::Pause
        }
        Step::Call(_) | Step::Wait => Action::Pause,
    }
}

/// Delivers steps produced by a callout answer. `current` is the context Envoy called us in;
/// steps for other requests are applied with that request's context made effective and
/// resume it. The current request is resumed too unless `resume_own` is false (we are still
/// inside its header callback and return the action instead).
fn deliver(current: u32, steps: Vec<(ReqId, Step)>, resume_own: bool) -> Option<Action> {
    let mut own = None;
    for (id, step) in steps {
        if id == current {
            own = Some(act(id, step, resume_own));
        } else if hostcalls::set_effective_context(id).is_ok() {
            act(id, step, true);
        }
    }
    let _ = hostcalls::set_effective_context(current);
    own
}

/// A callout answer's body, capped: key sets and introspection answers are small, and a
/// hostile or broken IdP must not make a worker allocate without bound.
fn callout_body(size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(
        BufferType::HttpCallResponseBody,
        0,
        size.min(MAX_CALLOUT_BODY),
    )
    .ok()
    .flatten()
    .unwrap_or_default()
}

const MAX_CALLOUT_BODY: usize = 512 * 1024;

fn response_status(headers: &[(String, String)]) -> u16 {
    crate::header(headers, ":status")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Dispatches a callout from the effective context; on failure returns the failure's steps.
fn dispatch(c: &crate::Callout) -> Result<u32, Vec<(ReqId, Step)>> {
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    match hostcalls::dispatch_http_call(
        &c.cluster,
        headers,
        c.body.as_deref(),
        vec![],
        Duration::from_millis(c.timeout_ms),
    ) {
        Ok(token) => Ok(token),
        Err(e) => {
            log(
                LogLevel::Warn,
                &format!("barbican: callout to cluster {:?} failed: {e:?}", c.cluster),
            );
            let t = now();
            Err(with_state(|s| {
                s.engine
                    .on_callout_response(c.id, 0, &[], t, &mut HostStore)
            })
            .unwrap_or_default())
        }
    }
}

struct Root {
    context_id: u32,
    /// Callouts the root dispatched for orphaned waiters: token → callout id.
    calls: HashMap<u32, CallId>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _: usize, body_size: usize, _: usize) {
        let Some(cid) = self.calls.remove(&token_id) else {
            return;
        };
        let (status, headers) = callout_answer();
        let body = callout_body(body_size);
        let t = now();
        let steps = with_state(|s| {
            s.engine
                .on_callout_body(cid, status, &headers, &body, t, &mut HostStore)
        })
        .unwrap_or_default();
        deliver(self.context_id, steps, true);
    }
}

/// `jwks.file` needs a filesystem, which Envoy's wasm VMs do not have.
fn file_problems(e: &Engine) -> Vec<crate::ConfigError> {
    crate::tokens::refuse_jwks_files(&e.jwks_files(), "Envoy")
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(c)) => c,
            _ => {
                log(
                    LogLevel::Critical,
                    "barbican: no plugin configuration; refusing to start",
                );
                return false;
            }
        };
        let built = Engine::from_json_with(&config, &mut read_secret).and_then(|e| {
            let files = file_problems(&e);
            if files.is_empty() {
                Ok(e)
            } else {
                Err(files)
            }
        });
        let mut engine = match built {
            Ok(e) => e,
            Err(errors) => {
                for e in &errors {
                    log(LogLevel::Critical, &format!("barbican: config: {e}"));
                }
                log(
                    LogLevel::Critical,
                    &format!(
                        "barbican: {} config problem(s); refusing to start",
                        errors.len()
                    ),
                );
                return false;
            }
        };
        engine.seed(&instance_seed(self.context_id));
        let mut metrics = Vec::new();
        for (name, _) in Counters::default().iter() {
            if let Ok(id) =
                hostcalls::define_metric(MetricType::Counter, &format!("barbican.{name}"))
            {
                metrics.push((name, id));
            }
        }
        STATE.with(|s| {
            if let Ok(mut g) = s.try_borrow_mut() {
                *g = Some(State {
                    needs_peer: engine.needs_peer(),
                    engine,
                    metrics,
                    response_headers: HashMap::new(),
                    addable: None,
                });
            }
        });
        // The tick flushes metrics, and dispatches callouts for requests whose shared answer
        // did not fit them and due key-set fetches (Engine::background); 200 ms bounds the
        // extra wait.
        let _ = hostcalls::set_tick_period(Duration::from_millis(200));
        true
    }

    fn on_tick(&mut self) {
        let t = now();
        let (orphans, expired) = with_state(|s| {
            let o = s.engine.background(t, &mut HostStore);
            let e = s.engine.expire(t);
            flush_metrics(s);
            (o, e)
        })
        .unwrap_or_default();
        deliver(self.context_id, expired, true);
        for c in orphans {
            match dispatch(&c) {
                Ok(token) => {
                    self.calls.insert(token, c.id);
                }
                Err(steps) => {
                    deliver(self.context_id, steps, true);
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            call: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    /// The callout this request dispatched, if any.
    call: Option<CallId>,
}

impl Context for Http {
    fn on_http_call_response(&mut self, _token: u32, _: usize, body_size: usize, _: usize) {
        let Some(cid) = self.call.take() else { return };
        let (status, headers) = callout_answer();
        let body = callout_body(body_size);
        let t = now();
        let steps = with_state(|s| {
            s.engine
                .on_callout_body(cid, status, &headers, &body, t, &mut HostStore)
        })
        .unwrap_or_default();
        if deliver(self.id, steps, true).is_none() {
            // Not among the answered (should not happen): never leave it hanging, never allow.
            act(self.id, fail_closed(), true);
        }
    }
}

fn fail_closed() -> Step {
    Step::Respond(crate::Respond {
        status: 503,
        headers: vec![("retry-after".into(), "5".into())],
        body: "Service Unavailable\n".into(),
        reason: "internal",
    })
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(raw) = ffi::header_map_bytes(MapType::HttpRequestHeaders) else {
            return act(self.id, fail_closed(), false);
        };
        let headers = match crate::text::read_map(&raw, false) {
            Ok(h) => h,
            // A value the engine reads that is not text (`crate::text`): refused with 400,
            // under the same reason code as on Traefik.
            Err(MapError::NotText(_)) => {
                let step = with_state(|s| s.engine.refuse_not_text()).unwrap_or_else(fail_closed);
                return act(self.id, step, false);
            }
            Err(MapError::Malformed) => {
                log(
                    LogLevel::Error,
                    "barbican: malformed request header map from the host; refused",
                );
                return act(self.id, fail_closed(), false);
            }
        };
        let t = now();
        let peer = if with_state(|s| s.needs_peer).unwrap_or(false) {
            hostcalls::get_property(vec!["source", "address"])
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|a| crate::net::parse_peer(&a))
        } else {
            None
        };
        let step = with_state(|s| {
            s.engine.decide(
                Request {
                    id: self.id,
                    headers: &headers,
                    peer,
                    body: None,
                },
                t,
                &mut HostStore,
            )
        })
        .unwrap_or_else(fail_closed);
        match step {
            Step::Call(c) => match dispatch(&c) {
                Ok(_) => {
                    self.call = Some(c.id);
                    Action::Pause
                }
                Err(steps) => deliver(self.id, steps, false)
                    .unwrap_or_else(|| act(self.id, fail_closed(), false)),
            },
            other => act(self.id, other, false),
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        // Hashing the id to look it up costs more than the rest of this callback; nearly
        // every request has nothing to add.
        let extra = with_state(|s| {
            (!s.response_headers.is_empty())
                .then(|| s.response_headers.remove(&self.id))
                .flatten()
        });
        if let Some(Some(extra)) = extra {
            for (n, v) in &extra {
                let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, n, v);
            }
        }
        Action::Continue
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let id = self.id;
        with_state(|s| {
            s.engine.cancel(id);
            // Hashing the id costs more than the check; nearly every map is empty.
            if !s.response_headers.is_empty() {
                s.response_headers.remove(&id);
            }
        });
    }
}
