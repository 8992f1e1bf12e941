"""Baseline without Barbican: authentik's documented Envoy setup (ext_authz against the
outpost's /auth/envoy prefix) and a router-only Envoy. These need no wasm. They pin down the
measurements in DESIGN.md §3 that Barbican answers, and they prove the harness works."""

from __future__ import annotations

import pytest

import harness as H


@pytest.fixture(scope="module")
def ext_authz(outpost, upstream):
    env = H.start_envoy(filter="ext_authz",
                        clusters={"outpost": outpost.port, "upstream": upstream.port})
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="module")
def plain(outpost, upstream):
    env = H.start_envoy(filter="none", clusters={"outpost": outpost.port, "upstream": upstream.port})
    try:
        yield env
    finally:
        env.stop()


def test_router_only_envoy_serves_everything(plain):
    r = H.get(plain.port, "/anything")
    assert r.status == 200 and r.upstream["path"] == "/anything"
    assert H.get(plain.port, "/outpost.goauthentik.io/ping").status == 204


def test_ext_authz_redirects_browsers_and_relays_set_cookie(ext_authz, outpost):
    r = H.get(ext_authz.port, "/app", headers=H.browser_headers())
    assert r.status == 302
    assert "/application/o/authorize/" in r.header("Location")
    assert r.header("Set-Cookie", ) is not None


def test_ext_authz_allows_a_session_and_sets_identity(ext_authz, outpost):
    c = outpost.cookie("hank", ["users"])
    r = H.get(ext_authz.port, "/app", headers=H.browser_headers(c))
    assert r.status == 200
    assert r.upstream_header("x-authentik-username") == ["hank"]


def test_ext_authz_calls_the_outpost_on_every_request(ext_authz, outpost):
    c = outpost.cookie("ivan", ["users"])
    before = outpost.auth_calls()
    for _ in range(5):
        assert H.get(ext_authz.port, "/app", headers=H.browser_headers(c)).status == 200
    assert outpost.auth_calls() - before == 5


def test_ext_authz_passes_spoofed_identity_on_skip_paths(ext_authz):
    """DESIGN.md §3 (measured): on skip_path_regex paths the outpost answers 200 without
    identity headers, so nothing overwrites the client's X-authentik-*."""
    r = H.get(ext_authz.port, "/api/items", headers=H.SPOOFED_HEADERS)
    assert r.status == 200
    assert r.upstream_header("x-authentik-username") == [H.SPOOF_VALUE]
