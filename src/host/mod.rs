//! Host adapters: the only code that calls the proxy.

pub mod proxy_wasm;
