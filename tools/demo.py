#!/usr/bin/env python3
"""`make demo`: Envoy + Barbican in front of an echoing upstream and a test Authentik outpost,
all on loopback. Prints curl lines that show a login redirect, a cached allow and a bypass,
then keeps running until Ctrl-C.

`--check` runs the same curl lines itself, asserts what they should show, and exits
(the end-to-end suite runs it so the demo cannot rot).
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import harness as h  # noqa: E402

PLUGIN_CONFIG = {
    "session": {
        "mode": "forward_auth",
        "forward_auth": {"dialect": "authentik", "cluster": "outpost", "timeout_ms": 1000},
        "cache": {"ttl_s": 300, "negative_ttl_s": 5, "stale_grace_s": 120},
    },
    "routes": [
        {"name": "outpost", "match": {"path_prefix": "/outpost.goauthentik.io/"}, "policy": "bypass"},
        {"name": "public", "match": {"path_prefix": "/public/"}, "policy": "bypass"},
        {"name": "admin", "match": {"path_prefix": "/admin/"}, "policy": "protected",
         "require_groups": ["admins"]},
        {"name": "api", "match": {"path_prefix": "/api/"}, "policy": "api"},
        {"name": "apps", "match": {"path_prefix": "/"}, "policy": "protected"},
    ],
    "default_policy": "deny",
}


def curl(*args: str) -> tuple[str, list[str]]:
    cmd = ["curl", "-s", "--max-time", "5", *args]
    return " ".join(shlex.quote(a) for a in cmd), cmd


def run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout


def main() -> int:
    check = "--check" in sys.argv
    wasm = h.require_wasm()
    outpost = h.start_outpost(skip_path_regex=None)
    upstream = h.start_upstream()
    envoy = None
    try:
        envoy = h.start_envoy(PLUGIN_CONFIG, wasm,
                              clusters={"outpost": outpost.port, "upstream": upstream.port})
        base = f"http://127.0.0.1:{envoy.port}"
        cookie = outpost.cookie(user="alice", groups=("admins", "users"))
        stats_url = f"http://127.0.0.1:{outpost.port}/__test/stats"

        redirect = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}\\n",
                        "-H", "Accept: text/html", f"{base}/app/")
        xhr = curl("-o", "/dev/null", "-w", "%{http_code}\\n",
                   "-H", "X-Requested-With: XMLHttpRequest", f"{base}/app/")
        allow = curl("-H", f"Cookie: {cookie}", "-H", "X-authentik-username: mallory",
                     f"{base}/app/")
        bypass = curl("-H", "X-authentik-username: mallory", f"{base}/public/hello")
        traversal = curl("-o", "/dev/null", "-w", "%{http_code}\\n", "--path-as-is",
                         f"{base}/public/../app/")
        calls = curl(stats_url)
        metrics = curl(f"http://127.0.0.1:{envoy.admin_port}/stats?filter=barbican")

        print(f"""
Barbican demo — Envoy with Barbican on {base}
  upstream (echoes the request it got) 127.0.0.1:{upstream.port}
  test Authentik outpost               127.0.0.1:{outpost.port}  (session for alice, groups admins|users)

A browser without a session is sent to log in (the outpost's 302):
  {redirect[0]}
An XHR without a session gets 401, not a login page:
  {xhr[0]}
With a session: identity headers set by Barbican, the spoofed one gone. Run it several times:
  {allow[0]}
… and the outpost was asked once for all of them (auth_calls):
  {calls[0]}
A bypass route: no outpost call, and still no spoofed identity header upstream:
  {bypass[0]}
A traversal through the bypass prefix is normalized first, so it lands on the protected rule:
  {traversal[0]}
Metrics:
  {metrics[0]}
""", flush=True)

        if check:
            return run_checks(redirect, xhr, allow, bypass, traversal, outpost)
        print("Ctrl-C stops everything.", flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        try:
            while not stop:
                time.sleep(0.5)
                if not envoy.alive():
                    print("envoy exited:\n" + envoy.log_tail(), file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        if envoy:
            envoy.stop()
        outpost.stop()
        upstream.stop()


def run_checks(redirect, xhr, allow, bypass, traversal, outpost) -> int:
    out = run(redirect[1])
    assert out.startswith("302 ") and "/application/o/authorize/" in out, out
    assert run(xhr[1]).strip() == "401"
    before = outpost.auth_calls()
    for _ in range(5):
        seen = json.loads(run(allow[1]))["headers"]
        assert seen["x-authentik-username"] == ["alice"], seen
    assert outpost.auth_calls() - before == 1, "five requests, one outpost call"
    seen = json.loads(run(bypass[1]))["headers"]
    assert "x-authentik-username" not in seen, seen
    assert run(traversal[1]).strip() == "401"
    print("demo check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
