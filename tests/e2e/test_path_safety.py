"""Path confusion must never turn the `/api/` bypass into a way around authentication.

Two Envoys: the hardened HCM of the examples (normalize_path, merge_slashes, escaped slashes
rejected) and a raw one (all off, as users' and Istio's configs may be), where only
Barbican's own normalization stands between `/api/../admin` and the backend.
Acceptable answers: 400, or what the protected route would answer (redirect / 401 / 403, or
an allow carrying the session's identity) — never an unauthenticated upstream response."""

from __future__ import annotations

import pytest

import harness as H

# All of these name /admin/secret (or try to) through the /api/ bypass prefix.
VECTORS = [
    "/api/../admin/secret",
    "/api/%2e%2e/admin/secret",
    "/api/%2E%2e/admin/secret",
    "/api/%2e%2E/admin/secret",
    "/api/./../admin/secret",
    "//api/..//admin/secret",
    "/api//../admin/secret",
    "/api/..;/admin/secret",
    "/api/%2e%2e;/admin/secret",
    "/api%2f..%2fadmin/secret",
    "/api%2F..%2Fadmin/secret",
    "/api/..%2fadmin/secret",
    "/api/..%5cadmin/secret",
    "/api/%2e%2e%2fadmin/secret",
    "/api/x/../../admin/secret",
]

# Vectors that resolve to /admin/secret once normalized (RFC 3986 dot segments, merged
# slashes, decoded unreserved and slash escapes): a signed-in user outside `admins` must get
# 400 or 403 — never the admin page.
RESOLVE_TO_ADMIN = [
    "/api/../admin/secret",
    "/api/%2e%2e/admin/secret",
    "/api/%2E%2e/admin/secret",
    "/api/./../admin/secret",
    "//api/..//admin/secret",
    "/api/x/../../admin/secret",
    "/api%2f..%2fadmin/secret",
]


@pytest.fixture(scope="module", params=["hardened", "raw"])
def envoy(request, wasm, outpost, upstream):
    env = H.start_envoy(H.default_plugin_config(), wasm,
                        clusters={"outpost": outpost.port, "upstream": upstream.port},
                        hardened=request.param == "hardened")
    try:
        yield env
    finally:
        env.stop()


def test_controls(envoy, outpost):
    """The bypass really bypasses and the admin route really needs `admins`."""
    r = H.get(envoy.port, "/api/ok", headers=H.browser_headers())
    assert r.status == 200 and r.from_upstream, r
    alice = outpost.cookie("alice", ["admins", "users"])
    r = H.get(envoy.port, "/admin/secret", headers=H.browser_headers(alice))
    assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"], r
    bob = outpost.cookie("bob", ["users"])
    assert H.get(envoy.port, "/admin/secret", headers=H.browser_headers(bob)).status == 403


def unambiguous_api_path(path: str) -> bool:
    """A path every backend reads as under /api/ (no dot segments, no escapes of dots or
    slashes, no empty segments, no path parameters)."""
    p = path.split("?", 1)[0]
    low = p.lower()
    return (p.startswith("/api/") and "//" not in p and ";" not in p and "\\" not in p
            and "%2e" not in low and "%2f" not in low and "%5c" not in low
            and not any(seg in (".", "..") for seg in p.split("/")))


@pytest.mark.parametrize("target", VECTORS)
def test_no_unauthenticated_upstream_response(envoy, upstream, target):
    """The hardened Envoy may itself rewrite a vector into a plain /api/ path (e.g.
    `/api//../admin` -> `/api/admin`): serving *that* through the bypass is fine, because
    the backend sees the same path Barbican matched."""
    for headers in (H.browser_headers(), [("Accept", "application/json")]):
        r = H.get(envoy.port, target, headers=headers)
        if r.from_upstream:
            assert unambiguous_api_path(r.upstream["path"]), \
                f"{target} reached the upstream as {r.upstream['path']!r} without auth"
            assert not r.upstream_header("x-authentik-username")
        else:
            assert r.status in (400, 401, 302, 403), (target, r)


@pytest.mark.parametrize("target", RESOLVE_TO_ADMIN)
def test_non_admin_session_cannot_reach_admin(envoy, outpost, target):
    bob = outpost.cookie("bob", ["users"])
    r = H.get(envoy.port, target, headers=H.browser_headers(bob))
    assert r.status in (400, 403), (target, r)


@pytest.mark.parametrize("target", ["/api/..;/admin/secret", "/api/%2e%2e;/admin/secret",
                                    "/api/..%5cadmin/secret", "/api/..%2fadmin/secret"])
def test_session_allows_only_with_identity(envoy, outpost, target):
    """Where the answer may be an allow, it is the protected route's allow: with identity."""
    bob = outpost.cookie("bob", ["users"])
    r = H.get(envoy.port, target, headers=H.browser_headers(bob, H.SPOOFED_HEADERS))
    if r.from_upstream:
        assert r.upstream_header("x-authentik-username") == ["bob"], (target, r)
        assert not H.spoofed_leaks(r.upstream["headers"])
    else:
        assert r.status in (400, 403), (target, r)
