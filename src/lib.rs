//! Barbican: a forward-auth filter that runs inside the proxy.
//!
//! The crate is a sans-IO core (no host calls, no clock, no randomness of its own) plus thin
//! host adapters in [`host`]. The decision flow:
//!
//! 1. The host reads a request's headers into a [`Request`] and calls [`Engine::decide`].
//! 2. Client-sent identity headers are marked for removal on every route, first.
//! 3. The path is normalized (or the request refused with 400) and the first matching
//!    [`route::Route`] picks a policy: bypass, protected, api or deny.
//! 4. `protected` looks up the decision cache (per worker, then cross-worker) by a hash of
//!    the session credentials; a hit answers at once.
//! 5. A miss returns [`Step::Call`]: the host calls the IdP's forward-auth endpoint and hands
//!    the answer to [`Engine::on_callout_response`], which caches it and returns a step for
//!    every request that waited on it.
//! 6. When the IdP is unreachable, a recently valid allow is served within `stale_grace`;
//!    otherwise 503. Nothing ever fails open.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod ascii;
pub mod cache;
pub mod config;
pub mod decision;
pub mod hostname;
pub mod identity;
pub mod idp;
pub mod jwks;
pub mod jwt;
pub mod net;
pub mod oidc;
pub mod path;
pub mod request;
pub mod route;
pub mod seal;
pub mod text;
pub mod tokens;
pub mod url;

#[cfg(all(feature = "envoy", target_arch = "wasm32"))]
pub mod host;

pub use cache::{MemStore, SharedStore};
pub use config::{Config, ConfigError};
pub use decision::{Allow, Callout, Engine, Request, Respond, Step};
pub use tokens::{JwksFile, JwksFileError};

/// Unix time in milliseconds. The host supplies it; the core never reads a clock.
pub type Millis = u64;

pub use request::header;
