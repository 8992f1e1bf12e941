"""Barbican's native OIDC sessions (session.mode "oidc") on both wasm hosts, for the suites
that log in through the real npm `oidc-provider` (servers/oidc): test_oidc_envoy.py,
test_oidc_traefik.py, test_oidc_tricks.py.

- Envoy runs the authorization code flow (client `barbican-code`: PKCE, token exchange by
  callout to the `idp` cluster, keys fetched from the provider).
- Traefik runs `form_post` (client `barbican-implicit`): its plugins cannot call out, so the
  browser POSTs the id_token to the redirect URI and the key set is inline.

Both serve `app.test` (the provider's relying-party clients are registered for
http://app.test/...), with `/bye` (the post-logout page) and `/public/` open and `/admin/`
for admins only.

`RpHost` and the functions below drive a login by hand, one step at a time, so tests can
change any piece: `start` (Barbican's redirect to the provider and its login cookie),
`provider_answer` (what the provider sends back, from a browser that cannot reach app.test),
`callback` (that answer delivered to Barbican as the browser would).
"""

from __future__ import annotations

import urllib.parse

import browser as B
import harness as H
import idp as I
import traefik as T

APP = B.APP_URL
COOKIE = "barbican_session"
LOGIN_COOKIE = COOKIE + "_login"
HTML = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")


def envoy_config(idp: I.IdpProc, secrets: list, client: str = "barbican-code") -> dict:
    disc = idp.discovery()
    auth, secret, alg = I.RP_CLIENTS[client]
    return {
        "session": {"mode": "oidc", "oidc": {
            "issuer": disc["issuer"], "client_id": client, "client_secret": secret,
            "token_auth": auth,
            "authorization_endpoint": disc["authorization_endpoint"],
            "token_endpoint": disc["token_endpoint"],
            "end_session_endpoint": disc["end_session_endpoint"],
            "cluster": "idp", "jwks": {"uri": disc["jwks_uri"], "cluster": "idp"},
            "algorithms": [alg],
            "redirect_uri": I.CALLBACK, "post_logout_redirect_uri": f"{APP}/bye",
            "scopes": ["openid", "profile", "email", "groups"],
            "cookie": {"secure": False}, "secrets": secrets}},
        "routes": [
            {"match": {"path_prefix": "/bye"}, "policy": "bypass"},
            {"match": {"path_prefix": "/admin/"}, "policy": "protected",
             "require_groups": ["admins"]},
            {"match": {"path_prefix": "/"}, "policy": "protected"},
        ],
        "default_policy": "deny",
    }


def start_envoy(wasm, idp: I.IdpProc, upstream, secrets: list, client: str = "barbican-code",
                **kw) -> H.EnvoyProc:
    """Envoy with `envoy_config`; `kw` goes to harness.start_envoy (log_level, extra_args)."""
    return H.start_envoy(envoy_config(idp, secrets, client), wasm,
                         clusters={"idp": idp.port, "upstream": upstream.port,
                                   "outpost": upstream.port}, **kw)


def traefik_config(idp: I.IdpProc, secrets: list) -> dict:
    disc = idp.discovery()
    return {
        "session": {"mode": "oidc", "oidc": {
            "issuer": disc["issuer"], "client_id": "barbican-implicit", "flow": "form_post",
            "authorization_endpoint": disc["authorization_endpoint"],
            "end_session_endpoint": disc["end_session_endpoint"],
            "jwks": {"inline": idp.jwks()}, "algorithms": ["ES256"],
            "redirect_uri": I.CALLBACK, "post_logout_redirect_uri": f"{APP}/bye",
            "scopes": ["openid", "profile", "email", "groups"],
            # The provider's form_post is a cross-site POST: the login cookie must be
            # SameSite=None, which browsers accept only with Secure.
            "cookie": {"secure": True}, "secrets": secrets}},
        "routes": [
            {"match": {"path_prefix": "/bye"}, "policy": "bypass"},
            {"match": {"path_prefix": "/public/"}, "policy": "bypass"},
            {"match": {"path_prefix": "/admin/"}, "policy": "protected",
             "require_groups": ["admins"]},
            {"match": {"path_prefix": "/"}, "policy": "protected"},
        ],
        "default_policy": "deny",
    }


