//! Authelia's forward-auth endpoint (`/api/authz/forward-auth`): reads
//! `X-Forwarded-Method/Proto/Host/URI/For`; answers 200 with `Remote-*` on success, 401 for
//! XHR/non-HTML, 302/303 to the portal otherwise, 403 when the policy denies.

pub const PATH: &str = "/api/authz/forward-auth";
pub const SESSION_COOKIE_PREFIX: &str = "authelia_session";
pub const SIGN_OUT_PATH: &str = "/logout";
pub const IDENTITY: &[&str] = &[
    "remote-user",
    "remote-groups",
    "remote-name",
    "remote-email",
];
/// Authelia joins groups with `,`.
pub const GROUPS_HEADER: &str = "remote-groups";
pub const GROUPS_SEPARATOR: &str = ",";
