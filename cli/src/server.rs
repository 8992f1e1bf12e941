//! `barbican serve`: the engine behind an HTTP forward-auth endpoint, for proxies that
//! cannot load the wasm filter (Caddy, nginx, Traefik forwardAuth) and for Envoy's
//! ext_authz. The host duties are those of the Envoy adapter (src/host/proxy_wasm.rs):
//! build the request with pseudo-headers, pass the peer, perform the engine's callouts and
//! hand their answers back, drive its timers (orphans, expiry, key-set refreshes) and keep
//! the shared store. The proxy, not serve, forwards the request: serve answers 2xx with the
//! identity headers for the proxy to copy, or the engine's own answer.
//!
//! One engine behind a mutex: a decision takes microseconds, and the lock is never held
//! across an await. A request whose decision waits on a callout parks on a oneshot channel
//! that the callout's task (or the timer's expiry) fills.

use crate::client::Client;
use crate::doc::{self, ServeSettings};
use crate::front::{self, Endpoint, Front, Incoming, Refused};
use crate::log;
use crate::metrics::{self, Metrics};
use barbican::decision::{Counters, ReqId};
use barbican::net::Cidr;
use barbican::{Callout, Engine, MemStore, Millis, Request, Step};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch, Semaphore};

/// The tick that drives the engine's timers, as the Envoy root context's 200 ms tick does.
const TICK: Duration = Duration::from_millis(200);

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9091";

struct Core {
    engine: Engine,
    store: MemStore,
    /// Requests parked on a callout, by id.
    waiters: HashMap<ReqId, oneshot::Sender<Step>>,
    next_id: ReqId,
    totals: Counters,
}

impl Core {
    fn deliver(&mut self, steps: Vec<(ReqId, Step)>) {
        for (id, step) in steps {
            if let Some(tx) = self.waiters.remove(&id) {
                let _ = tx.send(step);
            }
        }
    }

