"""Real Caddy, nginx and Traefik running examples/serve/{Caddyfile, nginx.conf, traefik.yml +
traefik-dynamic.yml} in front of `barbican serve` (examples/serve/barbican.yaml), the outpost
test server as Authentik and the test OpenID provider for API tokens (serve_proxies.py says
what differs from the shipped files: addresses only, plus the test IdP's issuer).

For each proxy (one at a time; serve, outpost, IdP and upstream shared): the login redirect,
a cached session (outpost calls per request ≤ 0.001), the phone-app route with a JWT, an
opaque token and Basic `goauthentik.io/token`, path tricks, 0 forged identity headers at the
upstream on protected, api and bypass routes, client-sent forwarded headers, sign-out,
websockets; for all three at once, IdP down → stale grace → fail closed; and
examples/serve/barbican-oidc.yaml (serve as the OIDC relying party) behind each proxy with
a scripted browser: login, callback, cached session, logout.
"""

from __future__ import annotations

import base64
import json
import posixpath
import time
import urllib.parse

import pytest

import harness as H
import idp as I
import serve_proxies as P

SPOOFS = H.SPOOFED_HEADERS + H.SPOOFED_UNDERSCORE_HEADERS
JSON = ("Accept", "application/json")


@pytest.fixture(scope="module")
def idp():
    """The test OpenID provider with the example host's callback registered (the native
    OIDC test); the API-token tests use it as any other."""
    p = I.start_idp(redirect_uris=[P.OIDC_CALLBACK], post_logout_redirect_uris=[P.OIDC_AFTER_LOGOUT])
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def serve(outpost, idp):
    sv = P.start_serve(outpost.port, idp)
    try:
        yield sv
    finally:
        sv.stop()


@pytest.fixture(scope="module", params=P.PROXIES)
def proxy(request, serve, outpost, upstream):
    px = P.start_proxy(request.param, serve.port, outpost.port, upstream.port)
    try:
        yield px
    finally:
        px.stop()


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


def leaks(r: H.Response) -> list[str]:
    assert r.from_upstream, f"expected the upstream's echo: {r}"
    return H.spoofed_leaks(r.upstream["headers"])


def test_login_redirect_for_a_browser(proxy):
    r = proxy.get("/sonarr/calendar?view=week", H.browser_headers())
    # nginx: serve answers 401 + Location, the example's error_page turns it into the 302.
    assert r.status == 302 and not r.from_upstream, r
    loc = r.header("Location") or ""
    assert "/application/o/authorize/" in loc, r
    # The outpost's state cookie reaches the browser through every proxy.
    assert any(c.startswith("authentik_proxy_") for c in r.header_all("Set-Cookie")), r


def test_api_clients_without_credentials_get_401_not_a_redirect(proxy):
    for path in ("/sonarr/api/v3/queue", "/sonarr/calendar"):
        r = proxy.get(path, [JSON])
        assert r.status == 401 and not r.header("Location") and not r.from_upstream, (path, r)
    r = proxy.get("/sonarr/api/v3/queue", [JSON])
    assert (r.header("WWW-Authenticate") or "").lower().startswith("bearer"), r


def test_cached_session_reaches_the_upstream_with_one_outpost_call(proxy, outpost):
    cookie = outpost.cookie(user=f"dave-{proxy.kind}")
    r = proxy.get("/sonarr/", H.browser_headers(cookie))
    assert r.status == 200 and r.upstream_header("x-authentik-username") == [f"dave-{proxy.kind}"]
    assert r.upstream_header("x-authentik-groups") == ["admins|users"], r
    before = outpost.auth_calls()
    with H.KeepAliveClient(proxy.port, host=P.HOST) as c:
        for i in range(200):
            r = c.request(f"/sonarr/series/{i}", headers=H.browser_headers(cookie))
            assert r.status == 200 and r.from_upstream, r
    calls = outpost.auth_calls() - before
    assert calls / 200 <= 0.001, f"{calls} outpost calls for 200 requests"


