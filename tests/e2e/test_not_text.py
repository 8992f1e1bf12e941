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

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import harness as H
import traefik as T

ISSUER = "https://idp.barbican.test/"
AUDIENCE = "not-text"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks() -> dict:
    n = KEY.public_key().public_numbers().n
    return {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                      "n": b64u(n.to_bytes((n.bit_length() + 7) // 8, "big")),
                      "e": b64u(b"\x01\x00\x01")}]}


def token() -> str:
    now = int(time.time())
    head = b64u(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64u(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1",
                            "preferred_username": "alice", "iat": now,
                            "exp": now + 300}).encode())
    sig = KEY.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64u(sig)}"


JWT = {"providers": [{"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE],
                      "algorithms": ["RS256"], "jwks": {"inline": _jwks()}}]}
ROUTES = [
    {"match": {"path_prefix": "/public/"}, "policy": "bypass"},
    {"match": {"path_prefix": "/api/"}, "policy": "api"},
    {"match": {"path_prefix": "/blocked/"}, "policy": "deny"},
]
ENVOY_CONFIG = {**H.default_plugin_config(), "jwt": JWT, "routes": ROUTES,
                "default_policy": "protected"}
# Traefik makes no callouts: its protected paths are api routes by client address.
TRAEFIK_CONFIG = {"jwt": JWT, "default_policy": "deny", "routes": ROUTES + [
    {"match": {"path_prefix": "/app/"}, "policy": "api", "allow_cidrs": ["192.0.2.0/24"]}]}

# Route kinds and a path on each, per host.
PATHS = {"bypass": "/public/x", "api": "/api/x", "deny": "/blocked/x", "protected": "/app/x"}


class Host:
    def __init__(self, name: str, port: int, proc) -> None:
        self.name, self.port, self.proc = name, port, proc

    def get(self, path: str, headers=None, **kw) -> H.Response:
        return H.get(self.port, path, headers=headers, **kw)

    def still_serves(self) -> None:
        """The worker that took the odd request answers the next one normally."""
        r = self.get(PATHS["bypass"])
        assert r.status == 200 and r.from_upstream, (self.name, r)
        r = self.get(PATHS["api"], [("Authorization", f"Bearer {token()}")])
        assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"], r

    def trapped(self) -> list[str]:
        text = self.proc.log_text()
        return [w for w in ("RuntimeError", "unreachable", "panicked", "wasm stack")
                if w in text]


@pytest.fixture(scope="module", params=["envoy", "traefik"])
def host(request, wasm, outpost, upstream):
    if request.param == "envoy":
        env = H.start_envoy(ENVOY_CONFIG, wasm, concurrency=1,
                            clusters={"outpost": outpost.port, "upstream": upstream.port})
        try:
            yield Host("envoy", env.port, env)
        finally:
            env.stop()
    else:
        t = T.start_traefik(routers={"app": T.router(H.DEFAULT_HOST, ["barbican"])},
                            middlewares={"barbican": T.plugin_middleware(TRAEFIK_CONFIG)},
                            services={"upstream": upstream.port}, sanitize_path=False,
                            probe=lambda t: _serves(t.port))
        try:
            yield Host("traefik", t.port, t)
        finally:
            t.stop()


def _serves(port: int) -> bool:
    try:
        return H.get(port, PATHS["bypass"], timeout=2).from_upstream
    except OSError:
        return False


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
