"""Native OIDC sessions on Envoy (session.mode "oidc", authorization code flow + PKCE, token
exchange by callout): a scripted browser (browser.py) logs in at the real npm
`oidc-provider` (servers/oidc), then Barbican decides every request from its own sealed
session cookie with zero IdP calls. Tampered, expired and foreign-key cookies lead to a new
login; logout clears and revokes the session; open-redirect attempts are refused.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import pytest

import browser as B
import harness as H
import idp as I
import oidc_hosts as O
import session_cookie as SC

SECRET = "e2e-current-secret-0123456789abcdef-0123456789"
OLD_SECRET = "e2e-previous-secret-0123456789abcdef-012345678"
APP = "http://app.test"


oidc_config = O.envoy_config


def _envoy(wasm, idp, upstream, secrets, client="barbican-code"):
    return O.start_envoy(wasm, idp, upstream, secrets, client)


@pytest.fixture(scope="module")
def envoy(wasm, idp, upstream):
    env = _envoy(wasm, idp, upstream, [SECRET])
    try:
        yield env
    finally:
        env.stop()


def seen_headers(r: B.BrowserResponse) -> dict:
    return r.json()["headers"]


def raw_get(envoy, path: str, headers: dict) -> http.client.HTTPResponse:
    c = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r


def test_login_then_requests_need_no_idp_calls(envoy, idp):
    b = B.app_browser(envoy.port)
    idp.reset()
    r = I.app_login(b)
    assert r.url == f"{APP}/app/page?x=1"
    h = seen_headers(r)
    assert h["x-authentik-username"] == ["alice"]
    assert h["x-authentik-groups"] == ["admins|users"]
    assert h["x-authentik-email"] == ["alice@example.test"]
    st = idp.stats()
    assert st["login"] == 1 and st["token_code"] == 1, st
    attrs = b.cookie_attrs("app.test", "barbican_session")
    assert attrs and attrs["httponly"] and attrs["samesite"].lower() == "lax", attrs
    assert b.cookie("app.test", "barbican_session_login") is None, "login cookie cleared"

    idp.reset()
    for i in range(25):
        r = b.get(f"{APP}/app/{i}", headers={"X-authentik-username": "mallory"})
        assert r.status == 200, r
        assert seen_headers(r)["x-authentik-username"] == ["alice"]
    st = idp.stats()
    calls = st["authorization"] + st["token_code"] + st["login"]
    assert calls == 0, st


def test_groups_are_enforced_from_the_session(envoy):
    b = B.app_browser(envoy.port)
    I.app_login(b, "/x", user="bob")
    assert b.get(f"{APP}/admin/x").status == 403
    assert b.get(f"{APP}/x").status == 200
    a = B.app_browser(envoy.port)
    I.app_login(a, "/admin/x", user="alice")


def test_xhr_and_api_clients_get_401_not_a_redirect(envoy):
    b = B.app_browser(envoy.port)
    r = b.get(f"{APP}/x", headers={"X-Requested-With": "XMLHttpRequest"})
    assert r.status == 401
    r = b.get(f"{APP}/x", headers={"Accept": "application/json"})
    assert r.status == 401


@pytest.mark.parametrize("what", ["tampered", "expired", "foreign", "garbage"])
def test_bad_cookies_lead_to_a_new_login(envoy, what):
    b = B.app_browser(envoy.port)
    I.app_login(b)
    good = b.cookie("app.test", "barbican_session")
    now = int(time.time())
    value = {
        "tampered": good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
        "expired": SC.session_cookie(SECRET, "alice", now - 10, user="alice"),
        "foreign": SC.session_cookie("another-secret-nobody-configured-0123456789", "alice",
                                     now + 3600, user="alice", groups=["admins"]),
        "garbage": "x" * 40,
    }[what]
    r = raw_get(envoy, "/x", {"Host": "app.test", "Accept": "text/html",
                              "Cookie": f"barbican_session={value}"})
    assert r.status == 302
    assert r.getheader("location").startswith(idp_auth_prefix(envoy))
    cleared = [c for c in r.headers.get_all("set-cookie") if c.startswith("barbican_session=;")]
    assert cleared and "Max-Age=0" in cleared[0]
    # With the IdP's own session (SSO) the browser comes straight back, logged in again.
    b.jar.set("app.test", "barbican_session", value)
    r = b.browse(f"{APP}/again")
    assert r.status == 200 and r.url == f"{APP}/again", r
    assert b.cookie("app.test", "barbican_session") not in (value, None)


def idp_auth_prefix(envoy) -> str:
    return envoy._idp_auth  # set by the fixture below


@pytest.fixture(scope="module", autouse=True)
def _remember_auth_endpoint(envoy, idp):
    envoy._idp_auth = idp.discovery()["authorization_endpoint"] + "?"


def test_a_cookie_sealed_by_the_test_matches_the_documented_format(envoy):
    # The Python implementation (session_cookie.py) seals a valid session Barbican accepts.
    value = SC.session_cookie(SECRET, "carol", int(time.time()) + 600, user="carol",
                              groups=["users"])
    r = raw_get(envoy, "/x", {"Host": "app.test", "Accept": "text/html",
                              "Cookie": f"barbican_session={value}"})
    assert r.status == 200


def test_logout_clears_and_revokes_the_session_and_ends_the_idp_session(envoy, idp):
    b = B.app_browser(envoy.port)
    I.app_login(b)
    value = b.cookie("app.test", "barbican_session")
    r = b.get(f"{APP}/.barbican/logout")
    assert r.status == 302
    loc = r.location
    assert loc.startswith(idp.discovery()["end_session_endpoint"] + "?"), loc
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert q["client_id"] == ["barbican-code"]
    assert q["post_logout_redirect_uri"] == [f"{APP}/bye"]
    assert b.cookie("app.test", "barbican_session") is None
    r = b.logout(loc)
    assert r.status == 200 and r.url.startswith(f"{APP}/bye"), r
    # A copy of the old cookie is refused (revoked), and the IdP asks for a password again.
    r = raw_get(envoy, "/x", {"Host": "app.test", "Accept": "text/html",
                              "Cookie": f"barbican_session={value}"})
    assert r.status == 302
    r = b.follow(f"{APP}/x")
    assert b.login_form(r) is not None, r


@pytest.mark.parametrize("host", ["evil.example", "app.test.evil.example"])
def test_a_forged_host_never_becomes_a_return_url(envoy, host):
    r = raw_get(envoy, "/x", {"Host": host, "Accept": "text/html"})
    assert r.status == 400


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example", "/%2F%2Fevil.example"])
def test_path_tricks_return_to_the_same_host(envoy, path):
    b = B.app_browser(envoy.port)
    r = b.login(f"{APP}{path}", "alice", "alice-password")
    # Either refused outright, or back on app.test: never another host.
    if r.status == 400:
        return
    assert r.refused is None, r.refused
    assert all(urllib.parse.urlsplit(h.url).hostname in ("app.test", "127.0.0.1")
               for h in r.hops), r.hops


def test_the_callback_refuses_forged_and_replayed_states(envoy, idp):
    b = B.app_browser(envoy.port)
    # Start a login, stop at the IdP.
    r = b.follow(f"{APP}/x")
    assert b.login_form(r) is not None
    auth = next(h.location for h in r.hops if h.location and "state=" in h.location)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(auth).query)["state"][0]
    for bad in [state[:-2] + "AA", "", "javascript:alert(1)"]:
        r = b.get(f"{APP}/.barbican/callback?code=x&state={urllib.parse.quote(bad)}")
        assert r.status == 400, (bad, r)
    # The right state from a browser without the login cookie: refused.
    other = B.app_browser(envoy.port)
    r = other.get(f"{APP}/.barbican/callback?code=x&state={urllib.parse.quote(state)}")
    assert r.status == 400
    # The provider reports an error: 403, no loop.
    r = b.get(f"{APP}/.barbican/callback?error=access_denied&state={urllib.parse.quote(state)}")
    assert r.status == 403


def test_secret_rotation_keeps_sessions_of_the_previous_secret(wasm, idp, upstream):
    old = _envoy(wasm, idp, upstream, [OLD_SECRET])
    try:
        b = B.app_browser(old.port)
        I.app_login(b)
        value = b.cookie("app.test", "barbican_session")
    finally:
        old.stop()
    # Rotated (new secret first, old one kept): still valid. Old secret dropped: a new login.
    for secrets, want in (([SECRET, OLD_SECRET], 200), ([SECRET], 302)):
        env = _envoy(wasm, idp, upstream, secrets)
        try:
            r = raw_get(env, "/x", {"Host": "app.test", "Accept": "text/html",
                                    "Cookie": f"barbican_session={value}"})
            assert r.status == want, (len(secrets), r.status)
        finally:
            env.stop()


def test_client_secret_post_and_rs256(wasm, idp, upstream):
    env = _envoy(wasm, idp, upstream, [SECRET], client="barbican-code-post")
    try:
        b = B.app_browser(env.port)
        r = I.app_login(b)
        assert seen_headers(r)["x-authentik-username"] == ["alice"]
    finally:
        env.stop()


def test_secrets_come_from_the_vm_environment(wasm, idp, upstream, monkeypatch):
    """Secrets named `{"env": NAME}`: the session secret from Envoy's own environment
    (`host_env_keys`), the client secret from `key_values`. The login's token exchange needs
    the client secret; a cookie sealed under SECRET needs the session secret."""
    monkeypatch.setenv("BARBICAN_E2E_SESSION_SECRET", SECRET)
    cfg = oidc_config(idp, [SECRET])
    o = cfg["session"]["oidc"]
    client_secret = o["client_secret"]
    o["secrets"] = [{"env": "BARBICAN_E2E_SESSION_SECRET"}]
    o["client_secret"] = {"env": "BARBICAN_E2E_CLIENT_SECRET"}
    env = H.start_envoy(cfg, wasm, clusters={"idp": idp.port, "upstream": upstream.port,
                                             "outpost": upstream.port},
                        vm_env={"host_env_keys": ["BARBICAN_E2E_SESSION_SECRET"],
                                "key_values": {"BARBICAN_E2E_CLIENT_SECRET": client_secret}})
    try:
        r = I.app_login(B.app_browser(env.port))
        assert seen_headers(r)["x-authentik-username"] == ["alice"]
        value = SC.session_cookie(SECRET, "carol", int(time.time()) + 600, user="carol")
        r = raw_get(env, "/x", {"Host": "app.test", "Accept": "text/html",
                                "Cookie": f"barbican_session={value}"})
        assert r.status == 200
        assert "BARBICAN_E2E" not in env.log_tail() and SECRET not in env.log_tail()
    finally:
        env.stop()