def test_phone_app_route_with_a_jwt(proxy, idp):
    tok = idp.token(I.RES_ES, "read")
    r = proxy.get("/sonarr/api/v3/queue", [bearer(tok), JSON])
    assert r.status == 200, r
    assert r.upstream_header("x-authentik-uid") == [I.jwt_payload(tok)["sub"]]
    # A token for another audience is refused, not sent to the outpost for a session.
    other = idp.token(I.RES_OTHER, "read")
    r = proxy.get("/sonarr/api/v3/queue", [bearer(other), JSON])
    assert r.status == 401 and not r.from_upstream, r


def test_phone_app_route_with_an_opaque_token_introspected_once(proxy, idp):
    tok = idp.token(I.RES_OPAQUE, "read")
    before = idp.count("introspection")
    for _ in range(5):
        r = proxy.get("/sonarr/api/v3/queue", [bearer(tok), JSON])
        assert r.status == 200 and r.upstream_header("x-authentik-uid") == ["api-admin"], r
    # Authentik's app-password form: Basic with the username goauthentik.io/token.
    basic = base64.b64encode(f"goauthentik.io/token:{tok}".encode()).decode()
    r = proxy.get("/sonarr/api/v3/queue", [("Authorization", f"Basic {basic}"), JSON])
    assert r.status == 200, r
    assert idp.count("introspection") - before == 1


def test_phone_app_post_with_a_body_reaches_the_upstream_whole(proxy, idp):
    """Sonarr's API takes POSTs: the auth request carries the method (never the body), and
    the body goes on to the app untouched once allowed."""
    body = json.dumps({"title": "x" * 20000}).encode()
    tok = idp.token(I.RES_ES, "read")
    r = proxy.get("/sonarr/api/v3/series", [bearer(tok), JSON,
                                             ("Content-Type", "application/json")],
                  method="POST", body=body)
    assert r.status == 200 and r.upstream["method"] == "POST", r
    assert r.upstream["body_len"] == len(body), r.upstream
    r = proxy.get("/sonarr/api/v3/series", [JSON, ("Content-Type", "application/json")],
                  method="POST", body=body)
    assert r.status == 401 and not r.from_upstream, r


PATH_TRICKS = ["/sonarr/api/../admin", "/sonarr/api/%2e%2e/admin", "/sonarr/api/%2E%2E/admin",
               "/sonarr/api/.%2e/admin", "/sonarr//api/..//admin", "/sonarr/api/./../admin",
               "/sonarr/api/..%2fadmin", "/sonarr/api/%2e%2e%2fadmin"]


@pytest.mark.parametrize("target", PATH_TRICKS)
def test_path_tricks_with_an_api_token_never_reach_another_path(proxy, idp, target):
    """A token good for /sonarr/api/ must not open /sonarr/admin however the path is spelt:
    the proxy cleans or refuses it, serve normalizes before matching, and whatever reaches
    the upstream is under /sonarr/api/."""
    r = proxy.get(target, [bearer(idp.token(I.RES_ES, "read")), JSON])
    if r.from_upstream:
        seen = urllib.parse.unquote(r.upstream["path"].split("?")[0])
        assert posixpath.normpath(seen).startswith("/sonarr/api/"), (target, seen)
    else:
        assert r.status in (400, 401, 403, 404), (target, r)


def test_forged_identity_headers_never_reach_the_upstream(proxy, outpost, idp):
    cases = {
        "protected": ("/sonarr/", H.browser_headers(outpost.cookie(user="carol"), SPOOFS)),
        "api": ("/sonarr/api/v3/queue", [bearer(idp.token(I.RES_ES, "read")), JSON, *SPOOFS]),
        "bypass": ("/sonarr/ping", SPOOFS),
    }
    for route, (path, headers) in cases.items():
        r = proxy.get(path, headers)
        assert r.status == 200, (route, r)
        assert leaks(r) == [], (route, leaks(r))
    r = proxy.get("/sonarr/ping", SPOOFS)
    assert r.upstream_header("x-authentik-username") == []


