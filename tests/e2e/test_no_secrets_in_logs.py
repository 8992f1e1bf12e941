"""No token, cookie, client secret, session secret or Authorization value in any log line of
Barbican's hosts, at debug level, after a run that uses every kind of credential:

- Envoy, forward-auth mode (outpost session cookies, a Bearer token the outpost checks,
  sign-out, the outpost failing), plus an `api` route taking JWTs, opaque tokens by
  introspection (client secret) and Authentik's Basic convention;
- Envoy, native OIDC (code flow: login cookie, code, token exchange with the client secret,
  session cookie, a reused code, tampered cookies, logout);
- Traefik, native OIDC (form_post: the id_token in the POST) plus a JWT / Basic api route;
- `barbican serve` (forward-auth session, JWT, introspection, Basic, sign-out; and native
  OIDC, the code flow with its token exchange, asked as Traefik's forwardAuth asks).

Log levels, and what "the log" is. Envoy runs at `-l info` with `--component-log-level
wasm:debug`: the wasm component (every line Barbican writes, `wasm log barbican ...`, and
Envoy's own wasm runtime lines) at debug, the rest of Envoy at info. Envoy's HCM and router
dump request headers at debug; those dumps are Envoy's behaviour when an operator asks for
them, not Barbican's, and they would drown the check — so the whole Envoy log is checked,
at those levels. Traefik runs at `log.level: DEBUG` (its own lines and the plugin's) and
serve at `--log-level debug`; their whole logs are checked. The test servers' logs are not
the target. Traefik at DEBUG prints the dynamic configuration it received, so secrets there
are given the production way, by reference (`{"env": NAME}`), never inline — with inline
secrets the configuration dump would be Traefik's to hide.

Each value is looked for as itself, base64 (standard and URL alphabets), URL-encoded, a
JWT's signature alone, and (for long random values) its first 16 characters. A control makes
sure each log actually holds Barbican's debug lines.
"""

from __future__ import annotations

import base64
import time
import urllib.parse

import browser as B
import harness as H
import idp as I
import oidc_hosts as O
import serve_host as S
import session_cookie as SC

ENVOY_SESSION_SECRET = "logs-envoy-session-secret-0123456789abcdef-01234"
TRAEFIK_SESSION_SECRET = "logs-traefik-session-secret-0123456789abcdef-0123"
SERVE_SESSION_SECRET = "logs-serve-session-secret-0123456789abcdef-012345"
ENVOY_WASM_DEBUG = ["--component-log-level", "wasm:debug"]


