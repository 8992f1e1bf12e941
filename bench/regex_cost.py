#!/usr/bin/env python3
"""Instructions one `path_regex` match costs, for patterns that are exponential in a
backtracking engine and for the costliest shapes the config admits — counted, not timed.

    python3 bench/regex_cost.py [--path-bytes N ...] [--no-report]

Builds the library's unit tests with the release profile's opt-level ("z", what ships; LTO
off to build faster), then runs route.rs's `pathological_path_regexes_...` test once per case
under valgrind's callgrind with collection on only inside `regex_cost_probe` (one
`Route::matches` call), so the count is the match alone. regex-lite never backtracks (a
PikeVM: O(m·n) for an automaton of m bytes and a path of n); the config bounds m
(path::PATH_REGEX_MAX_NFA_BYTES, 16 KiB) and n (limits.max_path_bytes: default 8,192, at
most 65,536). Each case must stay under BUDGET instructions per path byte; the run exits 1
otherwise. Writes its row into bench/RESULTS.md's Reliability table and
`regex_worst_instructions_per_path_byte` into bench/results.json (bench/reliability.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = "route::tests::pathological_path_regexes_stay_linear_and_big_ones_are_refused"
# Instructions per path byte for the worst case admitted: measured 83,054 for
# `/(?:.*){174}` (x86-64, 2026-12-07; 680M instructions on an 8 KiB path, 5.4G on 64 KiB).
# A pattern that costs more means the bound on the automaton grew or the engine changed.
BUDGET_PER_BYTE = 100_000
# Linear: a path 8x longer may cost at most 8x (+10%) as much.
LINEAR_SLACK = 1.10


def cases() -> list[str]:
    src = (REPO / "src" / "route.rs").read_text()
    block = src[src.index("REGEX_COST_CASES: &[&str] = &["):]
    block = block[:block.index("];")]
    return [json.loads(f'"{m}"') for m in re.findall(r'^\s*"((?:[^"\\]|\\.)*)",', block, re.M)]


def build() -> Path:
    env = dict(os.environ, CARGO_PROFILE_RELEASE_LTO="false", CARGO_PROFILE_RELEASE_CODEGEN_UNITS="16",
               CARGO_PROFILE_RELEASE_STRIP="none")
    out = subprocess.run(["cargo", "test", "--release", "--lib", "--no-run", "--message-format=json"],
                         cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "barbican" and msg["profile"]["test"]:
            return Path(msg["executable"])
    raise SystemExit("no test binary built")


def count(binary: Path, case: int, path_bytes: int) -> int:
    env = dict(os.environ, BARBICAN_REGEX_CASE=str(case), BARBICAN_REGEX_PATH_BYTES=str(path_bytes))
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                        "--toggle-collect=*regex_cost_probe*", str(binary), TEST, "--exact",
                        "--test-threads=1", "-q"],
                       env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{p.stdout}\n{p.stderr}")
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if not m:
        raise SystemExit(f"no callgrind total:\n{p.stderr}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path-bytes", type=int, nargs="*", default=[8192, 65536])
    ap.add_argument("--no-report", action="store_true")
    a = ap.parse_args()
    binary = build()
    pats = cases()
    worst = (0.0, "", 0)
    linear_ok = True
    print(f"{'pattern':24} " + " ".join(f"{n:>16}" for n in a.path_bytes) + "   instr/byte")
    for i, pat in enumerate(pats):
        counts = [count(binary, i, n) for n in a.path_bytes]
        per_byte = max(c / n for c, n in zip(counts, a.path_bytes))
        if len(counts) > 1 and counts[0] > 100_000:
            growth = (counts[-1] / counts[0]) / (a.path_bytes[-1] / a.path_bytes[0])
            if growth > LINEAR_SLACK:
                print(f"{pat}: super-linear ({growth:.2f}x the path's growth)")
                linear_ok = False
        if per_byte > worst[0]:
            worst = (per_byte, pat, counts[0])
        print(f"{pat:24} " + " ".join(f"{c:>16,}" for c in counts) + f"   {per_byte:>10,.0f}", flush=True)
    ok = worst[0] <= BUDGET_PER_BYTE and linear_ok
    print(f"worst: {worst[1]} at {worst[0]:,.0f} instructions per path byte "
          f"(budget {BUDGET_PER_BYTE:,}): {'ok' if ok else 'OVER BUDGET'}")
    if not a.no_report:
        sys.path.insert(0, str(REPO / "bench"))
        import reliability as R
        key = "regex_worst_instructions_per_path_byte"
        R.update({key: round(worst[0])}, [R.row(
            key, f"{worst[0]:,.0f} (`{worst[1]}`: {worst[2]:,} on an 8 KiB path)",
            f"≤ {BUDGET_PER_BYTE:,}, and linear in the path (8x path → ≤ 8.8x)",
            "`python3 bench/regex_cost.py`: callgrind, one Route::matches, native x86-64, "
            "opt-level z; automaton ≤ 16 KiB (path::PATH_REGEX_MAX_NFA_BYTES)")])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
