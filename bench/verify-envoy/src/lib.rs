//! Times first-sight `barbican::jwt::verify` inside Envoy's V8 (the engine the filter really
//! runs in; node's V8 in bench/verify-bench is only a stand-in). On its first tick the root
//! context verifies one fixed token per algorithm in batches, times each batch with the host
//! clock (`proxy_get_current_time_nanoseconds`), and logs one line at warn level:
//! `verify-envoy: {"RS256": {"us": median µs per verify, "first_us", ...}, ...}`.
//!
//! Plugin configuration (from `verify-bench --fixture`):
//! `{"config": <a Barbican config with one inline-JWKS provider>, "now_s": u64,
//!   "tokens": {"RS256": "<jwt>", ...}}`.
//! A bench tool, not the filter: it verifies on the worker's event loop for a few seconds.

use barbican::jwks::KeySet;
use barbican::jwt::{self, Validation};
use barbican::{config, tokens};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::{BufferType, LogLevel};
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Bench { fixture: None }) });
}}

const BATCHES: usize = 7;
const CLAIM: &str = "verify-envoy.claimed";
const BATCH_NS: u64 = 250_000_000;
const WARMUP_NS: u64 = 400_000_000;

struct Fixture {
    keys: KeySet,
    validation: Validation,
    now_s: u64,
    tokens: Vec<(String, String)>,
}

struct Bench {
    /// Taken by the first tick: the measurement runs once per VM.
    fixture: Option<Fixture>,
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn fixture(raw: &[u8]) -> Result<Fixture, String> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("fixture JSON: {e}"))?;
    let cfg = serde_json::to_vec(&v["config"]).map_err(|e| e.to_string())?;
    let cfg = config::parse(&cfg).map_err(|e| format!("config refused: {e:?}"))?;
    let p = tokens::providers(cfg.jwt.as_ref())
        .into_iter()
        .next()
        .ok_or("no provider")?;
    let keys = p.keys.as_deref().cloned().ok_or("no inline key set")?;
    let tokens = v["tokens"]
        .as_object()
        .ok_or("no tokens")?
        .iter()
        .filter_map(|(a, t)| Some((a.clone(), t.as_str()?.to_owned())))
        .collect();
    Ok(Fixture {
        keys,
        validation: p.validation,
        now_s: v["now_s"].as_u64().ok_or("no now_s")?,
        tokens,
    })
}

/// Verifies `n` times; false if any verification failed (the numbers would be meaningless).
fn verify_n(f: &Fixture, tok: &str, n: u64) -> bool {
    (0..n).all(|_| black_box(jwt::verify(black_box(tok), &f.keys, &f.validation, f.now_s)).is_ok())
}

fn measure(f: &Fixture, tok: &str) -> Value {
    let t = now_ns();
    if !verify_n(f, tok, 1) {
        return json!({"error": "verification failed"});
    }
    let first_us = (now_ns() - t) as f64 / 1e3;
    // Warm-up: V8 tiers hot functions from Liftoff up to TurboFan.
    let t = now_ns();
    let mut warm = 0u64;
    while now_ns() - t < WARMUP_NS {
        verify_n(f, tok, 1);
        warm += 1;
    }
    let per_batch = (warm * BATCH_NS / WARMUP_NS).max(5);
    let mut us: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = now_ns();
            verify_n(f, tok, per_batch);
            (now_ns() - t) as f64 / 1e3 / per_batch as f64
        })
        .collect();
    us.sort_by(f64::total_cmp);
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "us": us.get(us.len() / 2).copied().map(r1),
        "min_us": us.first().copied().map(r1),
        "first_us": r1(first_us),
        "iterations": per_batch * BATCHES as u64,
    })
}

impl Context for Bench {}

impl RootContext for Bench {
    fn on_configure(&mut self, size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match fixture(&raw) {
            Ok(f) => self.fixture = Some(f),
            Err(e) => {
                log(LogLevel::Critical, &format!("verify-envoy: {e}"));
                return false;
            }
        }
        let _ = hostcalls::set_tick_period(Duration::from_millis(100));
        true
    }

    fn on_tick(&mut self) {
        let Some(f) = self.fixture.take() else { return };
        let _ = hostcalls::set_tick_period(Duration::ZERO);
        // Envoy runs a VM on the main thread and one per worker: only the first to get here
        // measures, so that two never compete for the 2 cores (shared data is per vm_id;
        // the window between get and set is microseconds, the VMs start milliseconds apart).
        if let Ok((Some(_), _)) = hostcalls::get_shared_data(CLAIM) {
            return;
        }
        let _ = hostcalls::set_shared_data(CLAIM, Some(b"1"), None);
        let out: serde_json::Map<String, Value> = f
            .tokens
            .iter()
            .map(|(alg, tok)| (alg.clone(), measure(&f, tok)))
            .collect();
        log(
            LogLevel::Warn,
            &format!("verify-envoy: {}", Value::Object(out)),
        );
    }
}