@pytest.mark.parametrize("kind", P.PROXIES)
def test_control_without_the_examples_header_removal_forged_identity_leaks(
        kind, serve, outpost, upstream):
    """The same proxy without its removal lines passes forged headers on the bypass route
    (serve answers no identity there, so nothing overwrites them): the removal is what the
    test above proves."""
    px = P.start_proxy(kind, serve.port, outpost.port, upstream.port, remove_identity=False)
    try:
        r = px.get("/sonarr/ping", SPOOFS)
        assert r.status == 200 and len(leaks(r)) >= 5, leaks(r)
    finally:
        px.stop()


def test_client_forwarded_headers_never_unlock_anything(proxy, idp):
    """The client names an open or api path (X-Forwarded-Uri, X-Original-URI/-URL), another
    method, or the home network (X-Forwarded-For) in its own headers: the proxy's own values
    decide."""
    names = [("X-Forwarded-Uri", "/sonarr/ping"), ("X-Original-URI", "/sonarr/ping"),
             ("X-Original-URL", f"http://{P.HOST}/sonarr/ping"),
             ("X-Forwarded-Method", "OPTIONS"), ("X-Forwarded-Host", "other.example.com"),
             ("X-Forwarded-Proto", "https")]
    r = proxy.get("/sonarr/admin", names + [JSON])
    assert r.status == 401 and not r.from_upstream, r
    r = proxy.get("/sonarr/admin", names + H.browser_headers())
    assert r.status == 302 and not r.from_upstream, r
    # The api route's allow_cidrs names the home network; the client is loopback.
    r = proxy.get("/sonarr/api/v3/queue", [("X-Forwarded-For", "192.168.1.20"),
                                           ("X-Real-IP", "192.168.1.20"), JSON])
    assert r.status == 401 and not r.from_upstream, r


def test_home_network_reaches_the_api_without_credentials_and_nothing_else(
        outpost, upstream, idp):
    """allow_cidrs on the api route, with loopback as the home network: each proxy hands
    serve the client's real address, so the phone app at home needs no token on the API
    route, and still gets no further (the rest of the site wants a session)."""
    sv = P.start_serve(outpost.port, idp, home_network="127.0.0.1/32")
    try:
        for kind in P.PROXIES:
            with P.start_proxy(kind, sv.port, outpost.port, upstream.port) as px:
                r = px.get("/sonarr/api/v3/queue", [JSON, *SPOOFS])
                assert r.status == 200 and leaks(r) == [], (kind, r)
                assert r.upstream_header("x-authentik-username") == [], (kind, r)
                r = px.get("/sonarr/calendar", [JSON])
                assert r.status == 401 and not r.from_upstream, (kind, r)
    finally:
        sv.stop()


def test_sign_out_drops_the_cached_decision(proxy, outpost):
    cookie = outpost.cookie(user=f"frank-{proxy.kind}")
    for _ in range(2):
        assert proxy.get("/sonarr/", H.browser_headers(cookie)).status == 200
    r = proxy.get("/outpost.goauthentik.io/sign_out", H.browser_headers(cookie))
    assert r.status == 302 and "/end-session/" in (r.header("Location") or ""), r
    before = outpost.auth_calls()
    r = proxy.get("/sonarr/", H.browser_headers(cookie))
    assert r.status == 302 and not r.from_upstream, r
    assert outpost.auth_calls() == before + 1, "the cached allow answered after sign-out"


def test_websocket_upgrade_with_a_session(proxy, outpost):
    cookie = outpost.cookie(user="wendy")
    seen = H.websocket_seen(proxy.port, "/sonarr/signalr/messages",
                            [("Cookie", cookie)] + H.SPOOFED_HEADERS, host=P.HOST)
    assert seen.get("x-authentik-username") == ["wendy"], seen
    assert H.spoofed_leaks(seen) == []
    resp, ws = H.WebSocket.connect(proxy.port, "/sonarr/signalr/messages", host=P.HOST)
    assert ws is None and resp.status in (302, 401), resp


