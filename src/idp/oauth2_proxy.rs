//! oauth2-proxy's `/oauth2/auth`: 202 when authenticated (200 on older versions), 401 when
//! not, 403 when a group constraint fails; identity in `X-Auth-Request-*`.

pub const PATH: &str = "/oauth2/auth";
pub const SESSION_COOKIE_PREFIX: &str = "_oauth2_proxy";
pub const SIGN_OUT_PATH: &str = "/oauth2/sign_out";
pub const IDENTITY_PREFIX: &str = "x-auth-request-";
/// oauth2-proxy joins groups with `,`.
pub const GROUPS_HEADER: &str = "x-auth-request-groups";
pub const GROUPS_SEPARATOR: &str = ",";
