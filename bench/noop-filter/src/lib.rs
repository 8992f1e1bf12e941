//! A proxy-wasm filter that decides nothing: the baselines against which Barbican's own cost
//! inside Envoy is measured (bench/run.py, bench/hostcost.py).
//!
//! - `{}` (or anything without `floor`): continues every request untouched, the cost of
//!   crossing into a wasm filter at all.
//! - `{"floor": N}` (N ≤ 12): "the floor". Reads the whole request header map once, as
//!   Barbican's Envoy adapter does (`get_map_bytes`, src/host/proxy_wasm.rs), and adds the
//!   first N of the twelve identity headers Authentik's outpost defines (shaped like the ones
//!   Barbican adds on a cached session: tests/e2e/servers/outpost.py), one `add_map_value`
//!   call each. These are the host calls a cached allow cannot avoid, with no decision made.
//! - `{"floor": [["name", "value"], ...]}`: the same with exactly these headers (hostcost.py
//!   passes the headers Barbican added for the same request, as its upstream saw them).
//!
//! A configuration that is not such JSON is refused (the VM fails to configure): a benchmark
//! baseline that silently measured something else would be worse than none.
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Authentik's identity headers (mode_common.go addHeaders) with values of the sizes the
/// test outpost gives a logged-in user; the JWT is a placeholder of a typical length.
const AUTHENTIK_SET: [(&str, &str); 12] = [
    ("x-authentik-username", "alice"),
    ("x-authentik-groups", "admins|users"),
    ("x-authentik-entitlements", ""),
    ("x-authentik-email", "alice@example.test"),
    ("x-authentik-name", "Alice"),
    (
        "x-authentik-uid",
        "2f0b1c6e8a3d4e5f9a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f",
    ),
    ("x-authentik-jwt", JWT_PLACEHOLDER),
    (
        "x-authentik-meta-jwks",
        "http://127.0.0.1:9000/application/o/test-app/jwks/",
    ),
    ("x-authentik-meta-outpost", "authentik Embedded Outpost"),
    ("x-authentik-meta-provider", "test-provider"),
    ("x-authentik-meta-app", "test-app"),
    (
        "x-authentik-meta-version",
        "goauthentik.io/outpost/2025.10.0",
    ),
];

const JWT_PLACEHOLDER: &str = concat!(
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.",
    "eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjkwMDAvYXBwbGljYXRpb24vby90ZXN0LWFwcC8iLCJzdWIiOiIy",
    "ZjBiMWM2ZThhM2Q0ZTVmOWE3YjZjNWQ0ZTNmMmExYjBjOWQ4ZTdmNmE1YjRjM2QyZTFmMGE5YjhjN2Q2ZTVm",
    "IiwiYXVkIjoidGVzdC1jbGllbnQiLCJleHAiOjE3OTk5OTk5OTksImlhdCI6MTc2NDAwMDAwMCwiYXV0aF90",
    "aW1lIjoxNzY0MDAwMDAwLCJlbWFpbCI6ImFsaWNlQGV4YW1wbGUudGVzdCIsImVtYWlsX3ZlcmlmaWVkIjp0",
    "cnVlLCJuYW1lIjoiQWxpY2UiLCJnaXZlbl9uYW1lIjoiQWxpY2UiLCJwcmVmZXJyZWRfdXNlcm5hbWUiOiJh",
    "bGljZSIsIm5pY2tuYW1lIjoiYWxpY2UiLCJncm91cHMiOlsiYWRtaW5zIiwidXNlcnMiXX0.",
    "c2lnbmF0dXJlLXBsYWNlaG9sZGVyLW9mLXRoZS1zaXplLW9mLWFuLUhTMjU2LW1h"
);

#[derive(Default)]
struct Root {
    /// `None`: the no-op filter. `Some`: the floor, with the headers it adds.
    floor: Option<Rc<Vec<(String, String)>>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&raw) else {
            let _ = hostcalls::log(LogLevel::Error, "noop-filter: configuration is not JSON");
            return false;
        };
        match floor_headers(&cfg) {
            Ok(f) => {
                self.floor = f.map(Rc::new);
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &format!("noop-filter: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            floor: self.floor.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The headers `{"floor": ...}` names; `None` without `floor` (the no-op filter).
fn floor_headers(cfg: &serde_json::Value) -> Result<Option<Vec<(String, String)>>, String> {
    let Some(floor) = cfg.get("floor") else {
        return Ok(None);
    };
    if let Some(n) = floor.as_u64() {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > AUTHENTIK_SET.len() {
            return Err(format!("floor: at most {} headers", AUTHENTIK_SET.len()));
        }
        let set = AUTHENTIK_SET[..n].iter();
        return Ok(Some(
            set.map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ));
    }
    let pairs = floor
        .as_array()
        .ok_or("floor: a count or a list of [name, value]")?;
    pairs
        .iter()
        .map(|p| match p.as_array().map(|a| a.as_slice()) {
            Some([serde_json::Value::String(n), serde_json::Value::String(v)]) => {
                Ok((n.clone(), v.clone()))
            }
            _ => Err("floor: each entry is [name, value], both strings".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

struct Request {
    floor: Option<Rc<Vec<(String, String)>>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(set) = &self.floor {
            // The whole map into guest memory, as Barbican reads it; kept from the optimizer.
            let map = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
            std::hint::black_box(&map);
            for (n, v) in set.iter() {
                let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, n, v);
            }
        }
        Action::Continue
    }
}
