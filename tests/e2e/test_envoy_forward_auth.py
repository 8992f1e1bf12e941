"""Barbican in Envoy against the authentik outpost stand-in: the protected / bypass / api /
deny policies, the decision cache, login redirects, identity headers, websockets, sign-out
and metrics. One Envoy for the module (plugin config: harness.DEFAULT_PLUGIN_CONFIG)."""

from __future__ import annotations

import time
import urllib.parse

import harness as H

HTML = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")


def calls(outpost) -> int:
    return outpost.auth_calls()


def test_valid_session_reaches_upstream_with_identity_headers(barbican, outpost):
    s = outpost.session("alice", ["admins", "users"])
    cookie = f"{s['cookie_name']}={s['cookie_value']}"
    r = H.get(barbican.port, "/dash", headers=H.browser_headers(cookie))
    assert r.status == 200, r
    up = r.upstream
    assert up["path"] == "/dash"
    assert r.upstream_header("x-authentik-username") == ["alice"]
    assert r.upstream_header("x-authentik-groups") == ["admins|users"]
    assert r.upstream_header("x-authentik-email") == ["alice@example.test"]
    assert r.upstream_header("x-authentik-uid") == [s["sub"]]
    assert r.upstream_header("x-authentik-jwt") == [s["jwt"]]


def test_callout_carries_original_request(barbican, outpost):
    s = outpost.session("alice", ["admins", "users"])
    cookie = f"{s['cookie_name']}={s['cookie_value']}"
    r = H.get(barbican.port, "/dash/board?x=1&y=two",
              headers=[HTML, ("Cookie", cookie), ("User-Agent", "ua-callout-test")])
    assert r.status == 200, r
    last = outpost.last_auth()
    assert last["endpoint"] == "auth_envoy"
    assert last["path"] == "/outpost.goauthentik.io/auth/envoy/dash/board?x=1&y=two"
    assert last["host"] == "app.test"
    assert last["method"] == "GET"
    hdrs = last["headers"]
    assert f"{s['cookie_name']}={H.fingerprint(s['cookie_value'])}" in hdrs["cookie"][0]
    assert hdrs.get("user-agent") == ["ua-callout-test"]
    assert hdrs.get("x-forwarded-host") == ["app.test"]
    assert hdrs.get("x-forwarded-uri") == ["/dash/board?x=1&y=two"]
    assert hdrs.get("x-forwarded-proto") == ["http"]
    assert hdrs.get("x-forwarded-method") == ["GET"]


def test_one_cookie_many_requests_one_outpost_call(barbican, outpost):
    cookie = outpost.cookie("alice", ["admins", "users"])
    before = calls(outpost)
    with H.KeepAliveClient(barbican.port) as c:
        for i in range(25):
            r = c.request(f"/page/{i}", headers=H.browser_headers(cookie))
            assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"]
    for i in range(5):  # fresh connections too
        assert H.get(barbican.port, "/other", headers=H.browser_headers(cookie)).status == 200
    assert calls(outpost) - before == 1


def test_cache_key_includes_host(barbican, outpost):
    cookie = outpost.cookie("alice", ["admins", "users"])
    before = calls(outpost)
    for _ in range(3):
        for host in ("a.lan", "b.lan"):
            r = H.get(barbican.port, "/x", host=host, headers=H.browser_headers(cookie))
            assert r.status == 200, r
    assert calls(outpost) - before == 2


def test_browser_without_session_gets_the_outpost_redirect(barbican, outpost, upstream):
    seen = upstream.requests_seen()
    r = H.get(barbican.port, "/dash?tab=2", headers=H.browser_headers())
    assert r.status == 302, r
    loc = r.header("Location")
    assert loc.startswith(f"http://127.0.0.1:{outpost.port}/application/o/authorize/?"), loc
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert q["redirect_uri"] == [
        "http://app.test/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"]
    set_cookies = r.header_all("Set-Cookie")
    assert any(c.startswith(outpost.stats()["cookie_name"] + "=") for c in set_cookies), r
    assert upstream.requests_seen() == seen


def test_head_from_a_browser_is_redirected(barbican):
    r = H.request(barbican.port, "/dash", "HEAD", headers=H.browser_headers())
    assert r.status == 302, r


