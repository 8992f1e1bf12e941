"""The test stand-ins themselves: the outpost speaks authentik's protocol, the upstream
echoes. These need no wasm; they keep the other tests honest."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse

import pytest

import harness as H

ENVOY = "/outpost.goauthentik.io/auth/envoy"


def op_get(op, target, headers=None, host="app.test", method="GET"):
    return H.request(op.port, target, method, headers=headers, host=host)


def jwt_payload(token: str) -> dict:
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def test_ping(outpost):
    assert op_get(outpost, "/outpost.goauthentik.io/ping").status == 204


def test_envoy_allow_sets_identity_headers_and_echoes_user_agent(outpost):
    s = outpost.session("dora", ["admins", "ops"], ttl=600)
    r = op_get(outpost, ENVOY + "/x/y?z=1", headers=[
        ("Cookie", f"other=1; {s['cookie_name']}={s['cookie_value']}"),
        ("User-Agent", "ua-test")])
    assert r.status == 200
    assert r.header("X-authentik-username") == "dora"
    assert r.header("X-authentik-groups") == "admins|ops"
    assert r.header("X-authentik-email") == "dora@example.test"
    assert r.header("X-authentik-uid") == s["sub"]
    assert r.header("User-Agent") == "ua-test"
    for name in ("entitlements", "name", "meta-jwks", "meta-outpost", "meta-provider",
                 "meta-app", "meta-version"):
        assert r.header("X-authentik-" + name) is not None, name
    assert jwt_payload(r.header("X-authentik-jwt"))["exp"] == s["exp"]
    last = outpost.last_auth()
    assert last["forward_url"] == "http://app.test/x/y?z=1"
    assert last["headers"]["cookie"][0].startswith("other=sha256:")  # values fingerprinted
    assert s["cookie_value"] not in json.dumps(outpost.stats())


def test_envoy_skip_path_answers_200_without_identity(outpost):
    r = op_get(outpost, ENVOY + "/api/v3/items")
    assert r.status == 200
    assert not [k for k, _ in r.headers if k.lower().startswith("x-authentik")]


def test_envoy_no_session_redirects_to_authorize_and_creates_session(outpost):
    r = op_get(outpost, ENVOY + "/app/page?x=1", headers=[("X-Forwarded-Proto", "https")])
    assert r.status == 302
    loc = urllib.parse.urlsplit(r.header("Location"))
    assert loc.path == "/application/o/authorize/"
    q = urllib.parse.parse_qs(loc.query)
    assert q["response_type"] == ["code"]
    assert q["redirect_uri"] == [
        "http://app.test/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"]
    state = jwt_payload(q["state"][0])
    assert state["redirect"] == "https://app.test/app/page?x=1"
    set_cookie = r.header_all("Set-Cookie")
    assert len(set_cookie) == 1 and set_cookie[0].startswith("authentik_proxy_")
    assert "HttpOnly" in set_cookie[0] and "SameSite=Lax" in set_cookie[0]


def test_envoy_non_clean_path_gets_gorilla_301(outpost):
    r = op_get(outpost, ENVOY + "/api/../admin")
    assert r.status == 301
    assert r.header("Location") == ENVOY + "/admin"


def test_traefik_and_nginx_endpoints(outpost):
    c = outpost.cookie("erin", ["users"])
    r = op_get(outpost, "/outpost.goauthentik.io/auth/traefik", headers=[
        ("Cookie", c), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "a.lan"),
        ("X-Forwarded-Uri", "/p")])
    assert r.status == 200 and r.header("X-authentik-username") == "erin"
    r = op_get(outpost, "/outpost.goauthentik.io/auth/traefik")
    assert r.status == 500  # no X-Forwarded-Proto: "configuration error"
    r = op_get(outpost, "/outpost.goauthentik.io/auth/traefik", headers=[
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "a.lan"), ("X-Forwarded-Uri", "/p")])
    assert r.status == 302
    r = op_get(outpost, "/outpost.goauthentik.io/auth/nginx", headers=[("X-Original-URI", "/p")])
    assert r.status == 401
    r = op_get(outpost, "/outpost.goauthentik.io/auth/nginx",
               headers=[("X-Original-URL", "http://a.lan/api/x")])
    assert r.status == 200


def test_login_flow_start_authorize_callback(outpost):
    r = op_get(outpost, "/outpost.goauthentik.io/start?rd=" +
               urllib.parse.quote("http://app.test/after?a=1", safe=""))
    assert r.status == 302
    pre = H.cookie_from_set_cookie(r.header("Set-Cookie"))
    loc = urllib.parse.urlsplit(r.header("Location"))
    r = op_get(outpost, loc.path + "?" + loc.query, host=f"127.0.0.1:{outpost.port}")
    assert r.status == 302
    cb = urllib.parse.urlsplit(r.header("Location"))
    assert cb.path == "/outpost.goauthentik.io/callback"
    # without the pre-login session the state does not match
    bad = op_get(outpost, cb.path + "?" + cb.query)
    assert bad.status == 302 and bad.header("Location") == "http://app.test"
    r = op_get(outpost, cb.path + "?" + cb.query, headers=[("Cookie", pre)])
    assert r.status == 302 and r.header("Location") == "http://app.test/after?a=1"
    session = H.cookie_from_set_cookie(r.header("Set-Cookie"))
    r = op_get(outpost, ENVOY + "/after", headers=[("Cookie", session)])
    assert r.status == 200 and r.header("X-authentik-username") == "alice"


def test_sign_out_deletes_server_side_sessions(outpost):
    s = outpost.session("frank", ["users"])
    c = f"{s['cookie_name']}={s['cookie_value']}"
    assert op_get(outpost, ENVOY + "/x", headers=[("Cookie", c)]).status == 200
    r = op_get(outpost, "/outpost.goauthentik.io/sign_out", headers=[("Cookie", c)])
    assert r.status == 302 and "/end-session/" in r.header("Location")
    assert r.header("Set-Cookie") is None  # authentik leaves the cookie in place
    r = op_get(outpost, ENVOY + "/x", headers=[("Cookie", c)])
    assert r.status == 302  # stale cookie: new session + redirect
    assert r.header("Set-Cookie")


def test_bearer_token_allows_and_sets_session_cookie_once(outpost):
    s = outpost.session("gina", ["users"])
    h = [("Authorization", "Bearer " + s["bearer_token"])]
    r1 = op_get(outpost, ENVOY + "/x", headers=h)
    assert r1.status == 200 and r1.header("X-authentik-username") == "gina"
    assert r1.header("Set-Cookie")  # saveAndCacheClaims saves a session
    r2 = op_get(outpost, ENVOY + "/x", headers=h)
    assert r2.status == 200 and r2.header("Set-Cookie") is None  # 60 s header cache
    basic = base64.b64encode(f"goauthentik.io/token:{s['bearer_token']}".encode()).decode()
    r3 = op_get(outpost, ENVOY + "/x", headers=[("Authorization", "Basic " + basic)])
    assert r3.status == 200


def test_failure_modes(outpost):
    try:
        outpost.set_mode("500")
        assert op_get(outpost, ENVOY + "/x").status == 500
        outpost.set_mode("close")
        with pytest.raises((OSError, http.client.HTTPException)):
            op_get(outpost, ENVOY + "/x")
        outpost.set_mode("hang", 0.5)
        with pytest.raises((OSError, http.client.HTTPException)):
            H.request(outpost.port, ENVOY + "/x", timeout=2.0)
    finally:
        outpost.set_mode("normal")
    assert op_get(outpost, "/outpost.goauthentik.io/ping").status == 204


def test_upstream_echo_and_websocket(upstream):
    r = H.request(upstream.port, "/a/%2e%2e/b?c=1", "POST",
                  headers=[("X_Under", "1"), ("X-Multi", "a"), ("X-Multi", "b")], body=b"xyz")
    body = r.upstream
    assert body["method"] == "POST" and body["path"] == "/a/%2e%2e/b?c=1"
    assert body["headers"]["x_under"] == ["1"] and body["headers"]["x-multi"] == ["a", "b"]
    assert body["body_len"] == 3
    resp, ws = H.WebSocket.connect(upstream.port, "/ws", headers=[("X-Test", "1")])
    assert resp.status == 101 and ws is not None
    ws.send_text("ping-1")
    assert ws.recv_text() == "ping-1"
    ws.send_text("__headers__")
    assert json.loads(ws.recv_text())["headers"]["x-test"] == ["1"]
    assert ws.close() == 1000