    fn new_id(&mut self) -> ReqId {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.waiters.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    fn drain_counters(&mut self) {
        let c = self.engine.take_counters();
        metrics::add(&mut self.totals, &c);
    }
}

struct Shared {
    core: Mutex<Core>,
    client: Client,
    metrics: Metrics,
    settings: ServeSettings,
    trusted: Vec<Cidr>,
    requests: Semaphore,
    ready: AtomicBool,
    in_flight: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // panic = abort: a poisoned lock cannot happen; take it anyway rather than unwrap.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Entropy for the engine's login generator (OIDC state and nonces), from the OS.
fn seed() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut s = vec![0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut s).is_err() {
        log!(
            Warn,
            "no OS randomness; seeding from the clock and process id"
        );
    }
    s.extend_from_slice(&now_ms().to_le_bytes());
    s.extend_from_slice(&std::process::id().to_le_bytes());
    s
}

pub struct Options {
    pub config: String,
    pub listen: Option<String>,
}

/// Loads the document, prints every problem (core and serve) at once, or runs the server.
pub fn run(opts: Options) -> ExitCode {
    let document = match doc::load(&opts.config) {
        Ok(d) => d,
        Err(e) => {
            println!("{e}");
            return ExitCode::from(1);
        }
    };
    let built = doc::engine(&document);
    let cfg_for_clusters = match &built {
        Ok((cfg, _)) => Some(cfg.clone()),
        Err(_) => serde_json::from_slice(&document.json).ok(),
    };
    let parts = doc::serve_parts(&document, cfg_for_clusters.as_ref());
    let mut problems = Vec::new();
    if let Err(e) = &built {
        problems.extend(e.iter().cloned());
    }
    if let Err(e) = &parts {
        problems.extend(e.iter().cloned());
    }
    if let Some(cfg) = &cfg_for_clusters {
        problems.extend(serve_problems(cfg));
    }
    let (Ok((cfg, mut engine)), Ok(parts), true) = (built, parts, problems.is_empty()) else {
        for p in &problems {
            println!("{}: {p}", opts.config);
        }
        println!("{} problem(s); not starting", problems.len());
        return ExitCode::from(1);
    };
    let listen = opts
        .listen
        .or(parts.settings.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        println!("--listen {listen:?}: must be ADDRESS:PORT, e.g. 127.0.0.1:9091");
        return ExitCode::from(2);
    };
    let tls = match crate::client::tls_config(parts.settings.ca_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            println!("{}: serve.ca_file: {e}", opts.config);
            return ExitCode::from(1);
        }
    };
    engine.seed(&seed());
    let trusted = cfg
        .trusted_proxies
        .iter()
        .filter_map(|c| Cidr::parse(c).ok())
        .collect();
    let settings = parts.settings.clone();
    let shared = Arc::new(Shared {
        core: Mutex::new(Core {
            engine,
            store: MemStore::default(),
            waiters: HashMap::new(),
            next_id: 0,
            totals: Counters::default(),
        }),
        client: Client::new(parts.clusters, tls),
        metrics: Metrics::default(),
        requests: Semaphore::new(settings.max_concurrent_requests),
        settings,
        trusted,
        ready: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });
    match runtime(shared.settings.workers) {
        Ok(rt) => rt.block_on(async move {
            // The accept loop runs as a task, not on the thread that called block_on: with
            // several workers, each accepted connection then starts on the worker that
            // accepted it instead of being handed to another thread.
            tokio::spawn(serve(shared, addr))
                .await
                .unwrap_or(ExitCode::from(1))
        }),
        Err(e) => {
            println!("cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// One thread for `workers` 1 (`serve.workers`, doc.rs says why that is the default),
/// else a work-stealing runtime with that many.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// What a valid document lacks for serve, beyond `clusters`: the proxy in front must be
/// trusted, or every auth request would be refused.
pub fn serve_problems(cfg: &barbican::Config) -> Vec<barbican::ConfigError> {
    let mut out = Vec::new();
    if cfg.trusted_proxies.is_empty() {
        out.push(barbican::ConfigError {
            path: "trusted_proxies".into(),
            problem: "serve believes the forwarded request (X-Forwarded-*, X-Original-*) only \
                      from these proxies: list the address of the proxy in front, e.g. \
                      [\"127.0.0.1/32\"]"
                .into(),
        });
    }
    out
}

async fn serve(shared: Arc<Shared>, addr: SocketAddr) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            println!("cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        println!("cannot watch SIGTERM");
        return ExitCode::from(1);
    };
    let Ok(mut int) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    else {
        println!("cannot watch SIGINT");
        return ExitCode::from(1);
    };
    log!(
        Info,
        "serve: listening on {}",
        listener.local_addr().unwrap_or(addr)
    );
    tokio::spawn(ticker(shared.clone()));

    let max_conns = shared.settings.max_connections;
    let conns = Arc::new(Semaphore::new(max_conns));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(shared.settings.idle_timeout_ms))
        .max_buf_size(shared.settings.max_header_bytes.max(8192))
        .keep_alive(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    log!(Warn, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut stop = stop_rx.clone();
        let http1 = http1.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let sh = shared.clone();
                async move { Ok::<_, Infallible>(handle(sh, peer, req).await) }
            });
            let conn = http1.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // Stop accepting (the listener closes: new connections are refused), let in-flight
    // requests finish and close idle keep-alive connections, within the grace period.
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = Duration::from_millis(shared.settings.shutdown_grace_ms);
    let all = u32::try_from(max_conns).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(grace, conns.acquire_many(all))
        .await
        .is_ok();
    if drained {
        log!(Info, "serve: stopped; every connection finished");
    } else {
        log!(
            Warn,
            "serve: stopped after {} ms with requests still open",
            grace.as_millis()
        );
    }
    ExitCode::SUCCESS
}

/// The engine's timers: callouts whose request went away while others wait, key-set
/// fetches due, callouts never answered.
async fn ticker(shared: Arc<Shared>) {
    let mut iv = tokio::time::interval(TICK);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        let (orphans, keys) = {
            let mut g = shared.lock();
            let core = &mut *g;
            let now = now_ms();
            // Orphans first, so that what `background` returns is key-set work only.
            let orphans = core.engine.take_orphans(now);
            let keys = core.engine.background(now, &mut core.store);
            let expired = core.engine.expire(now);
            core.deliver(expired);
            core.drain_counters();
            shared
                .ready
                .store(core.engine.keys_missing() == 0, Ordering::Relaxed);
            (orphans, keys)
        };
        for c in orphans {
            spawn_callout(shared.clone(), c, false);
        }
        for c in keys {
            spawn_callout(shared.clone(), c, true);
        }
    }
}

fn spawn_callout(shared: Arc<Shared>, c: Callout, background_keys: bool) {
    tokio::spawn(async move {
        let ans = shared.client.call(&c).await;
        shared.metrics.callout(&c.cluster, ans.status);
        if background_keys {
            shared
                .metrics
                .jwks_refresh((200..300).contains(&ans.status));
        }
        if let Some(e) = &ans.error {
            log!(Warn, "callout to cluster {:?} failed: {e}", c.cluster);
        }
        let mut g = shared.lock();
        let core = &mut *g;
        let steps = core.engine.on_callout_body(
            c.id,
            ans.status,
            &ans.headers,
            &ans.body,
            now_ms(),
            &mut core.store,
        );
        core.deliver(steps);
        shared
            .ready
            .store(core.engine.keys_missing() == 0, Ordering::Relaxed);
    });
}

/// Cancels a request's engine state when its future is dropped (client gone, timeout) before
/// it got its step, as the Envoy adapter does when a context is destroyed.
struct Parked<'a> {
    shared: &'a Shared,
    id: ReqId,
    done: bool,
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut g = self.shared.lock();
            g.waiters.remove(&self.id);
            g.engine.cancel(self.id);
        }
    }
}

