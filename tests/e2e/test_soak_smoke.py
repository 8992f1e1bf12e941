"""`make soak` and `make memory` in brief, so CI proves the scripts work: bench/soak.py for a
few seconds of the fault cycle (then its outage and the outpost's return) and bench/memory.py
with a few thousand distinct sessions and tokens, side by side, writing nothing.

Asserted: what must hold at any length and on any machine — no request reached the app
without a valid decision, Envoy did not restart, no wasm VM failed, the outpost's return was
seen, and each memory checkpoint was measured with every request answered 200. The timing
figures (hung requests, recovery seconds, 5xx outside the grace rules) depend on the machine's
load and are the long runs' business: they are printed, not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import harness as H

SOAK = H.REPO / "bench" / "soak.py"
MEMORY = H.REPO / "bench" / "memory.py"


def result(out: str, prefix: str) -> dict:
    lines = [x for x in out.splitlines() if x.startswith(prefix + " ")]
    assert lines, out[-3000:]
    return json.loads(lines[-1].split(" ", 1)[1])


def test_soak_and_memory_scripts_run(wasm):
    env = dict(os.environ, BARBICAN_WASM=str(wasm), SOAK_WRITE="0", MEMORY_WRITE="0")
    soak = subprocess.Popen(
        [sys.executable, str(SOAK)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env | {"SOAK_S": "2", "SOAK_RECOVER_S": "1", "SOAK_RATE": "100",
                   "SOAK_CLIENTS": "12", "SOAK_SESSIONS": "32"})
    try:
        mem = subprocess.run([sys.executable, str(MEMORY)], capture_output=True, text=True,
                             timeout=120, env=env | {"MEMORY_N": "1000,3000", "MEMORY_CONNS": "8"})
        soak_out = soak.communicate(timeout=120)[0]
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.wait()
    assert soak.returncode == 0, soak_out[-3000:]
    assert mem.returncode == 0, (mem.stdout + mem.stderr)[-3000:]

    s = result(soak_out, "SOAK_RESULT")
    print("soak:", s)
    assert s["requests"] > 500, s
    assert s["soak_fail_open"] == 0, soak_out[-6000:]
    assert s["soak_envoy_restarts"] == 0 and s["soak_vm_failures"] == 0, s
    assert s["soak_recovery_s"] is not None and s["soak_jwks_recovery_s"] is not None, s

    m = result(mem.stdout, "MEMORY_RESULT")
    print("memory:", m)
    assert set(m) == {"rss_growth_1k_to_3k", "rss_growth_1k_to_3k_tokens",
                      "rss_growth_1k_to_3k_traefik_jwts"}, m
    details = json.loads(mem.stdout[mem.stdout.index("\n{") + 1:mem.stdout.rindex("\n}") + 2])
    for kind in ("sessions", "tokens", "traefik_jwts"):
        for point, run in details[f"memory_{kind}_details"]["runs"].items():
            assert run["non_2xx"] == 0 and run["requests"] >= 1000, (kind, point, run)
