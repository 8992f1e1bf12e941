"""`barbican serve` (dist/barbican, built by `make cli`) for the end-to-end tests: start it on a
free port with a document, and speak each front protocol to it the way the proxy would.

The front protocols (cli/src/front.rs cites the sources): Traefik forwardAuth / Caddy
forward_auth send the original request as X-Forwarded-Method/-Proto/-Host/-Uri/-For with the
client's own headers; nginx auth_request as X-Original-Method/-URI with X-Forwarded-Host and
-For; Envoy ext_authz appends the original path to `path_prefix` and keeps the original Host.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import harness as H

FORWARDED_PATH = {"traefik": "/outpost.goauthentik.io/auth/traefik", "caddy": "/auth/caddy",
                  "nginx": "/outpost.goauthentik.io/auth/nginx"}
ENVOY_PREFIX = "/outpost.goauthentik.io/auth/envoy"


class ServeMissing(RuntimeError):
    pass


def binary() -> Path:
    return Path(os.environ.get("BARBICAN_BIN") or (H.REPO / "dist" / "barbican")).resolve()


def require_binary() -> Path:
    b = binary()
    if not b.is_file():
        raise ServeMissing(f"{b} is missing: `make cli` builds it (or set BARBICAN_BIN)")
    return b


class ServeProc(H.Proc):
    port: int = 0
    config_path: Path

    def request(self, target: str, headers: H.HeaderList = None, method: str = "GET",
                timeout: float = 5.0, host: str | None = None) -> H.Response:
        return H.request(self.port, target, method=method, headers=headers,
                         host=host or f"127.0.0.1:{self.port}", timeout=timeout)

    def metrics(self) -> str:
        return self.request("/metrics").body.decode("utf-8", "replace")

    def metric(self, name_and_labels: str) -> float:
        """The value of one sample line, e.g. 'barbican_decisions_total{outcome="allow"}';
        0 when absent."""
        for line in self.metrics().splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def healthy(self) -> bool:
        try:
            return self.request("/healthz", timeout=2.0).status == 200
        except OSError:
            return False

    def terminate(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)


def write_config(config: Mapping[str, Any] | str, suffix: str = ".json") -> Path:
    d = H.new_tmp_dir("serve")
    p = d / f"barbican{suffix}"
    p.write_text(config if isinstance(config, str) else json.dumps(config, indent=1))
    return p


def start_serve(config: Mapping[str, Any] | str, *, env: Mapping[str, str] | None = None,
                wait_healthy: bool = True, timeout: float = 20.0,
                suffix: str = ".json") -> ServeProc:
    """`barbican serve CONFIG --listen 127.0.0.1:PORT --log-level debug`; returns once
    /healthz answers 200 (or, with wait_healthy False, once it listens)."""
    b = require_binary()
    port = H.free_port()
    cfg = write_config(config, suffix)
    p = ServeProc("serve", [str(b), "serve", str(cfg), "--listen", f"127.0.0.1:{port}",
                            "--log-level", "debug"],
                  env=dict(os.environ, **(env or {})))
    p.port = port
    p.config_path = cfg
    p.start()
    deadline = time.monotonic() + timeout
    while True:
        if not p.alive():
            raise H.ProcessExited("serve", p.popen.returncode if p.popen else None, p.log_tail())
        try:
            r = p.request("/healthz", timeout=2.0)
            if r.status == 200 or not wait_healthy:
                return p
        except OSError:
            pass
        if time.monotonic() > deadline:
            p.stop()
            raise TimeoutError(f"serve not ready after {timeout}s\n{p.log_tail()}")
        time.sleep(0.05)


def forwarded(uri: str, host: str = H.DEFAULT_HOST, method: str = "GET", proto: str = "http",
              client: str | None = "192.0.2.10") -> list[tuple[str, str]]:
    """The X-Forwarded-* Traefik and Caddy set on the auth request."""
    h = [("X-Forwarded-Method", method), ("X-Forwarded-Proto", proto),
         ("X-Forwarded-Host", host), ("X-Forwarded-Uri", uri)]
    if client:
        h.append(("X-Forwarded-For", client))
    return h


def nginx(uri: str, host: str = H.DEFAULT_HOST, method: str = "GET",
          client: str = "192.0.2.10") -> list[tuple[str, str]]:
    """What examples' nginx auth_request location sets: X-Original-* from $request_method /
    $request_uri, X-Forwarded-Host $host, X-Forwarded-For / X-Real-IP $remote_addr."""
    return [("X-Original-Method", method), ("X-Original-URI", uri), ("X-Forwarded-Host", host),
            ("X-Forwarded-Proto", "http"), ("X-Forwarded-For", client), ("X-Real-IP", client)]


def ask(sv: ServeProc, front: str, uri: str, headers: H.HeaderList = None,
        host: str = H.DEFAULT_HOST, method: str = "GET") -> H.Response:
    """One auth request as `front` (traefik, caddy, nginx, envoy) would send it for the
    original request `method host uri` carrying the client's `headers`."""
    extra = list(H._header_items(headers))
    if front == "envoy":
        return sv.request(ENVOY_PREFIX + uri, headers=[("X-Forwarded-Proto", "http")] + extra,
                          method=method, host=host)
    if front == "nginx":
        return sv.request(FORWARDED_PATH["nginx"], headers=nginx(uri, host, method) + extra)
    return sv.request(FORWARDED_PATH[front], headers=forwarded(uri, host, method) + extra)