def test_non_browser_requests_get_401_not_302(barbican, upstream):
    seen = upstream.requests_seen()
    cases = [
        ("GET", [HTML, ("X-Requested-With", "XMLHttpRequest")]),
        ("GET", [("Accept", "application/json")]),
        ("POST", [HTML]),
        ("DELETE", [HTML]),
    ]
    for method, headers in cases:
        r = H.request(barbican.port, "/dash", method, headers=headers,
                      body=b"{}" if method == "POST" else None)
        assert r.status == 401, (method, headers, r)
        assert r.header("Location") is None, (method, headers, r)
    assert upstream.requests_seen() == seen


def test_full_browser_login_through_envoy(barbican, outpost):
    # 1. protected page, no session: redirect to authentik, pre-login session cookie
    r = H.get(barbican.port, "/welcome?from=login", headers=H.browser_headers())
    assert r.status == 302, r
    pre = H.cookie_from_set_cookie(r.header("Set-Cookie"))
    auth = urllib.parse.urlsplit(r.header("Location"))
    # 2. authentik (test IdP, auto-approve) sends the browser to the outpost callback
    r = H.get(outpost.port, auth.path + "?" + auth.query, host=auth.netloc)
    assert r.status == 302, r
    cb = urllib.parse.urlsplit(r.header("Location"))
    assert cb.netloc == "app.test" and cb.path == "/outpost.goauthentik.io/callback"
    # 3. the callback reaches the outpost through Envoy (bypass route), sets the session
    r = H.get(barbican.port, cb.path + "?" + cb.query, host=cb.netloc,
              headers=H.browser_headers(pre))
    assert r.status == 302, r
    assert r.header("Location") == "http://app.test/welcome?from=login"
    session = H.cookie_from_set_cookie(r.header("Set-Cookie"))
    # 4. back to the page: allowed, identity from authentik
    r = H.get(barbican.port, "/welcome?from=login", headers=H.browser_headers(session))
    assert r.status == 200, r
    assert r.upstream_header("x-authentik-username") == ["alice"]


def test_bypass_routes_make_no_outpost_call(barbican, outpost):
    before = calls(outpost)
    for path in ("/public/logo.png", "/api/v3/items?limit=5", "/public/"):
        r = H.get(barbican.port, path, headers=H.browser_headers())
        assert r.status == 200 and r.upstream["path"] == path, r
    assert calls(outpost) == before


def test_outpost_paths_reach_the_outpost(barbican, outpost):
    r = H.get(barbican.port, "/outpost.goauthentik.io/ping")
    assert r.status == 204, r


def test_deny_route_is_403_even_with_a_session(barbican, outpost, upstream):
    cookie = outpost.cookie("alice", ["admins", "users"])
    seen = upstream.requests_seen()
    for headers in (H.browser_headers(cookie), H.browser_headers()):
        r = H.get(barbican.port, "/blocked/x", headers=headers)
        assert r.status == 403, r
    assert upstream.requests_seen() == seen


def test_api_route_without_credentials_is_401_bearer(barbican, upstream):
    seen = upstream.requests_seen()
    for headers in (H.browser_headers(), [("Accept", "application/json")]):
        r = H.get(barbican.port, "/token/list", headers=headers)
        assert r.status == 401, r
        assert (r.header("WWW-Authenticate") or "").lower().startswith("bearer"), r
        assert r.header("Location") is None
    assert upstream.requests_seen() == seen


def test_require_groups(barbican, outpost):
    bob = outpost.cookie("bob", ["users"])
    r = H.get(barbican.port, "/admin/settings", headers=H.browser_headers(bob))
    assert r.status == 403, r
    alice = outpost.cookie("alice", ["admins", "users"])
    r = H.get(barbican.port, "/admin/settings", headers=H.browser_headers(alice))
    assert r.status == 200, r
    assert r.upstream_header("x-authentik-username") == ["alice"]


