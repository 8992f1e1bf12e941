//! A proxy-wasm filter that decides nothing: the baselines against which Barbican's own cost
//! inside Envoy is measured (bench/run.py, bench/hostcost.py).
//!
//! - `{}` (or anything without `floor`): continues every request untouched, the cost of
//!   crossing into a wasm filter at all.
//! - `{"floor": N}` (N ≤ 12): "the floor". Reads the whole request header map once with the
//!   SDK's `get_map_bytes` (as Barbican's Envoy adapter did until 2026-12-07), and adds the
//!   first N of the twelve identity headers Authentik's outpost defines (shaped like the ones
//!   Barbican adds on a cached session: tests/e2e/servers/outpost.py), one `add_map_value`
//!   call each. These are the host calls a cached allow cannot avoid, with no decision made.
//! - `{"floor": [["name", "value"], ...]}`: the same with exactly these headers (hostcost.py
//!   passes the headers Barbican added for the same request, as its upstream saw them).
//! - `"read": "in_place"` with either: the map is read as Barbican's adapter now reads it
//!   (one raw `proxy_get_header_map_pairs`, names and values borrowed from the host's
//!   buffer: src/host/proxy_wasm.rs `ffi`, src/text.rs `read_map`), not with the SDK.
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
    /// `"read": "in_place"`: the floor reads the map as Barbican's Envoy adapter does (one
    /// raw host call, names and values borrowed from the host's buffer) instead of with the
    /// SDK's `get_map_bytes` (a `String` and a `Vec` per name and value).
    in_place: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&raw) else {
            let _ = hostcalls::log(LogLevel::Error, "noop-filter: configuration is not JSON");
            return false;
        };
        self.in_place = cfg.get("read").and_then(|r| r.as_str()) == Some("in_place");
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
            in_place: self.in_place,
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
    in_place: bool,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> proxy_wasm::types::Status;
}

/// The request header map as the host serialized it, decoded in place into borrowed names
/// and values: the least a filter that reads every header can do (Barbican's `text::read_map`
/// does this and checks more).
fn read_in_place() {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: out-pointers to live locals; the host hands over `size` bytes it allocated with
    // this module's `proxy_on_memory_allocate` (capacity equals length), as the SDK takes them.
    let buf = unsafe {
        if !matches!(
            proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size),
            proxy_wasm::types::Status::Ok
        ) || data.is_null()
        {
            return;
        }
        Vec::from_raw_parts(data, size, size)
    };
    let word = |at: usize| {
        buf.get(at..at.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |w| u32::from_le_bytes(w) as usize)
    };
    let n = word(0);
    let Some(data) = n
        .checked_mul(8)
        .and_then(|t| t.checked_add(4))
        .and_then(|t| buf.get(t..))
    else {
        return;
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(n);
    let mut at: usize = 0;
    for i in 0..n {
        let (nl, vl) = (word(4 + i * 8), word(8 + i * 8));
        // Checked: a host's lengths near u32::MAX must not overflow (wasm32 usize).
        let Some(name_end) = at.checked_add(nl) else {
            return;
        };
        let Some(value_end) = name_end.checked_add(1).and_then(|v| v.checked_add(vl)) else {
            return;
        };
        let (Some(name), Some(value)) = (text.get(at..name_end), text.get(name_end + 1..value_end))
        else {
            return;
        };
        out.push((name, value));
        at = value_end.saturating_add(1);
    }
    std::hint::black_box(&out);
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(set) = &self.floor {
            // The whole map into guest memory; kept from the optimizer.
            if self.in_place {
                read_in_place();
            } else {
                let map = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
                std::hint::black_box(&map);
            }
            for (n, v) in set.iter() {
                let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, n, v);
            }
        }
        Action::Continue
    }
}