/// Runs the engine for one request to its final step.
async fn decide(
    shared: &Arc<Shared>,
    headers: &[(String, String)],
    peer: Option<IpAddr>,
    body: Option<&[u8]>,
) -> Step {
    let (id, mut step, mut rx) = {
        let mut g = shared.lock();
        let core = &mut *g;
        let id = core.new_id();
        let step = core.engine.decide(
            Request {
                id,
                headers: &barbican::request::borrow_all(headers),
                peer,
                body,
            },
            now_ms(),
            &mut core.store,
        );
        let rx = park(core, id, &step);
        (id, step, rx)
    };
    let mut parked = Parked {
        shared,
        id,
        done: false,
    };
    loop {
        match step {
            Step::Call(c) => spawn_callout(shared.clone(), c, false),
            Step::Wait => {}
            done => {
                parked.done = true;
                return done;
            }
        }
        let Some(r) = rx.take() else {
            return fail_closed("internal");
        };
        step = match r.await {
            Ok(s) => s,
            // The sender went away without an answer: never allow.
            Err(_) => {
                parked.done = true;
                let mut g = shared.lock();
                g.engine.cancel(id);
                return fail_closed("internal");
            }
        };
        if matches!(step, Step::Call(_) | Step::Wait) {
            let mut g = shared.lock();
            rx = park(&mut g, id, &step);
        }
    }
}

/// Registers a waiter for a step that waits (under the same lock as the step was made, so
/// no answer can arrive first).
fn park(core: &mut Core, id: ReqId, step: &Step) -> Option<oneshot::Receiver<Step>> {
    match step {
        Step::Call(_) | Step::Wait => {
            let (tx, rx) = oneshot::channel();
            core.waiters.insert(id, tx);
            Some(rx)
        }
        _ => None,
    }
}

fn fail_closed(reason: &'static str) -> Step {
    Step::Respond(barbican::Respond {
        status: 503,
        headers: vec![("retry-after".into(), "5".into())],
        body: "Service Unavailable\n".into(),
        reason,
    })
}

fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn refused_answer(r: &Refused) -> Response<Full<Bytes>> {
    match r.status {
        403 => plain(403, "Forbidden\n"),
        413 => plain(413, "Payload Too Large\n"),
        431 => plain(431, "Request Header Fields Too Large\n"),
        503 => plain(503, "Service Unavailable\n"),
        _ => plain(400, "Bad Request\n"),
    }
}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    match front::endpoint(&target) {
        None => plain(404, "Not Found\n"),
        Some(Endpoint::Healthz) => {
            if shared.ready.load(Ordering::Relaxed) {
                plain(200, "ok\n")
            } else {
                plain(503, "starting: key sets not fetched yet\n")
            }
        }
        Some(Endpoint::Metrics) => {
            let totals = {
                let mut g = shared.lock();
                g.drain_counters();
                g.totals.clone()
            };
            let text = shared.metrics.render(
                &totals,
                shared.ready.load(Ordering::Relaxed),
                shared.in_flight.load(Ordering::Relaxed),
            );
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Some(Endpoint::Auth(f, envoy_path)) => {
            let started = Instant::now();
            let (resp, why) = auth(&shared, f, envoy_path.as_deref(), peer.ip(), req).await;
            let status = resp.status().as_u16();
            shared.metrics.answered(status, started.elapsed());
            if log::enabled(log::Level::Debug) {
                log!(
                    Debug,
                    "decision front={} status={status} {why} us={}",
                    f.as_str(),
                    started.elapsed().as_micros()
                );
            }
            resp
        }
    }
}