class Secrets:
    """Values that must never be logged, by what they are."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, what: str, value: str | None) -> str | None:
        if value and len(value) >= 8:
            self.values.setdefault(value, what)
        return value

    def forms(self):
        for v, what in self.values.items():
            yield what, "as is", v
            raw = v.encode()
            yield what, "base64", base64.b64encode(raw).decode().rstrip("=")
            yield what, "base64url", base64.urlsafe_b64encode(raw).decode().rstrip("=")
            q = urllib.parse.quote(v, safe="")
            if q != v:
                yield what, "url-encoded", q
            parts = v.split(".")
            if len(parts) == 3 and len(parts[2]) >= 16:
                yield what, "jwt signature", parts[2]
            elif len(v) >= 24 and " " not in v:
                yield what, "first 16 chars", v[:16]

    def leaks(self, log: str) -> list[str]:
        out = []
        for what, form, needle in self.forms():
            if needle in log:
                line = next(ln for ln in log.splitlines() if needle in ln)
                out.append(f"{what} ({form}) in: {line[:300]}")
        return out


def bearer(tok: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {tok}")]


def assert_clean(name: str, log: str, secrets: Secrets, debug_marker: str) -> None:
    assert debug_marker in log, f"{name}: no Barbican debug line ({debug_marker!r}) in the log"
    leaks = secrets.leaks(log)
    assert not leaks, f"{name}: {len(leaks)} leak(s):\n" + "\n".join(leaks[:20])


def api_routes(accept: list[str]) -> list[dict]:
    return [{"match": {"path_prefix": "/api/"}, "policy": "api", "accept": accept}]


def jwt_provider(idp: I.IdpProc, jwks: dict) -> dict:
    return {"providers": [{"name": "idp", "issuer": idp.discovery()["issuer"],
                           "audiences": [I.RES_ES], "algorithms": ["ES256"], "jwks": jwks}]}


def introspection(idp: I.IdpProc, secret) -> dict:
    return {"cluster": "idp", "path": idp.endpoint_path("introspection_endpoint"),
            "client_id": I.INTROSPECTOR, "client_secret": secret, "auth": "basic",
            "ttl_s": 60}


def tokens(idp: I.IdpProc, s: Secrets) -> dict[str, str]:
    """Valid and invalid credentials for an api route, each registered as a secret."""
    jwt = s.add("JWT access token", idp.token(I.RES_ES, "read"))
    bad_jwt = s.add("tampered JWT", jwt[:-6] + ("AAAAAA" if not jwt.endswith("AAAAAA")
                                                 else "BBBBBB"))
    opaque = s.add("opaque token", idp.token(I.RES_OPAQUE, "read"))
    unknown = s.add("unknown opaque token", "never-issued-opaque-token-0123456789abcdef")
    basic = s.add("Basic value", "Basic " + base64.b64encode(
        f"goauthentik.io/token:{jwt}".encode()).decode())
    bad_basic = s.add("Basic value (bad)", "Basic " + base64.b64encode(
        b"goauthentik.io/token:not-a-valid-token-0123456789").decode())
    return {"jwt": jwt, "bad_jwt": bad_jwt, "opaque": opaque, "unknown": unknown,
            "basic": basic, "bad_basic": bad_basic}


def login(host: O.RpHost, s: Secrets) -> tuple[dict, str, str]:
    """A native OIDC login by hand, every piece registered as a secret: (the provider's
    answer, the login cookie `name=value`, the session cookie value)."""
    auth_url, lc = O.start(host)
    s.add("login cookie", lc.split("=", 1)[1])
    s.add("state", O.state_of(auth_url))
    answer = O.provider_answer(B.Browser(), auth_url)
    for field in ("code", "id_token"):
        s.add(field, answer.get(field))
    r = O.callback(host, answer, lc)
    value = s.add("session cookie", O.session_from(r))
    assert r.status == 302 and value, r
    return answer, lc, value


def use_session(host: O.RpHost, s: Secrets, value: str) -> None:
    """The session cookie, a tampered copy and one under a foreign secret; logout; the
    cookie again after it."""
    foreign = SC.session_cookie("a-foreign-secret-0123456789abcdef-0123", "alice",
                                int(time.time()) + 60)
    for v in (value, value[:-4] + "AAAA", foreign):
        s.add("session cookie", v)
        host.raw("/x", [("Cookie", f"{O.COOKIE}={v}")])
    host.raw("/.barbican/logout", [("Cookie", f"{O.COOKIE}={value}")])
    host.raw("/x", [("Cookie", f"{O.COOKIE}={value}")])


def test_envoy_forward_auth_and_api_tokens(wasm, outpost, upstream, idp):
    s = Secrets()
    s.add("introspection client secret", I.secret(I.INTROSPECTOR))
    s.add("introspection Basic", I.basic(I.INTROSPECTOR))
    cfg = H.default_plugin_config()
    cfg["jwt"] = jwt_provider(idp, {"uri": idp.discovery()["jwks_uri"], "cluster": "idp"})
    cfg["introspection"] = introspection(idp, I.secret(I.INTROSPECTOR))
    cfg["routes"] = api_routes(["jwt", "introspection", "basic"]) + cfg["routes"]
    env = H.start_envoy(cfg, wasm, clusters={"outpost": outpost.port, "upstream": upstream.port,
                                             "idp": idp.port},
                        log_level="info", extra_args=ENVOY_WASM_DEBUG)
    try:
        sess = outpost.session("alice", ["admins", "users"])
        cookie = f"{sess['cookie_name']}={s.add('outpost cookie', sess['cookie_value'])}"
        s.add("outpost bearer token", sess["bearer_token"])
        s.add("X-authentik-jwt", sess["jwt"])
        t = tokens(idp, s)
        ok = [
            ("/dash", H.browser_headers(cookie)),
            ("/dash", H.browser_headers(cookie)),
            ("/admin/x", H.browser_headers(cookie)),
            ("/api/jwt", bearer(t["jwt"])),
            ("/api/opaque", bearer(t["opaque"])),
            ("/api/basic", [("Authorization", t["basic"])]),
        ]
        for path, headers in ok:
            r = H.get(env.port, path, headers=headers)
            assert r.status == 200, (path, r)
        refused = [
            ("/api/jwt", bearer(t["bad_jwt"])),
            ("/api/opaque", bearer(t["unknown"])),
            ("/api/basic", [("Authorization", t["bad_basic"])]),
            ("/dash", H.browser_headers(f"{sess['cookie_name']}="
                                        + s.add("forged outpost cookie",
                                                "forged-outpost-cookie-0123456789abcdef"))),
            ("/dash", [("Accept", "application/json"),
                       ("Authorization", "Bearer " + sess["bearer_token"])]),
        ]
        for path, headers in refused:
            H.get(env.port, path, headers=headers)
        # The outpost failing: callout errors get logged.
        other = outpost.session("bob", ["users"])
        other_cookie = f"{other['cookie_name']}={s.add('outpost cookie', other['cookie_value'])}"
        outpost.set_mode("500")
        try:
            H.get(env.port, "/dash", headers=H.browser_headers(other_cookie))
        finally:
            outpost.set_mode("normal")
        r = H.get(env.port, "/outpost.goauthentik.io/sign_out", headers=H.browser_headers(cookie))
        assert r.status == 302, r
        H.get(env.port, "/dash", headers=H.browser_headers(cookie))
    finally:
        env.stop()
    assert_clean("envoy forward-auth", env.log_text(), s, "wasm log barbican")


def test_envoy_native_oidc_login(wasm, idp, upstream):
    s = Secrets()
    s.add("session secret", ENVOY_SESSION_SECRET)
    auth, secret, _ = I.RP_CLIENTS["barbican-code"]
    s.add("client secret", secret)
    s.add("client Basic", I.basic("barbican-code", secret))
    env = O.start_envoy(wasm, idp, upstream, [ENVOY_SESSION_SECRET], log_level="info",
                        extra_args=ENVOY_WASM_DEBUG)
    try:
        host = O.RpHost("envoy", env, idp, ENVOY_SESSION_SECRET)
        answer, lc, value = login(host, s)
        O.callback(host, answer, lc)   # the code again: refused by the provider
        use_session(host, s, value)
    finally:
        env.stop()
    assert_clean("envoy oidc", env.log_text(), s, "wasm log barbican")


def test_traefik_native_oidc_and_api_tokens(idp, upstream, monkeypatch):
    s = Secrets()
    s.add("session secret", TRAEFIK_SESSION_SECRET)
    monkeypatch.setenv("BARBICAN_E2E_LOGS_SECRET", TRAEFIK_SESSION_SECRET)
    cfg = O.traefik_config(idp, [{"env": "BARBICAN_E2E_LOGS_SECRET"}])
    cfg["jwt"] = jwt_provider(idp, {"inline": idp.jwks()})
    cfg["routes"] = api_routes(["jwt", "basic"]) + cfg["routes"]
    t = O.start_traefik(idp, upstream, [], config=cfg, log_level="DEBUG",
                        plugin_settings={"barbican": {"envs": ["BARBICAN_E2E_LOGS_SECRET"]}})
    try:
        host = O.RpHost("traefik", t, idp, TRAEFIK_SESSION_SECRET)
        answer, lc, value = login(host, s)
        O.callback(host, answer, None)   # replayed without the login cookie: refused
        use_session(host, s, value)
        tk = tokens(idp, s)
        for key in ("jwt", "bad_jwt"):
            H.get(t.port, "/api/x", headers=bearer(tk[key]))
        for key in ("basic", "bad_basic"):
            H.get(t.port, "/api/x", headers=[("Authorization", tk[key])])
        assert H.get(t.port, "/api/x", headers=bearer(tk["jwt"])).status == 200
    finally:
        t.stop()
    assert_clean("traefik", t.log_text(), s, "barbican: ")


def test_serve(outpost, idp):
    s = Secrets()
    s.add("introspection client secret", I.secret(I.INTROSPECTOR))
    s.add("introspection Basic", I.basic(I.INTROSPECTOR))
    doc = S.serve_config(outpost.port, idp)
    doc["routes"][0]["accept"] = ["jwt", "introspection", "basic"]
    sv = S.start_serve(doc)
    try:
        sess = outpost.session("alice", ["admins", "users"])
        cookie = f"{sess['cookie_name']}={s.add('outpost cookie', sess['cookie_value'])}"
        s.add("outpost bearer token", sess["bearer_token"])
        s.add("X-authentik-jwt", sess["jwt"])
        tk = tokens(idp, s)
        html = ("Accept", "text/html")
        assert S.ask(sv, "traefik", "/dash", [html, ("Cookie", cookie)]).status == 200
        assert S.ask(sv, "nginx", "/dash", [html, ("Cookie", cookie)]).status == 200
        for key in ("jwt", "bad_jwt", "opaque", "unknown"):
            S.ask(sv, "traefik", "/api/x", bearer(tk[key]))
        for key in ("basic", "bad_basic"):
            S.ask(sv, "caddy", "/api/x", [("Authorization", tk[key])])
        S.ask(sv, "traefik", "/dash", [html, ("Cookie", f"{sess['cookie_name']}="
                                       + s.add("forged outpost cookie",
                                               "forged-outpost-cookie-0123456789abcdef"))])
        S.ask(sv, "traefik", "/outpost.goauthentik.io/sign_out", [html, ("Cookie", cookie)])
    finally:
        sv.stop()
    assert_clean("serve", sv.log_text(), s, "debug barbican:")


def test_the_search_finds_each_form():
    """The matcher itself: every form it claims to look for is found in a log line."""
    s = Secrets()
    tok = s.add("jwt", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLW9mLWEtdG9rZW4tMDEyMzQ1")
    sec = s.add("secret", "a secret/with+chars=0123456789")
    opaque = s.add("opaque", "Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZg")
    lines = [f"x {tok} y", "sig " + tok.split(".")[2], base64.b64encode(sec.encode()).decode(),
             urllib.parse.quote(sec, safe=""), "prefix " + opaque[:16] + "...",
             base64.urlsafe_b64encode(opaque.encode()).decode()]
    for line in lines:
        assert s.leaks(line), line
    assert not s.leaks("barbican: 401 (jwt_bad_signature) sha256:0123abcd")


class ServeRp(O.RpHost):
    """`barbican serve` in oidc mode as a relying party, each request asked the way
    Traefik's forwardAuth asks (serve_host.ask)."""

    def raw(self, target: str, headers=(), method: str = "GET", body: bytes | None = None,
            host: str | None = "app.test") -> H.Response:
        return S.ask(self.proc, "traefik", target, [O.HTML, *headers], method=method)


def test_serve_native_oidc_login(idp):
    s = Secrets()
    s.add("session secret", SERVE_SESSION_SECRET)
    _, secret, _ = I.RP_CLIENTS["barbican-code"]
    s.add("client secret", secret)
    s.add("client Basic", I.basic("barbican-code", secret))
    doc = {**O.envoy_config(idp, [SERVE_SESSION_SECRET]), "clusters": {"idp": idp.base},
           "trusted_proxies": ["127.0.0.1/32"]}
    sv = S.start_serve(doc)
    try:
        host = ServeRp("serve", sv, idp, SERVE_SESSION_SECRET, flow="code")
        answer, lc, value = login(host, s)
        assert host.raw("/x", [("Cookie", f"{O.COOKIE}={value}")]).status == 200
        O.callback(host, answer, lc)   # the code again: refused by the provider
        use_session(host, s, value)
    finally:
        sv.stop()
    assert_clean("serve oidc", sv.log_text(), s, "debug barbican:")
