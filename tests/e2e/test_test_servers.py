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


# ---------------------------------------------------------------------------------------
# The test OpenID provider as the relying party (Barbican's native sessions) sees it, driven
# by the scripted browser. No Barbican here: app.test is not mapped, so every chain stops at
# the callback URL, which the browser refuses to fetch.
# ---------------------------------------------------------------------------------------

import time  # noqa: E402

import browser as B  # noqa: E402
import idp as I  # noqa: E402

EXTRA_CALLBACK = "http://app.test:18080/.barbican/callback"


@pytest.fixture(scope="module")
def rp_idp():
    p = I.start_idp(redirect_uris=[EXTRA_CALLBACK])
    try:
        yield p
    finally:
        p.stop()


def callback_params(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def assert_id_token(idp, token: str, client: str, nonce: str, user: str = "alice") -> dict:
    alg = I.RP_CLIENTS[client][2]
    header, claims = I.jwt_header(token), I.jwt_payload(token)
    assert header["alg"] == alg and header["kid"] == idp.keys()["signing_kids"][alg], header
    [v] = I.verify_jwts([token], idp.jwks())
    assert v["ok"], v
    assert claims["iss"] == idp.base and claims["aud"] == client and claims["nonce"] == nonce
    assert claims["exp"] > time.time() > claims["iat"] - 5
    # the scope claims are IN the ID token (conformIdTokenClaims: false)
    for k, want in I.USERS[user][1].items():
        assert claims[k] == want, (k, claims)
    return claims


def code_login(idp, b: B.Browser, client: str, user: str = "alice",
               redirect_uri: str = I.CALLBACK) -> tuple[B.BrowserResponse, str, str]:
    """Authorization code + PKCE through the browser; returns (final response, code,
    verifier). The chain stops at the callback (app.test unmapped)."""
    verifier, challenge = I.pkce_pair()
    url = idp.authorize_url(client, redirect_uri=redirect_uri, state=f"st-{client}",
                            nonce=f"n-{client}", code_challenge=challenge)
    r = b.login(url, user, I.USERS[user][0])
    assert r.refused and r.refused.startswith(redirect_uri + "?"), r.hops
    q = callback_params(r.refused)
    assert q["state"] == f"st-{client}" and q["iss"] == idp.base, q
    return r, q["code"], verifier


def test_rp_code_flow_client_secret_basic_es256(rp_idp):
    b = B.Browser()
    r, code, verifier = code_login(rp_idp, b, "barbican-code")
    assert [h.status for h in r.hops] == [303, 200, 303, 303], r.hops  # auth, form, login, resume
    assert r.hops[1].url.startswith(rp_idp.base + "/interaction/")
    assert r.hops[-1].location == r.refused
    t = rp_idp.exchange_code(code, "barbican-code", code_verifier=verifier)
    assert t.status == 200, t
    body = t.json()
    assert body["token_type"] == "Bearer" and body["scope"] == I.RP_SCOPE
    assert_id_token(rp_idp, body["id_token"], "barbican-code", "n-barbican-code")
    # a code is single-use
    again = rp_idp.exchange_code(code, "barbican-code", code_verifier=verifier)
    assert again.status == 400 and again.json()["error"] == "invalid_grant"


def test_rp_code_flow_client_secret_post_rs256_and_extra_redirect_uri(rp_idp):
    b = B.Browser()
    _, code, verifier = code_login(rp_idp, b, "barbican-code-post", "bob",
                                   redirect_uri=EXTRA_CALLBACK)
    # a wrong secret is refused (and does not consume the code). NB: oidc-provider takes
    # client_secret_basic and client_secret_post as the same method: either one works.
    bad = rp_idp.exchange_code(code, "barbican-code-post", redirect_uri=EXTRA_CALLBACK,
                               code_verifier=verifier, client_secret="nope")
    assert bad.status == 401 and bad.json()["error"] == "invalid_client", bad
    t = rp_idp.exchange_code(code, "barbican-code-post", redirect_uri=EXTRA_CALLBACK,
                             code_verifier=verifier)
    assert t.status == 200, t
    c = assert_id_token(rp_idp, t.json()["id_token"], "barbican-code-post",
                        "n-barbican-code-post", "bob")
    assert c["groups"] == ["users"] and c["name"] == "Bob"


def test_rp_pkce_is_required_and_checked(rp_idp):
    b = B.Browser()
    url = rp_idp.authorize_url("barbican-code", state="s", nonce="n")  # no code_challenge
    r = b.follow(url)
    q = callback_params(r.refused)
    assert q["error"] == "invalid_request" and "PKCE" in q["error_description"], q
    _, code, _ = code_login(rp_idp, b, "barbican-code")
    wrong, _ = I.pkce_pair()
    t = rp_idp.exchange_code(code, "barbican-code", code_verifier=wrong)
    assert t.status == 400 and t.json()["error"] == "invalid_grant", t


def test_rp_implicit_form_post(rp_idp):
    b = B.Browser()
    url = rp_idp.authorize_url("barbican-implicit", state="st-i", nonce="n-i")
    assert "response_mode=form_post" in url and "response_type=id_token" in url
    r = b.follow(url)
    r = b.submit_login(r, "alice", "alice-password")
    # the provider answers the form_post page itself (200, self-submitting form)
    assert r.status == 200 and r.refused is None, r.hops
    f = B.auto_form(r)
    assert f is not None and f.action == I.CALLBACK and f.method == "POST"
    assert sorted(k for k, _ in f.fields) == ["id_token", "state"], f.fields
    assert f.get("state") == "st-i"
    assert_id_token(rp_idp, f.get("id_token"), "barbican-implicit", "n-i")
    # login() stops there as well: submitting would POST to the unmapped app.test
    with pytest.raises(B.UnmappedHost):
        b.submit_auto_form(r)
    # nonce is required for response_type=id_token; the error is form_post-ed to the
    # callback too, from a page answered with status 400
    r = B.Browser().follow(rp_idp.authorize_url("barbican-implicit", state="s"))
    f = B.auto_form(r)
    assert r.status == 400 and f is not None and f.action == I.CALLBACK, r
    assert f.get("error") == "invalid_request" and "nonce" in f.get("error_description")
    assert f.get("state") == "s" and f.get("id_token") is None


def test_rp_wrong_password_shows_the_form_again(rp_idp):
    rp_idp.reset()
    b = B.Browser()
    verifier, challenge = I.pkce_pair()
    url = rp_idp.authorize_url("barbican-code", state="s", nonce="n", code_challenge=challenge)
    r = b.login(url, "alice", "bob-password")
    assert r.status == 200 and r.refused is None
    assert "Invalid username or password" in r.text and b.login_form(r) is not None
    assert r.header("X-Test-IdP-Page") == "login"
    assert not any(h.location and h.location.startswith("http://app.test") for h in r.hops)
    r2 = b.login(url, "mallory", "x")  # unknown user: same answer
    assert r2.status == 200 and "Invalid username or password" in r2.text
    s = rp_idp.stats()
    assert (s["login"], s["login_failed"], s["authorization"]) == (0, 2, 2), s
    # the same page's form still works with the right password
    r3 = b.submit_login(r, "alice", "alice-password")
    assert r3.refused and callback_params(r3.refused)["state"] == "s"


def test_rp_sso_and_counters(rp_idp):
    rp_idp.reset()
    b = B.Browser()
    _, code, verifier = code_login(rp_idp, b, "barbican-code")
    assert rp_idp.exchange_code(code, code_verifier=verifier).status == 200
    s = rp_idp.stats()
    assert {k: s[k] for k in ("authorization", "login", "token_code", "token", "end_session")} \
        == {"authorization": 1, "login": 1, "token_code": 1, "token": 1, "end_session": 0}, s
    assert b.cookie_attrs("127.0.0.1", "_session")["httponly"]
    # same browser, same client: no login form, straight to the callback
    r, code2, verifier2 = code_login(rp_idp, b, "barbican-code")
    assert len(r.hops) == 1 and r.hops[0].status == 303, r.hops
    # same browser, another client (another grant): still no form
    r = b.follow(rp_idp.authorize_url("barbican-implicit", state="s2", nonce="n2"))
    assert r.status == 200 and B.auto_form(r) is not None, r.hops
    assert I.jwt_payload(B.auto_form(r).get("id_token"))["sub"] == "alice"
    s = rp_idp.stats()
    assert (s["authorization"], s["login"], s["token_code"]) == (3, 1, 1), s
    # prompt=login asks again despite the session
    r = b.follow(rp_idp.authorize_url("barbican-code", state="s", nonce="n", prompt="login",
                                      code_challenge=I.pkce_pair()[1]))
    assert r.header("X-Test-IdP-Page") == "login"
    # a fresh browser has no IdP session: the form again
    r = B.Browser().follow(rp_idp.authorize_url("barbican-code", state="s", nonce="n",
                                                code_challenge=I.pkce_pair()[1]))
    assert r.header("X-Test-IdP-Page") == "login"
    rp_idp.reset()
    assert all(rp_idp.stats()[k] == 0 for k in ("authorization", "login", "token_code",
                                                 "end_session", "login_failed"))


def test_rp_end_session_redirects_to_post_logout_uri(rp_idp):
    b = B.Browser()
    _, code, verifier = code_login(rp_idp, b, "barbican-code")
    id_token = rp_idp.exchange_code(code, code_verifier=verifier).json()["id_token"]
    rp_idp.reset()
    # client_id + post_logout_redirect_uri (+ state): one self-submitting form, then 303
    r = b.logout(rp_idp.end_session_url(client_id="barbican-code", state="bye-1",
                                        post_logout_redirect_uri="http://app.test/bye"))
    assert r.refused == "http://app.test/bye?state=bye-1", r.hops
    assert [(h.method, h.status) for h in r.hops] == [("GET", 200), ("POST", 303)]
    assert r.hops[1].url == rp_idp.base + "/session/end/confirm"
    assert b.cookie("127.0.0.1", "_session") is None  # the IdP session is gone
    assert rp_idp.stats()["end_session"] == 1
    # so the next authorization asks for the password again
    r = b.follow(rp_idp.authorize_url("barbican-code", state="s", nonce="n",
                                      code_challenge=I.pkce_pair()[1]))
    assert r.header("X-Test-IdP-Page") == "login"
    # id_token_hint works too; without an IdP session the provider's own auto form comes
    r = b.logout(rp_idp.end_session_url(id_token_hint=id_token,
                                        post_logout_redirect_uri="http://app.test/"))
    assert r.refused == "http://app.test/", r.hops
    # an unregistered post_logout_redirect_uri is an error page, no redirect
    r = b.logout(rp_idp.end_session_url(client_id="barbican-code",
                                        post_logout_redirect_uri="http://evil.test/"))
    assert r.status == 400 and r.refused is None
    # without client_id / id_token_hint the post_logout_redirect_uri is ignored
    r = b.logout(rp_idp.end_session_url(post_logout_redirect_uri="http://app.test/bye"))
    assert r.status == 200 and r.header("X-Test-IdP-Page") == "logged-out", r.hops


def test_rp_id_tokens_follow_key_rotation():
    p = I.start_idp(generations=2)
    try:
        b = B.Browser()
        p.rotate()
        _, code, verifier = code_login(p, b, "barbican-code")
        tok = p.exchange_code(code, code_verifier=verifier).json()["id_token"]
        assert I.jwt_header(tok)["kid"] == "es256-g1"
        assert_id_token(p, tok, "barbican-code", "n-barbican-code")
    finally:
        p.stop()


# --- the browser's own rules ----------------------------------------------------------

def test_browser_cookie_jar_rules():
    j = B.CookieJar()
    now = 1_000_000.0
    j.set_from_header("app.test", "/a/b", "s=1; Secure; HttpOnly; SameSite=None; Max-Age=60",
                      now)
    j.set_from_header("app.test", "/a/b", "p=2", now)                    # default path /a
    j.set_from_header("app.test", "/", "d=3; Domain=.app.test; Path=/", now)
    j.set_from_header("app.test", "/", "x=4; Domain=other.test", now)     # refused
    j.set_from_header("app.test", "/", "e=5; Expires=Thu, 01 Jan 1970 00:00:00 GMT", now)
    names = lambda host, path: sorted(c.name for c in j.matching(host, path, now))  # noqa: E731
    assert names("app.test", "/a/b") == ["d", "p", "s"]   # s and p: default path /a
    assert names("app.test", "/ab") == ["d"] and names("app.test", "/") == ["d"]
    assert names("sub.app.test", "/a") == ["d"]          # Domain: subdomains too
    assert names("other.test", "/") == [] and len(j.refused) == 1
    j.set_from_header("app.test", "/", "d=; Domain=app.test; Path=/; Max-Age=0", now)
    assert names("app.test", "/a") == ["p", "s"]         # Max-Age=0 deleted d
    assert [c.name for c in j.matching("app.test", "/a", now + 61)] == ["p"]  # s expired

    b = B.Browser(hosts={"app.test": ("127.0.0.1", 9)})
    b.jar.set_from_header("app.test", "/", "lax=1; SameSite=Lax")
    b.jar.set_from_header("app.test", "/", "strict=1; SameSite=Strict")
    b.jar.set_from_header("app.test", "/", "none=1; SameSite=None; Secure")
    b.jar.set_from_header("app.test", "/", "dflt=1")
    sent = lambda m, cross: sorted(c.name for c in b._cookies_for("http://app.test/", m, cross))  # noqa: E731,E501
    assert sent("POST", False) == ["dflt", "lax", "none", "strict"]
    assert sent("GET", True) == ["dflt", "lax", "none"]
    assert sent("POST", True) == ["none"]  # e.g. the IdP's form_post to the callback
    a = b.cookie_attrs("app.test", "none")
    assert a["secure"] and a["samesite"] == "None" and not a["httponly"]
    assert b.address("http://app.test/x") == ("127.0.0.1", 9)
    assert b.address("http://app.test:8080/x") is None and b.address("https://app.test/") is None
    assert b.address("http://127.0.0.1:5/") == ("127.0.0.1", 5)
    with pytest.raises(B.UnmappedHost):
        b.get("http://example.com/")


def test_browser_follows_through_a_mapped_host(upstream, rp_idp):
    """A mapped host gets its Host header; redirects to it are followed."""
    b = B.Browser(hosts={"app.test": ("127.0.0.1", upstream.port)})
    r = b.get("http://app.test/x?y=1", headers={"X-T": "1"})
    assert r.status == 200 and r.json()["headers"]["host"] == ["app.test"]
    assert r.json()["path"] == "/x?y=1"
    # follow() from the IdP into the mapped app: the end-session redirect lands on upstream
    b2 = B.Browser(hosts={"app.test": ("127.0.0.1", upstream.port)})
    r = b2.logout(rp_idp.end_session_url(client_id="barbican-code",
                                         post_logout_redirect_uri="http://app.test/bye"))
    assert r.refused is None and r.status == 200 and r.url.startswith("http://app.test/bye")
    assert r.json()["method"] == "GET" and r.hops[-1].method == "GET"


def test_browser_login_form_post_into_a_mapped_host(upstream, rp_idp):
    """login() through the IdP into the app: the form_post is a cross-site POST (Origin =
    the IdP, only SameSite=None cookies go with it)."""
    b = B.Browser(hosts={"app.test": ("127.0.0.1", upstream.port)})
    b.jar.set("app.test", "lax_c", "1", SameSite="Lax")
    b.jar.set("app.test", "none_c", "1", SameSite="None", Secure=True)
    r = b.login(rp_idp.authorize_url("barbican-implicit", state="st", nonce="nn"),
                "bob", "bob-password")
    assert r.refused is None and r.url == I.CALLBACK, r.hops
    echo = r.json()
    assert echo["method"] == "POST" and echo["path"] == "/.barbican/callback"
    assert echo["headers"]["host"] == ["app.test"]
    assert echo["headers"]["origin"] == [rp_idp.base]
    assert echo["headers"]["content-type"] == ["application/x-www-form-urlencoded"]
    assert echo["headers"]["cookie"] == ["none_c=1"]
    assert echo["body_len"] > 300  # id_token + state
    assert [h.method for h in r.hops] == ["GET", "GET", "POST", "GET", "POST"], r.hops
    assert r.hops[-1].cookies_sent == ["none_c"]
