"""Real Envoy running examples/serve/envoy-ext-authz.yaml (its ext_authz HTTP filter pointing
at `barbican serve`), in front of the upstream echo server, with the outpost test server as
Authentik. Only the addresses of the example are replaced.

Proves, through Envoy: the login redirect, cached sessions (one outpost call per session, not
per request: Authentik's documented ext_authz setup costs one per request,
test_baseline_ext_authz.py), and that no forged identity header reaches the upstream on a
protected or a bypass route (the example's Lua filter removes the families; DROP_HEADER the
"_" spellings; ext_authz's allowed_upstream_headers then sets Barbican's).

Sources: envoy api/envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto (path_prefix,
allowed_headers, allowed_upstream_headers overriding existing headers,
allowed_client_headers_on_success), api/envoy/extensions/filters/http/lua/v3/lua.proto.
"""

from __future__ import annotations

import copy

import pytest
import yaml

import harness as H
import serve_host as S

EXAMPLE = H.REPO / "examples" / "serve" / "envoy-ext-authz.yaml"
ALL_SPOOFS = H.SPOOFED_HEADERS + H.SPOOFED_UNDERSCORE_HEADERS


def example_bootstrap(ports: dict[str, int], strip: bool = True) -> dict:
    """The example with this run's ports (listener and admin on free ports); with `strip`
    False, without its Lua filter (the control)."""
    cfg = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    sr = cfg["static_resources"]
    sr["listeners"][0]["address"]["socket_address"]["port_value"] = 0
    cfg["admin"]["address"]["socket_address"]["port_value"] = 0
    for c in sr["clusters"]:
        ep = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ep["address"]["socket_address"]["port_value"] = ports[c["name"]]
    if not strip:
        hcm = sr["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"] = [f for f in hcm["http_filters"]
                               if f["name"] != "envoy.filters.http.lua"]
    return cfg


@pytest.fixture(scope="module")
def stack(outpost, upstream):
    sv = S.start_serve(S.serve_config(outpost.port))
    env = None
    try:
        env = H.start_envoy_config(example_bootstrap(
            {"barbican": sv.port, "authentik": outpost.port, "app": upstream.port}),
            name="envoy-serve")
        yield env, sv
    finally:
        if env:
            env.stop()
        sv.stop()


def leaks_of(r: H.Response) -> list[str]:
    assert r.from_upstream, f"expected the upstream's echo: {r}"
    return H.spoofed_leaks(r.upstream["headers"])


def test_login_redirect_for_a_browser(stack):
    env, _ = stack
    r = H.get(env.port, "/dash", headers=H.browser_headers())
    assert r.status == 302, r
    assert "/application/o/authorize/" in (r.header("Location") or ""), r
    assert not r.from_upstream


def test_api_client_without_a_session_gets_401(stack):
    env, _ = stack
    r = H.get(env.port, "/dash", headers=[("Accept", "application/json")])
    assert r.status == 401 and not r.from_upstream, r


def test_cached_session_one_outpost_call_per_session(stack, outpost):
    env, _ = stack
    cookie = outpost.cookie(user="dave")
    r = H.get(env.port, "/", headers=H.browser_headers(cookie))
    assert r.status == 200 and r.upstream_header("x-authentik-username") == ["dave"], r
    before = outpost.auth_calls()
    with H.KeepAliveClient(env.port) as c:
        for i in range(200):
            r = c.request(f"/page/{i}", headers=H.browser_headers(cookie))
            assert r.status == 200, r
    calls = outpost.auth_calls() - before
    assert calls / 200 <= 0.001, f"{calls} outpost calls for 200 requests"


@pytest.mark.parametrize("path", ["/", "/public/x"], ids=["protected", "bypass"])
def test_forged_identity_headers_never_reach_the_upstream(stack, outpost, path):
    env, _ = stack
    cookie = outpost.cookie(user="carol") if path == "/" else None
    r = H.get(env.port, path, headers=H.browser_headers(cookie, ALL_SPOOFS))
    assert r.status == 200, r
    assert leaks_of(r) == []
    if path == "/":
        assert r.upstream_header("x-authentik-username") == ["carol"]
    else:
        assert r.upstream_header("x-authentik-username") == []