def test_idp_down_stale_grace_then_fail_closed(upstream, idp):
    """All three proxies in front of one serve (ttl 1 s, grace 3 s) and one outpost that
    starts answering 500: inside the grace the cached session still passes, after it every
    proxy refuses (503 from serve; nginx turns any non-2xx/401/403 into 500)."""
    op = H.start_outpost(skip_path_regex=None)
    procs: list[H.Proc] = [op]
    try:
        sv = P.start_serve(op.port, idp, ttl_s=1, stale_grace_s=3)
        procs.append(sv)
        pxs = [P.start_proxy(k, sv.port, op.port, upstream.port) for k in P.PROXIES]
        procs += pxs
        cookies = {px.kind: op.cookie(user=f"grace-{px.kind}") for px in pxs}
        t0 = time.monotonic()
        for px in pxs:
            assert px.get("/sonarr/", H.browser_headers(cookies[px.kind])).status == 200
        op.set_mode("500")
        time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))     # past ttl_s, inside the grace
        for px in pxs:
            r = px.get("/sonarr/", H.browser_headers(cookies[px.kind]))
            assert r.status == 200 and r.upstream_header("x-authentik-username") == \
                [f"grace-{px.kind}"], (px.kind, r)
        time.sleep(max(0.0, t0 + 5.5 - time.monotonic()))     # past the grace window
        for px in pxs:
            for cookie in (cookies[px.kind], op.cookie(user="new")):
                r = px.get("/sonarr/", H.browser_headers(cookie))
                assert r.status == (500 if px.kind == "nginx" else 503), (px.kind, r)
                assert not r.from_upstream
        assert sv.metric('barbican_cache_total{result="stale_served"}') >= 3
    finally:
        for p in reversed(procs):
            p.stop()


def test_native_oidc_login_callback_and_logout_through_each_proxy(idp, upstream):
    """examples/serve/barbican-oidc.yaml behind the same three proxy configs: a scripted
    browser logs in at the OpenID provider; the callback reaches serve through the proxy's
    forward-auth request, serve exchanges the code and answers 302 + its session cookie,
    which the proxy relays; then no IdP call per request, and the logout path (also answered
    by serve) clears the session."""
    import browser as B
    sv = P.start_serve_oidc(idp)
    try:
        for kind in P.PROXIES:
            with P.start_proxy(kind, sv.port, idp.port, upstream.port) as px:
                b = B.Browser(hosts={P.HOST: ("127.0.0.1", px.port)})
                idp.reset()
                start = f"http://{P.HOST}/sonarr/calendar?week=1"
                r = I.browser_login(b, start, user="bob")
                assert r.url == start, (kind, r.url)
                seen = r.json()["headers"]
                assert seen["x-authentik-username"] == ["bob"], (kind, seen)
                st = idp.stats()
                assert st["login"] == 1 and st["token_code"] == 1, (kind, st)
                idp.reset()
                for i in range(20):
                    r = b.get(f"http://{P.HOST}/sonarr/{i}", headers=SPOOFS)
                    assert r.status == 200, (kind, r)
                    seen = r.json()["headers"]
                    assert seen["x-authentik-username"] == ["bob"] and H.spoofed_leaks(seen) == []
                st = idp.stats()
                assert st["authorization"] + st["token_code"] + st["login"] == 0, (kind, st)
                r = b.get(f"http://{P.HOST}/.barbican/logout")
                assert r.status == 302, (kind, r)
                assert r.location.startswith(idp.discovery()["end_session_endpoint"]), r.location
                assert b.cookies(P.HOST).get("barbican_session") is None, (kind, b.cookies(P.HOST))
                r = b.get(f"http://{P.HOST}/sonarr/", headers={"Accept": "text/html"})
                assert r.status == 302 and r.location.startswith(
                    idp.discovery()["authorization_endpoint"]), (kind, r)
    finally:
        sv.stop()
