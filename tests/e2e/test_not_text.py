"""Header values that are not UTF-8, through real Envoy and real Traefik, on every route kind.

HTTP lets a field value carry any byte >= 0x80 (RFC 9110 §5.5, obs-text) and both proxies pass
such bytes on. The proxy-wasm SDK's `get_map` unwrapped them into `String`: one `Cookie: \\xff`
trapped the VM and every later request on that worker was answered 503. The rule now
(`src/text.rs`): a value the engine reads (Cookie, Authorization, Host, the path, ...) that is
not UTF-8 is refused with 400 on every route; any other value is ignored by the engine and
reaches the upstream as sent; identity headers are stripped whatever their bytes.

Requests are written byte-exact on a raw socket (`harness.request` encodes latin-1, so "\\xff"
is the byte 0xff). After every case the same worker must still answer normally: Envoy runs
one worker, and a trap would show as a 503 (Envoy) or a 500 with a wasm stack (Traefik).
"""

from __future__ import annotations

import pytest

from two_hosts import PATHS, host, token  # noqa: F401  (host: the fixture)


READ = [
    ("cookie", [("Cookie", "session=a\xffb")]),
    ("authorization", [("Authorization", "Bearer ab\xff.cd")]),
    ("authorization-latin1", [("Authorization", "Basic caf\xe9")]),
    ("origin", [("Origin", "https://\xe9vil.test")]),
    ("accept", [("Accept", "text/html\xff")]),
]


@pytest.mark.parametrize("kind", list(PATHS))
@pytest.mark.parametrize("case", [c[0] for c in READ])
def test_a_value_the_engine_reads_is_refused_400(host, kind, case):
    headers = dict(READ)[case]
    r = host.get(PATHS[kind], headers)
    assert r.status == 400 and not r.from_upstream, (host.name, kind, case, r)
    assert b"stack" not in r.body.lower()
    host.still_serves()


@pytest.mark.parametrize("kind", list(PATHS))
def test_a_path_that_is_not_text_is_refused_or_decided_as_encoded(host, kind):
    """Envoy hands the raw bytes over and they are refused (400). Go's server, under Traefik,
    percent-encodes them (`/caf%E9`) before the plugin sees the URI: then the answer is the
    one for that encoded path, which is also what the backend receives. Never a trap."""
    r = host.get(PATHS[kind] + "/caf\xe9")
    if host.name == "envoy":
        assert r.status == 400 and not r.from_upstream, (host.name, kind, r)
    else:
        same = host.get(PATHS[kind] + "/caf%E9")
        assert (r.status, r.from_upstream) == (same.status, same.from_upstream), (kind, r, same)
        assert r.status < 500, r
    host.still_serves()


def test_other_values_are_ignored_and_reach_the_upstream(host):
    odd = [("User-Agent", "caf\xe9/1.0"), ("X-Note", "\xff\xfe")]
    r = host.get(PATHS["bypass"], odd)
    assert r.status == 200 and r.from_upstream, r
    assert r.upstream_header("x-note"), r
    r = host.get(PATHS["api"], odd + [("Authorization", f"Bearer {token()}")])
    assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"], r
    r = host.get(PATHS["deny"], odd)
    assert r.status == 403, r
    r = host.get(PATHS["protected"], odd + [("Accept", "application/json")])
    assert r.status in (401, 403) and not r.from_upstream, r
    host.still_serves()


@pytest.mark.parametrize("kind", ["bypass", "api"])
def test_forged_identity_with_odd_bytes_is_stripped(host, kind):
    forged = [("X-authentik-username", "\xffadmin"), ("X-authentik-groups", "admins\xe9"),
              ("Remote-User", "r\xfcoot")]
    auth = [("Authorization", f"Bearer {token()}")] if kind == "api" else []
    r = host.get(PATHS[kind], forged + auth)
    assert r.status == 200 and r.from_upstream, r
    assert not r.upstream_header("remote-user"), r
    want = ["alice"] if kind == "api" else []
    assert r.upstream_header("x-authentik-username") == want, r
    assert all("admins" not in v for v in r.upstream_header("x-authentik-groups")), r


def test_no_trap_in_the_log(host):
    host.still_serves()
    assert host.trapped() == [], host.proc.log_text()[-3000:]
