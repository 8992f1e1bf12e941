"""The revocation window of the forward-auth decision cache, measured through real Envoy
(`--concurrency 2`: one VM per worker, the shared cache in Envoy shared data) against the
outpost test server:

- a session ended at the IdP (the outpost forgets it; not Barbican's sign-out path) keeps
  access for at most `ttl_s` after the decision was cached, while the IdP answers;
- while the IdP is unreachable (5xx) the cached allow is served up to `stale_grace_s` past
  `ttl_s`, and no longer; once the IdP answers again the revocation shows at once;
- a sign-out through Barbican on one worker drops the shared entry and that worker's copy;
  the other worker trusts its own copy at most `local_ttl_s` more.

Short settings keep it bounded (about 10 s): ttl_s 2, stale_grace_s 2, local_ttl_s 1 (the
sign-out case runs on a second Envoy with ttl_s 30 so that only `local_ttl_s` can end the
window). Requests go on fresh connections every 50 ms, which Envoy spreads over its workers.
TOL covers one polling step plus scheduling on a loaded 2-core machine. README documents
the trade-off next to `session.cache.ttl_s`.
"""

from __future__ import annotations

import time

import pytest

import harness as H

TTL_S, GRACE_S, LOCAL_TTL_S = 2, 2, 1
TOL = 0.35
STEP = 0.05


def start(outpost, upstream, wasm, ttl_s: int, grace_s: int) -> H.EnvoyProc:
    cfg = H.default_plugin_config(ttl_s=ttl_s, stale_grace_s=grace_s, local_ttl_s=LOCAL_TTL_S,
                                  negative_ttl_s=1)
    return H.start_envoy(cfg, wasm, clusters={"outpost": outpost.port,
                                              "upstream": upstream.port}, concurrency=2)


@pytest.fixture(scope="module")
def envoy(wasm, outpost, upstream):
    env = start(outpost, upstream, wasm, TTL_S, GRACE_S)
    try:
        yield env
    finally:
        env.stop()


def poll(env: H.EnvoyProc, cookie: str, until: float, stop_on=lambda st: False):
    """(request start time, status) of requests on fresh connections, every STEP until the
    monotonic time `until` or a status `stop_on` accepts."""
    seen = []
    while time.monotonic() < until:
        t = time.monotonic()
        st = H.get(env.port, "/dash", headers=H.browser_headers(cookie), timeout=5).status
        seen.append((t, st))
        if stop_on(st):
            break
        time.sleep(STEP)
    return seen


def session(outpost, user: str) -> tuple[str, str]:
    s = outpost.session(user, ["users"])
    return f"{s['cookie_name']}={s['cookie_value']}", s["cookie_value"]


def test_revoked_at_the_idp_keeps_access_at_most_ttl(envoy, outpost):
    cookie, value = session(outpost, "rev-ttl")
    r = H.get(envoy.port, "/dash", headers=H.browser_headers(cookie))
    cached = time.monotonic()   # the allow was cached before this
    assert r.status == 200, r
    assert outpost.expire(cookie_value=value)["expired"] == 1
    revoked = time.monotonic()
    seen = poll(envoy, cookie, cached + TTL_S + 2, stop_on=lambda st: st != 200)
    ok = [t for t, st in seen if st == 200]
    assert seen[-1][1] == 302, seen[-1]
    # The window exists (the cache really answered after the revocation) and is bounded.
    assert ok and ok[-1] - revoked > 0, seen
    assert ok[-1] - cached < TTL_S + TOL, (ok[-1] - cached, TTL_S)
    assert seen[-1][0] - cached < TTL_S + 2 * TOL, "the revocation was seen late"
    print(f"revoked at the IdP: last 200 {ok[-1] - cached:.2f}s after caching "
          f"(ttl_s {TTL_S}), {ok[-1] - revoked:.2f}s after the revocation")


def test_stale_grace_only_while_the_idp_is_unreachable(envoy, outpost):
    cookie, value = session(outpost, "rev-grace")
    assert H.get(envoy.port, "/dash", headers=H.browser_headers(cookie)).status == 200
    cached = time.monotonic()
    outpost.expire(cookie_value=value)
    outpost.set_mode("500")
    try:
        seen = poll(envoy, cookie, cached + TTL_S + GRACE_S + 2, stop_on=lambda st: st != 200)
    finally:
        outpost.set_mode("normal")
    ok = [t for t, st in seen if st == 200]
    assert seen[-1][1] == 503, seen[-1]
    assert ok[-1] - cached > TTL_S + TOL, "the grace was not used while the IdP was down"
    assert ok[-1] - cached < TTL_S + GRACE_S + TOL, (ok[-1] - cached, TTL_S + GRACE_S)
    print(f"IdP down: last stale 200 {ok[-1] - cached:.2f}s after caching "
          f"(ttl_s + stale_grace_s = {TTL_S + GRACE_S})")
    # The IdP answers again: the revocation is seen at once, nothing stale is served.
    r = H.get(envoy.port, "/dash", headers=H.browser_headers(cookie))
    assert r.status == 302 and not r.from_upstream, r


def test_sign_out_on_one_worker_reaches_the_others_within_local_ttl(wasm, outpost, upstream):
    env = start(outpost, upstream, wasm, 30, 0)
    try:
        cookie, _ = session(outpost, "rev-signout")
        before = outpost.auth_calls()
        # Fresh connections land on both workers: each keeps its own copy.
        for _ in range(12):
            assert H.get(env.port, "/dash", headers=H.browser_headers(cookie)).status == 200
        assert outpost.auth_calls() - before == 1, "the decision was not shared"
        r = H.get(env.port, "/outpost.goauthentik.io/sign_out",
                  headers=H.browser_headers(cookie))
        signed_out = time.monotonic()
        assert r.status == 302, r
        seen = poll(env, cookie, signed_out + LOCAL_TTL_S + 0.8)
        late = [(round(t - signed_out, 2), st) for t, st in seen
                if st == 200 and t - signed_out >= LOCAL_TTL_S + TOL]
        assert not late, late
        tail = [st for t, st in seen if t - signed_out >= LOCAL_TTL_S + TOL]
        assert tail and all(st == 302 for st in tail), tail
        after = [round(t - signed_out, 2) for t, st in seen if st == 200]
        print(f"sign-out: {len(after)} of {len(seen)} requests still 200 afterwards (the "
              f"other worker's copy), the last {max(after, default=0):.2f}s after "
              f"(local_ttl_s {LOCAL_TTL_S})")
    finally:
        env.stop()