def identity(r: H.Response) -> dict[str, str]:
    """The identity headers of an answer (lower-case names)."""
    return {k.lower(): v for k, v in r.headers if H.identity_family(k)}


def serve_config(outpost_port: int, idp: Any | None = None, *, ttl_s: int = 300,
                 stale_grace_s: int = 120, negative_ttl_s: int = 5, timeout_ms: int = 1500,
                 extra_routes: Sequence[dict] = ()) -> dict:
    """The test document: the outpost test server as `authentik`; with `idp`, the test OpenID
    provider as `idp` for JWTs (key set by discovery over HTTP) and introspection."""
    doc: dict[str, Any] = {
        "clusters": {"authentik": f"http://127.0.0.1:{outpost_port}"},
        "serve": {"max_header_bytes": 16384, "shutdown_grace_ms": 5000},
        "session": {
            "mode": "forward_auth",
            "forward_auth": {"dialect": "authentik", "cluster": "authentik",
                             "timeout_ms": timeout_ms},
            "cache": {"ttl_s": ttl_s, "negative_ttl_s": negative_ttl_s,
                      "stale_grace_s": stale_grace_s, "max_entries": 10000},
        },
        "trusted_proxies": ["127.0.0.1/32"],
        "routes": [
            *extra_routes,
            {"match": {"path_prefix": "/outpost.goauthentik.io/"}, "policy": "bypass"},
            {"match": {"path_prefix": "/public/"}, "policy": "bypass"},
            {"match": {"path_prefix": "/admin"}, "policy": "protected",
             "require_groups": ["admins"]},
            {"match": {"path_prefix": "/"}, "policy": "protected"},
        ],
        "default_policy": "deny",
    }
    if idp is not None:
        import idp as I
        disc = idp.discovery()
        doc["clusters"]["idp"] = idp.base
        doc["jwt"] = {"providers": [{
            "name": "test-idp", "issuer": disc["issuer"],
            "audiences": [I.RES_ES, I.RES_RS, I.RES_ED],
            "algorithms": ["RS256", "ES256", "EdDSA"],
            "jwks": {"cluster": "idp", "refresh_s": 600}}]}
        doc["introspection"] = {"cluster": "idp",
                                "path": idp.endpoint_path("introspection_endpoint"),
                                "client_id": I.INTROSPECTOR,
                                "client_secret": I.secret(I.INTROSPECTOR),
                                "auth": "basic", "ttl_s": 60}
        doc["routes"].insert(0, {"match": {"path_prefix": "/api/"}, "policy": "api",
                                 "accept": ["jwt", "introspection"]})
    return doc