def start_traefik(idp: I.IdpProc, upstream, secrets: list, config: dict | None = None,
                  **kw) -> T.TraefikProc:
    """Traefik with `config` (default `traefik_config`) on router `app.test`; ready once
    `/public/` reaches the upstream. `kw` goes to traefik.start_traefik (log_level,
    plugin_settings, sanitize_path)."""

    def probe(t: T.TraefikProc) -> bool:
        try:
            return H.get(t.port, "/public/ready", host="app.test", timeout=2).from_upstream
        except OSError:
            return False

    return T.start_traefik(
        routers={"app": T.router("app.test", ["barbican"])},
        middlewares={"barbican": T.plugin_middleware(config or traefik_config(idp, secrets))},
        services={"upstream": upstream.port}, plugins={T.PLUGIN: T.require_plugin()},
        probe=probe, **kw)


class RpHost:
    """A running host seen as a relying party: raw requests to app.test, and where its
    logins and logouts go. `flow`: "code" (client barbican-code) or "form_post"
    (barbican-implicit); by default "form_post" for the host named "traefik"."""

    def __init__(self, name: str, proc, idp: I.IdpProc, secret: str,
                 flow: str | None = None) -> None:
        self.name, self.proc, self.port = name, proc, proc.port
        self.idp, self.secret = idp, secret
        self.flow = flow or ("form_post" if name == "traefik" else "code")
        disc = idp.discovery()
        self.auth_prefix = disc["authorization_endpoint"] + "?"
        client = "barbican-code" if self.flow == "code" else "barbican-implicit"
        self.logout_location = (disc["end_session_endpoint"] + "?client_id=" + client
                                + "&post_logout_redirect_uri="
                                + urllib.parse.quote(f"{APP}/bye", safe=""))

    def raw(self, target: str, headers=(), method: str = "GET", body: bytes | None = None,
            host: str | None = "app.test") -> H.Response:
        """One browser-like request (Accept: text/html), target and Host sent as given."""
        return H.request(self.port, target, method, headers=[HTML, *headers], body=body,
                         host=host, timeout=10)


def login_cookie(r: H.Response) -> str | None:
    """The login binding cookie (`name=value`) a login redirect sets."""
    for sc in r.header_all("Set-Cookie"):
        if sc.startswith(LOGIN_COOKIE + "=") and "Max-Age=0" not in sc:
            return H.cookie_from_set_cookie(sc)
    return None


def state_of(auth_url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(auth_url).query)["state"][0]


def start(host: RpHost, path: str = "/x") -> tuple[str, str]:
    """(authorization URL, login cookie `name=value`) of a fresh login."""
    r = host.raw(path)
    assert r.status == 302 and r.header("Location").startswith(host.auth_prefix), r
    return r.header("Location"), login_cookie(r)


def provider_answer(b: B.Browser, auth_url: str) -> dict[str, str]:
    """What the provider sends back to the redirect URI for this authorization request:
    the code flow's query (code, state, iss) or the form_post fields (id_token, state).
    `b` maps no app.test (`B.Browser()`); its first call logs in as alice, later ones ride
    on the provider's session."""
    r = b.follow(auth_url)
    if b.login_form(r) is not None:
        r = b.submit_login(r, "alice", I.USERS["alice"][0])
    if r.refused:
        assert r.refused.startswith(I.CALLBACK + "?"), r
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.refused).query))
    form = B.auto_form(r)
    assert form is not None and form.action == I.CALLBACK, (r, r.hops)
    return dict(form.fields)


def callback(host: RpHost, fields, cookie: str | None) -> H.Response:
    """The provider's return as the browser would send it (GET for the code flow, the
    form_post POST on Traefik), with the login cookie `cookie`. `fields`: a dict or pairs."""
    headers = [("Cookie", cookie)] if cookie else []
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    q = urllib.parse.urlencode(pairs)
    if host.flow == "code":
        return host.raw("/.barbican/callback?" + q, headers)
    return host.raw("/.barbican/callback", headers + [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", "null")], method="POST", body=q.encode())


def session_from(r: H.Response) -> str | None:
    """The session cookie value a response sets (None when it sets none or clears it)."""
    for sc in r.header_all("Set-Cookie"):
        if sc.startswith(COOKIE + "=") and "Max-Age=0" not in sc:
            return H.cookie_from_set_cookie(sc).split("=", 1)[1]
    return None


def full_login(host: RpHost, b: B.Browser, path: str = "/x") -> tuple[H.Response, str]:
    """A whole login by hand: (the callback's answer, the session cookie value)."""
    auth, lc = start(host, path)
    r = callback(host, provider_answer(b, auth), lc)
    value = session_from(r)
    assert r.status == 302 and value, r
    return r, value