def test_control_without_the_lua_filter_forged_identity_leaks(outpost, upstream):
    """Without the example's Lua filter, ext_authz overwrites only the names Barbican
    answers with: on a bypass route (no identity answered) the forged headers pass. So the
    filter is what the spoof test above proves."""
    sv = S.start_serve(S.serve_config(outpost.port))
    env = None
    try:
        env = H.start_envoy_config(example_bootstrap(
            {"barbican": sv.port, "authentik": outpost.port, "app": upstream.port},
            strip=False), name="envoy-serve-nolua")
        r = H.get(env.port, "/public/x", headers=ALL_SPOOFS)
        assert r.status == 200 and len(leaks_of(r)) >= 10, leaks_of(r)
    finally:
        if env:
            env.stop()
        sv.stop()


def test_sign_out_reaches_the_outpost_and_drops_the_cached_decision(stack, outpost):
    env, _ = stack
    cookie = outpost.cookie(user="frank")
    assert H.get(env.port, "/", headers=H.browser_headers(cookie)).status == 200
    r = H.get(env.port, "/outpost.goauthentik.io/sign_out", headers=H.browser_headers(cookie))
    assert r.status == 302 and r.header("Location"), r   # the outpost's end-session redirect
    r = H.get(env.port, "/", headers=H.browser_headers(cookie))
    assert r.status == 302 and not r.from_upstream, r


def test_serve_down_is_403_never_a_pass(outpost, upstream):
    dead = H.free_port()
    env = H.start_envoy_config(example_bootstrap(
        {"barbican": dead, "authentik": outpost.port, "app": upstream.port}),
        name="envoy-serve-down")
    try:
        r = H.get(env.port, "/", headers=H.browser_headers(outpost.cookie()))
        assert r.status == 403 and not r.from_upstream, r
    finally:
        env.stop()


# --- native OIDC sessions through serve (session.mode "oidc", code flow + PKCE) -------------

OIDC_SECRET = "e2e-serve-secret-0123456789abcdef-0123456789ab"


def oidc_document(idp) -> dict:
    """test_oidc_envoy.py's relying party, for serve: the token exchange and the key set go
    through the `idp` cluster, which serve finds in `clusters`."""
    import oidc_hosts as O
    return {**O.envoy_config(idp, [OIDC_SECRET]), "clusters": {"idp": idp.base},
            "trusted_proxies": ["127.0.0.1/32"]}


def test_native_oidc_login_through_envoy_ext_authz(outpost, upstream, idp):
    """A scripted browser logs in at oidc-provider; the callback reaches serve through
    ext_authz, serve exchanges the code at the token endpoint (a callout) and answers 302 +
    Set-Cookie, which Envoy relays; then serve decides from its own session cookie with no
    IdP call."""
    import browser as B
    import idp as I
    sv = S.start_serve(oidc_document(idp))
    env = None
    try:
        env = H.start_envoy_config(example_bootstrap(
            {"barbican": sv.port, "authentik": outpost.port, "app": upstream.port}),
            name="envoy-serve-oidc")
        b = B.app_browser(env.port)
        idp.reset()
        r = I.app_login(b, "/app/page?x=1", user="bob")
        assert r.url == "http://app.test/app/page?x=1"
        seen = r.json()["headers"]
        assert seen["x-authentik-username"] == ["bob"], seen
        st = idp.stats()
        assert st["login"] == 1 and st["token_code"] == 1, st
        idp.reset()
        for i in range(20):
            r = b.get(f"http://app.test/app/{i}", headers={"X-authentik-username": "mallory"})
            assert r.status == 200 and r.json()["headers"]["x-authentik-username"] == ["bob"]
        assert b.get("http://app.test/admin/x").status == 403
        st = idp.stats()
        assert st["authorization"] + st["token_code"] + st["login"] == 0, st
    finally:
        if env:
            env.stop()
        sv.stop()