def test_cors_preflight_passes_without_outpost_call(barbican, outpost):
    before = calls(outpost)
    r = H.request(barbican.port, "/cors/data", "OPTIONS", headers=[
        ("Origin", "https://spa.example"), ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type")])
    assert r.status == 200 and r.upstream["method"] == "OPTIONS", r
    assert calls(outpost) == before
    # an OPTIONS that is not a preflight is not waved through
    r = H.request(barbican.port, "/cors/data", "OPTIONS", headers=[("Origin", "https://spa.example")])
    assert not r.from_upstream and r.status in (401, 403), r
    # and preflight passing is per route
    r = H.request(barbican.port, "/dash", "OPTIONS", headers=[
        ("Origin", "https://spa.example"), ("Access-Control-Request-Method", "POST")])
    assert not r.from_upstream, r


def test_spoofed_identity_headers_never_reach_upstream(barbican, outpost):
    """Envoy drops the underscore spellings itself here (DROP_HEADER); the variant without
    that is test_underscore_spellings_stripped_by_barbican_itself."""
    cookie = outpost.cookie("alice", ["admins", "users"])
    spoof = H.SPOOFED_HEADERS + H.SPOOFED_UNDERSCORE_HEADERS
    cases = [
        ("/public/x", spoof),                        # bypass
        ("/api/x", spoof),                           # bypass (outpost skip path)
        ("/dash", H.browser_headers(cookie, spoof)),  # protected, allowed
        ("/cors/x", spoof + [("Origin", "https://o.example"),
                             ("Access-Control-Request-Method", "GET")]),
    ]
    for path, headers in cases:
        method = "OPTIONS" if path.startswith("/cors/") else "GET"
        r = H.request(barbican.port, path, method, headers=headers)
        assert r.status == 200, (path, r)
        leaks = H.spoofed_leaks(r.upstream["headers"])
        assert not leaks, (path, leaks)
    r = H.get(barbican.port, "/dash", headers=H.browser_headers(cookie, H.SPOOFED_HEADERS))
    assert r.upstream_header("x-authentik-username") == ["alice"]
    assert r.upstream_header("x-authentik-groups") == ["admins|users"]


def test_underscore_spellings_stripped_by_barbican_itself(barbican_underscores, outpost, upstream):
    """Envoy here ALLOWs header names with underscores: only Barbican strips them."""
    env = barbican_underscores
    cookie = outpost.cookie("alice", ["admins", "users"])
    spoof = H.SPOOFED_HEADERS + H.SPOOFED_UNDERSCORE_HEADERS
    # control: this Envoy really forwards underscore names (to a bypass path with a
    # harmless name), otherwise the test below proves nothing
    r = H.get(env.port, "/public/control", headers=[("x_harmless_name", "1")])
    assert r.upstream_header("x_harmless_name") == ["1"], r
    for path, headers in (("/public/x", spoof), ("/api/x", spoof),
                          ("/dash", H.browser_headers(cookie, spoof))):
        r = H.get(env.port, path, headers=headers)
        assert r.status == 200, (path, r)
        leaks = H.spoofed_leaks(r.upstream["headers"])
        assert not leaks, (path, leaks)


def test_websocket_upgrade_needs_a_session(barbican, outpost):
    cookie = outpost.cookie("alice", ["admins", "users"])
    seen = H.websocket_seen(barbican.port, "/ws/feed",
                            [("Cookie", cookie), ("Origin", "http://app.test")]
                            + H.SPOOFED_HEADERS)
    assert seen.get("x-authentik-username") == ["alice"]
    assert not H.spoofed_leaks(seen)
    for headers in ([("Origin", "http://app.test")],
                    [("Origin", "http://app.test"), HTML]):
        resp, ws = H.WebSocket.connect(barbican.port, "/ws/feed", headers=headers)
        assert ws is None and resp.status in (302, 401), resp


def test_sign_out_drops_the_cached_decision(barbican, outpost):
    s = outpost.session("carol", ["users"])
    cookie = f"{s['cookie_name']}={s['cookie_value']}"
    before = calls(outpost)
    for _ in range(3):
        assert H.get(barbican.port, "/dash", headers=H.browser_headers(cookie)).status == 200
    assert calls(outpost) - before == 1
    r = H.get(barbican.port, "/outpost.goauthentik.io/sign_out", headers=H.browser_headers(cookie))
    assert r.status == 302 and "/end-session/" in (r.header("Location") or ""), r
    before = calls(outpost)
    r = H.get(barbican.port, "/dash", headers=H.browser_headers(cookie))
    assert calls(outpost) - before == 1, "the cached allow survived sign_out"
    assert r.status in (302, 401) and not r.from_upstream, r


def test_metrics_are_exported(barbican, outpost):
    cookie = outpost.cookie("alice", ["admins", "users"])
    for _ in range(3):
        H.get(barbican.port, "/metrics-probe", headers=H.browser_headers(cookie))
    H.get(barbican.port, "/public/x")
    deadline = time.monotonic() + 5
    while True:  # stats are flushed from workers periodically
        names = [n for n in barbican.stats() if "barbican" in n]
        if any("cache" in n for n in names) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert names, "no stat named *barbican*"
    assert any("cache" in n for n in names), names
    assert any("request" in n or "callout" in n for n in names), names
    stats = barbican.stats()
    assert any(v > 0 for n, v in stats.items() if "barbican" in n and "cache" in n), \
        {n: v for n, v in stats.items() if "barbican" in n}


def test_allow_with_set_cookie_is_relayed_and_not_cached(barbican, outpost):
    """authentik answers a first Bearer/Basic check with 200 *and* Set-Cookie (auth.go
    saveAndCacheClaims saves a session). DESIGN.md §2: relay it, never cache it."""
    s = outpost.session("dave", ["users"])
    h = [("Accept", "application/json"), ("Authorization", "Bearer " + s["bearer_token"])]
    before = calls(outpost)
    r1 = H.get(barbican.port, "/dash", headers=h)
    assert r1.status == 200 and r1.upstream_header("x-authentik-username") == ["dave"], r1
    assert any(c.startswith("authentik_proxy_") for c in r1.header_all("Set-Cookie")), r1
    assert calls(outpost) - before == 1
    assert outpost.last_auth()["set_cookie"] is True
    # the outpost now answers from its 60 s header cache, without Set-Cookie: cacheable
    r2 = H.get(barbican.port, "/dash", headers=h)
    assert r2.status == 200 and calls(outpost) - before == 2, "a Set-Cookie answer was cached"
    for _ in range(3):
        assert H.get(barbican.port, "/dash", headers=h).status == 200
    assert calls(outpost) - before == 2


def test_cache_is_shared_across_worker_threads(wasm, outpost, upstream):
    """--concurrency 2: one VM per worker; the decision cache lives in shared data."""
    env = H.start_envoy(H.default_plugin_config(), wasm,
                        clusters={"outpost": outpost.port, "upstream": upstream.port},
                        concurrency=2)
    try:
        cookie = outpost.cookie("alice", ["admins", "users"])
        before = calls(outpost)
        for _ in range(20):  # fresh connections: Envoy spreads them over both workers
            r = H.get(env.port, "/spread", headers=H.browser_headers(cookie))
            assert r.status == 200, r
        assert calls(outpost) - before == 1
    finally:
        env.stop()


def test_forward_headers_sends_only_the_named_identity_headers(wasm, outpost, upstream):
    """`forward_headers`: the upstream gets only the named headers (a name and a prefix);
    the rest of Authentik's family is neither forwarded nor accepted from the client, and
    `require_groups` still reads the groups the outpost answered."""
    cfg = H.default_plugin_config()
    cfg["forward_headers"] = ["X-authentik-username", "x-authentik-meta-*"]
    env = H.start_envoy(cfg, wasm, clusters={"outpost": outpost.port, "upstream": upstream.port})
    try:
        alice = outpost.cookie("alice", ["admins", "users"])
        for _ in range(2):  # the answer, then the cached decision
            r = H.get(env.port, "/dash", headers=H.browser_headers(alice, H.SPOOFED_HEADERS))
            assert r.status == 200, r
            sent = {n.lower() for n in r.upstream["headers"] if n.lower().startswith("x-authentik-")}
            assert r.upstream_header("x-authentik-username") == ["alice"]
            assert sent and all(n == "x-authentik-username" or n.startswith("x-authentik-meta-")
                                for n in sent), sent
            assert not H.spoofed_leaks(r.upstream["headers"])
        assert H.get(env.port, "/admin/x", headers=H.browser_headers(alice)).status == 200
        bob = outpost.cookie("bob", ["users"])
        r = H.get(env.port, "/admin/x", headers=H.browser_headers(bob))
        assert r.status == 403 and not r.from_upstream, r
    finally:
        env.stop()
