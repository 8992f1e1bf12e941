"""The outpost fails (5xx, hangs past the callout timeout, drops the connection, dies):
a recently valid allow is served stale within `stale_grace_s`, then 503 with Retry-After;
nothing without a cached allow ever reaches the upstream.

Cache here: ttl_s 1, stale_grace_s 3, negative_ttl_s 1; callout timeout 1000 ms.
Timeline per case (t0 = first, fresh allow):  t0+1.4 s stale allow;  t0+5.6 s -> 503."""

from __future__ import annotations

import time

import pytest

import harness as H

TTL, GRACE = 1, 3
STALE_AT = TTL + 0.4
EXPIRED_AT = TTL + GRACE + 1.6


def failure_config() -> dict:
    cfg = H.default_plugin_config(ttl_s=TTL, stale_grace_s=GRACE, negative_ttl_s=1)
    cfg["session"]["forward_auth"]["timeout_ms"] = 1000
    return cfg


@pytest.fixture(scope="module")
def envoy(wasm, outpost, upstream):
    env = H.start_envoy(failure_config(), wasm,
                        clusters={"outpost": outpost.port, "upstream": upstream.port})
    try:
        yield env
    finally:
        env.stop()


def sleep_until(t: float) -> None:
    d = t - time.monotonic()
    if d > 0:
        time.sleep(min(d, 10.0))


def stale_then_503(env, cookie: str, break_outpost, t0: float) -> None:
    break_outpost()
    sleep_until(t0 + STALE_AT)
    r = H.get(env.port, "/dash", headers=H.browser_headers(cookie), timeout=10)
    assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"], \
        f"stale allow not served within grace: {r}"
    assert r.elapsed < 4.0, f"stale answer took {r.elapsed:.1f}s"
    sleep_until(t0 + EXPIRED_AT)
    r = H.get(env.port, "/dash", headers=H.browser_headers(cookie), timeout=10)
    assert r.status == 503, f"served past stale_grace_s: {r}"
    assert r.header("Retry-After"), r
    assert not r.from_upstream
    assert r.elapsed < 4.0, f"503 took {r.elapsed:.1f}s"


@pytest.mark.parametrize("mode", ["500", "hang", "close"])
def test_cached_allow_survives_outage_within_grace(envoy, outpost, mode):
    cookie = outpost.cookie("alice", ["admins", "users"])
    try:
        t0 = time.monotonic()
        r = H.get(envoy.port, "/dash", headers=H.browser_headers(cookie))
        assert r.status == 200, r
        stale_then_503(envoy, cookie, lambda: outpost.set_mode(mode, 20 if mode == "hang" else None), t0)
    finally:
        outpost.set_mode("normal")


def test_no_cached_allow_and_outpost_down_fails_closed(envoy, outpost, upstream):
    cookie = outpost.cookie("alice", ["admins", "users"])
    n = upstream.requests_seen()
    try:
        outpost.set_mode("500")
        for headers in (H.browser_headers(cookie), H.browser_headers(),
                        [("Accept", "application/json")]):
            r = H.get(envoy.port, "/dash", headers=headers, timeout=10)
            assert not r.from_upstream and r.status >= 400, r
        outpost.set_mode("hang", 20)
        r = H.get(envoy.port, "/dash", headers=H.browser_headers(cookie), timeout=10)
        assert not r.from_upstream and r.status >= 500, r
        assert r.elapsed < 4.0, f"callout timeout not honoured: {r.elapsed:.1f}s"
    finally:
        outpost.set_mode("normal")
    assert upstream.requests_seen() == n
    # and it recovers (after any negative entry, negative_ttl_s 1, is gone)
    time.sleep(1.2)
    r = H.get(envoy.port, "/dash", headers=H.browser_headers(cookie))
    assert r.status == 200, r


def test_bypass_routes_keep_working_while_outpost_is_down(envoy, outpost):
    try:
        outpost.set_mode("500")
        r = H.get(envoy.port, "/public/x")
        assert r.status == 200 and r.from_upstream, r
    finally:
        outpost.set_mode("normal")


def test_outpost_process_killed(wasm, upstream):
    op = H.start_outpost()
    env = None
    try:
        env = H.start_envoy(failure_config(), wasm,
                            clusters={"outpost": op.port, "upstream": upstream.port})
        cookie = op.cookie("alice", ["admins", "users"])
        t0 = time.monotonic()
        r = H.get(env.port, "/dash", headers=H.browser_headers(cookie))
        assert r.status == 200, r
        stale_then_503(env, cookie, op.kill, t0)
        r = H.get(env.port, "/dash", headers=H.browser_headers(), timeout=10)
        assert not r.from_upstream and r.status >= 500, r
    finally:
        if env:
            env.stop()
        op.stop()
