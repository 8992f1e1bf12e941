"""One Barbican document run by both wasm hosts, real Envoy and real Traefik, for suites that
send the same odd requests to each (test_not_text.py, test_hostile.py).

Routes: host `admin.app.test` denied, `/public/` bypass, `/api/` api (RS256 JWTs signed here,
keys inline), `/blocked/` deny, everything else protected. Traefik makes no callouts, so its
protected path `/app/` is an api route open only to a client network the tests never come
from (192.0.2.0/24); its router serves only `app.test`.

`Host.still_serves()` is what every hostile case ends with: the worker that took the odd
request answers the next one normally. Envoy runs one worker, so a trap would show as 503;
Traefik answers a trapped guest with 500 and a wasm stack.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import harness as H
import traefik as T

ISSUER = "https://idp.barbican.test/"
AUDIENCE = "two-hosts"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks() -> dict:
    n = KEY.public_key().public_numbers().n
    return {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                      "n": b64u(n.to_bytes((n.bit_length() + 7) // 8, "big")),
                      "e": b64u(b"\x01\x00\x01")}]}


def sign(header: dict[str, Any], claims: dict[str, Any] | str) -> str:
    """A token signed with the inline key. `claims` may be raw JSON text (numbers JSON
    cannot hold in a float, deep nesting)."""
    body = claims if isinstance(claims, str) else json.dumps(claims)
    signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(body.encode())}"
    sig = KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64u(sig)}"


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "preferred_username": "alice",
         "iat": now, "exp": now + 300}
    c.update(over)
    return c


def token(**over: Any) -> str:
    return sign({"alg": "RS256", "typ": "JWT", "kid": "k1"}, claims(**over))


JWT = {"providers": [{"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE],
                      "algorithms": ["RS256"], "jwks": {"inline": _jwks()}}]}
ROUTES = [
    {"match": {"host": "admin.app.test"}, "policy": "deny"},
    {"match": {"path_prefix": "/public/"}, "policy": "bypass"},
    {"match": {"path_prefix": "/api/"}, "policy": "api"},
    {"match": {"path_prefix": "/blocked/"}, "policy": "deny"},
]
ENVOY_CONFIG = {**H.default_plugin_config(), "jwt": JWT, "routes": ROUTES,
                "default_policy": "protected"}
TRAEFIK_CONFIG = {"jwt": JWT, "default_policy": "deny", "routes": ROUTES + [
    {"match": {"path_prefix": "/app/"}, "policy": "api", "allow_cidrs": ["192.0.2.0/24"]}]}

# Route kinds and a path on each (the same on both hosts).
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


def start(name: str, wasm, outpost, upstream):
    """Starts one host with the document above; the caller stops `host.proc`."""
    if name == "envoy":
        env = H.start_envoy(ENVOY_CONFIG, wasm, concurrency=1,
                            clusters={"outpost": outpost.port, "upstream": upstream.port})
        return Host("envoy", env.port, env)
    t = T.start_traefik(routers={"app": T.router(H.DEFAULT_HOST, ["barbican"])},
                        middlewares={"barbican": T.plugin_middleware(TRAEFIK_CONFIG)},
                        services={"upstream": upstream.port}, sanitize_path=False,
                        probe=lambda t: _serves(t.port))
    return Host("traefik", t.port, t)


def _serves(port: int) -> bool:
    try:
        return H.get(port, PATHS["bypass"], timeout=2).from_upstream
    except OSError:
        return False


@pytest.fixture(scope="module", params=["envoy", "traefik"])
def host(request, wasm, outpost, upstream):
    """Each test module that imports this runs once per host."""
    h = start(request.param, wasm, outpost, upstream)
    try:
        yield h
    finally:
        h.proc.stop()
