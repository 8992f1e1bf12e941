#!/usr/bin/env python3
"""Instructions per request inside Envoy for filter builds: the deterministic A/B tool for the
cached-session hot path (wrk's req/s drifts by ±25% on this machine; instruction counts do not).

    python3 bench/hostcost.py [--requests N] [--cpu] NAME=WASM ...

WASM is a filter .wasm (run with the bench's cached-session config), or `router` (no filter) or
`noop` (bench/noop-filter). Each Envoy (--concurrency 1) runs under valgrind's callgrind with
instrumentation off until warmed up (50 requests: V8 compiled, the session cached), then counts
the instructions of the whole Envoy process (V8's code included) over N sequential keep-alive
requests; prints instructions per request. `--cpu` instead runs wrk as bench/run.py does and
prints Envoy CPU µs per request (noisy here). Loopback only; every process is stopped.

Used to find where Barbican's per-request cost goes (variants built with one part removed at
a time: read headers only, + decide, + header writes) — see bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import glob
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
import harness as h  # noqa: E402
import run as B  # noqa: E402


def bootstrap(path: str, plugin: dict, clusters: dict) -> dict:
    if path == "router":
        filters = []
    elif path == "noop":
        filters = [h.wasm_filter("{}", B.build_noop(), vm_id="noop")]
    else:
        filters = [h.wasm_filter(plugin, path)]
    return h.render_bootstrap(http_filters=filters, clusters=clusters,
                              routes=h.default_routes(None))


def callgrind_count(cfg: dict, name: str, n: int, headers) -> float:
    d = h.new_tmp_dir("cg")
    config_path = h.write_bootstrap(cfg, d)
    addr = d / "admin.addr"
    cmd = ["valgrind", "--tool=callgrind", "--smc-check=all", "--instr-atstart=no",
           f"--callgrind-out-file={d}/cg.%p", h.envoy_binary(), "-c", str(config_path),
           "--concurrency", "1", "--base-id", str(h.unique_base_id()), "--disable-hot-restart",
           "-l", "warning", "--admin-address-path", str(addr)]
    e = h.EnvoyProc("envoy-cg-" + name, cmd)
    e.config_path = config_path
    e.start()
    try:
        e.wait_ready(addr, 600)

        def batch(k: int) -> None:
            with h.KeepAliveClient(e.port) as c:
                for _ in range(k):
                    r = c.request("/app/", headers=headers)
                    if r.status != 200:
                        raise RuntimeError(f"{name}: status {r.status}")

        batch(50)
        ctl = lambda *a: subprocess.run(["callgrind_control", *a, str(e.pid)], check=True,
                                        capture_output=True)
        ctl("-z")
        ctl("-i", "on")
        batch(n)
        ctl("-i", "off")
        ctl("-d")
        total = 0
        for f in glob.glob(f"{d}/cg.*"):
            for line in open(f, errors="replace"):
                if line.startswith("totals:"):
                    total += int(line.split()[1])
        return total / n
    finally:
        e.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("variants", nargs="+")
    args = ap.parse_args()
    procs = []
    try:
        nginx = B.start_nginx(); procs.append(nginx)
        outpost = h.start_outpost(); procs.append(outpost)
        session = [("Cookie", outpost.cookie(ttl=3600)), ("Accept", "text/html")]
        clusters = {"outpost": outpost.port, "upstream": nginx.port}
        plugin = h.default_plugin_config(ttl_s=300)
        # Under valgrind the first callout is slow; the bench's 1 s would answer 503.
        plugin["session"]["forward_auth"]["timeout_ms"] = 30000
        for v in args.variants:
            name, path = v.split("=", 1)
            cfg = bootstrap(path, plugin, clusters)
            if args.cpu:
                with h.start_envoy_config(cfg, name="envoy-" + name) as e:
                    r = B.run_row(name, e, "/app/", session)
                print(f"{name:14s} {r['envoy_cpu_us_per_req']:10.1f} µs Envoy CPU/request", flush=True)
            else:
                ipr = callgrind_count(cfg, name, args.requests, session)
                print(f"{name:14s} {ipr:10.0f} instructions/request", flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
        h.cleanup_tmp_root()
    return 0


if __name__ == "__main__":
    sys.exit(main())
