#!/usr/bin/env python3
"""Runs every fuzz target for a fixed time and prints what each did (executions, coverage,
crashes), from libFuzzer's own final statistics.

    python3 fuzz/run.py [--seconds N] [--targets a,b] [--summary PATH] [--replay-only]

Each target starts from its committed seeds (fuzz/corpus/<target>/, read only) plus its
working corpus (fuzz/target/work/<target>/, where new inputs go), so the repository only
changes when someone copies a minimized corpus back. A crash, a panic, a leak of more than
2 GB or a single input running longer than 10 s stops the target and counts as a crash; the
input is kept under fuzz/artifacts/<target>/ and the run exits 1.

--replay-only runs each committed seed once (what CI does first, in a few seconds).
The summary (JSON) is what fuzz/report.py writes into bench/.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
BIN = FUZZ / "target" / "x86_64-unknown-linux-gnu" / "release"

TARGETS = [
    "config", "path_route", "headers", "jwt", "jwks", "idp_answer", "introspection", "seal",
    "engine", "serve_front",
]


def build() -> None:
    # --sanitizer none: stable Rust has no AddressSanitizer; safe Rust (the crate forbids
    # unsafe) needs none to find panics, overflows (debug assertions on) and hangs.
    subprocess.run(["cargo", "fuzz", "build", "--sanitizer", "none", "--debug-assertions", "-O"],
                   cwd=FUZZ, check=True)


def stats(text: str) -> dict:
    """Executions and coverage from libFuzzer's output (the last status line and -print_final_stats)."""
    out: dict = {}
    for m in re.finditer(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", text):
        out["execs"], out["cov"], out["ft"], out["corpus"] = map(int, m.groups())
    m = re.search(r"stat::number_of_executed_units:\s+(\d+)", text)
    if m:
        out["execs"] = int(m.group(1))
    m = re.search(r"stat::average_exec_per_sec:\s+(\d+)", text)
    if m:
        out["execs_per_s"] = int(m.group(1))
    return out


def run_target(name: str, seconds: int, replay_only: bool, bin_dir: Path = BIN) -> dict:
    seeds = FUZZ / "corpus" / name
    work = FUZZ / "target" / "work" / name
    arts = FUZZ / "artifacts" / name
    for d in (seeds, work, arts):
        d.mkdir(parents=True, exist_ok=True)
    cmd = [str(bin_dir / name), "-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048",
           f"-artifact_prefix={arts}/"]
    if replay_only:
        cmd += ["-runs=0", str(seeds)]
    else:
        cmd += [f"-max_total_time={seconds}", str(work), str(seeds)]
    t0 = time.monotonic()
    # Bounded: libFuzzer stops itself at max_total_time; the margin covers loading corpora.
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       timeout=seconds + 300 if not replay_only else 300)
    wall = time.monotonic() - t0
    s = stats(p.stderr)
    crashed = p.returncode != 0
    s.update(target=name, seconds=round(wall, 1), crashed=crashed, exit=p.returncode)
    if crashed:
        tail = [l for l in p.stderr.splitlines() if "panicked" in l or "ERROR" in l or "SUMMARY" in l]
        s["why"] = tail[:4]
        s["artifacts"] = sorted(str(a.relative_to(FUZZ.parent)) for a in arts.iterdir())[-3:]
    return s


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_S", "600")))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--summary", default=str(FUZZ / "target" / "summary.json"))
    ap.add_argument("--replay-only", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--bin-dir", type=Path, default=BIN, help="where the built targets are")
    a = ap.parse_args()
    if not a.no_build:
        build()
    results = []
    for t in a.targets.split(","):
        r = run_target(t, a.seconds, a.replay_only, a.bin_dir)
        results.append(r)
        print(f"{t:14} {r.get('execs', 0):>11} execs  {r.get('execs_per_s', 0):>7}/s  "
              f"cov {r.get('cov', 0):>5}  ft {r.get('ft', 0):>6}  corpus {r.get('corpus', 0):>5}  "
              f"{r['seconds']:>6.1f} s  {'CRASH ' + ' | '.join(r.get('why', [])) if r['crashed'] else 'ok'}",
              flush=True)
    summary = {"seconds_per_target": a.seconds if not a.replay_only else 0,
               "replay_only": a.replay_only, "targets": results,
               "crashes": sum(1 for r in results if r["crashed"])}
    Path(a.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(a.summary).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(results)} targets, {summary['crashes']} crashed; summary in {a.summary}")
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