/// One auth request: the front protocol, the engine, the answer. The second value is what
/// the decision log line says about it (names and codes only).
async fn auth(
    shared: &Arc<Shared>,
    f: Front,
    envoy_path: Option<&str>,
    peer: IpAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> (Response<Full<Bytes>>, String) {
    let Ok(_permit) = shared.requests.try_acquire() else {
        shared.metrics.refused("overloaded");
        return (
            plain(503, "Service Unavailable\n"),
            "reason=overloaded".into(),
        );
    };
    let _count = InFlight::new(&shared.in_flight);
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let incoming = Incoming {
        method: parts.method.as_str(),
        headers: &headers,
        peer,
    };
    let original = match front::original(f, envoy_path, &incoming, &shared.trusted) {
        Ok(o) => o,
        Err(r) => {
            shared.metrics.refused(r.reason);
            let why = match r.header {
                Some(h) => format!("reason={} header={h}", r.reason),
                None => format!("reason={} peer={peer}", r.reason),
            };
            return (refused_answer(&r), why);
        }
    };
    // The body only when the engine asks for it (an OIDC form_post callback), bounded.
    let wants = shared
        .lock()
        .engine
        .wants_body(&barbican::request::borrow_all(&original.headers));
    let body = if wants {
        match Limited::new(body, shared.settings.max_body_bytes)
            .collect()
            .await
        {
            Ok(b) => Some(b.to_bytes()),
            Err(_) => {
                shared.metrics.refused("body_too_large");
                let r = Refused {
                    status: 413,
                    reason: "body_too_large",
                    header: None,
                };
                return (refused_answer(&r), "reason=body_too_large".into());
            }
        }
    } else {
        drop(body);
        None
    };
    let limit = Duration::from_millis(shared.settings.request_timeout_ms);
    let step = match tokio::time::timeout(
        limit,
        decide(shared, &original.headers, original.peer, body.as_deref()),
    )
    .await
    {
        Ok(s) => s,
        Err(_) => fail_closed("request_timeout"),
    };
    let rule = if log::enabled(log::Level::Debug) {
        let e = &shared.lock().engine;
        match e.route_of(&barbican::request::borrow_all(&original.headers)) {
            Ok((Some(r), p)) => format!("rule={} policy={}", r.name, p.as_str()),
            Ok((None, p)) => format!("rule=default policy={}", p.as_str()),
            Err(why) => format!("rule=none ({why})"),
        }
    } else {
        String::new()
    };
    let method = barbican::header(&original.headers, ":method").unwrap_or("");
    let (resp, reason) = answer(f, step);
    (resp, format!("method={method} {rule} reason={reason}"))
}

struct InFlight<'a>(&'a AtomicUsize);
impl<'a> InFlight<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        InFlight(c)
    }
}
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn put(resp: &mut Response<Full<Bytes>>, name: &str, value: &str) {
    match (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        (Ok(n), Ok(v)) => {
            resp.headers_mut().append(n, v);
        }
        _ => log!(Warn, "answer header {name:?} is not valid HTTP; left out"),
    }
}

/// The engine's step as the proxy's answer. Allow: 200 with the identity headers for the
/// proxy to copy to the upstream (and any Set-Cookie for the client). A login redirect is
/// 302 with Location, except to nginx, whose auth_request takes only 2xx, 401 and 403
/// (`Front::answer_status`).
fn answer(f: Front, step: Step) -> (Response<Full<Bytes>>, &'static str) {
    match step {
        Step::Allow(a) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            for (n, v) in a.upstream() {
                put(&mut r, n, v);
            }
            for (n, v) in f.answer_headers(&a.response_headers) {
                put(&mut r, n, v);
            }
            (r, "allow")
        }
        Step::Respond(x) => {
            let status = f.answer_status(x.status);
            let mut r = Response::new(Full::new(Bytes::from(x.body.clone())));
            *r.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut typed = false;
            for (n, v) in f.answer_headers(&x.headers) {
                typed |= n.eq_ignore_ascii_case("content-type");
                put(&mut r, n, v);
            }
            if !typed && !x.body.is_empty() {
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            (r, x.reason)
        }
        Step::Call(_) | Step::Wait => (plain(503, "Service Unavailable\n"), "internal"),
    }
}
