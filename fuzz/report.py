#!/usr/bin/env python3
"""Writes a fuzz run's summary (fuzz/run.py's JSON) into the shared bench files, through
bench/reliability.py, which replaces only the keys and Reliability rows given to it:

- bench/results.json: `fuzz_minutes_per_target` (the smallest over the targets),
  `fuzz_crashes` (targets whose run ended in a crash: open, unfixed), `fuzz_targets`, and
  `fuzz_per_target` (executions, coverage, seconds per target), `fuzz_defects_fixed`;
- bench/RESULTS.md, "## Reliability": one row per key above, and one per target.

    python3 fuzz/report.py [fuzz/target/summary.json]
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import reliability as R  # noqa: E402


# Defects fuzzing found, each fixed with a unit test that reproduces it (where it lives).
FIXED = [
    "a parameter-only segment (`/;x/admin/`) left `//` in the match path, past a deny rule "
    "for `/admin/` (path_route; src/path.rs parameter_only_segments_vanish_from_the_match_path)",
    "raw C1 control characters (U+0080-U+009F) passed normalization (path_route; src/path.rs "
    "unsafe_paths_are_refused)",
]


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "fuzz" / "target" / "summary.json"
    s = json.loads(path.read_text())
    if s.get("replay_only"):
        print("a replay-only run measures nothing: not reported")
        return 0
    targets = s["targets"]
    minutes = round(min(t["seconds"] for t in targets) / 60, 1)
    crashes = sum(1 for t in targets if t["crashed"])
    day = datetime.date.today().isoformat()
    how = (f"fuzz/run.py --seconds {s['seconds_per_target']} (`make fuzz` runs FUZZ_S=600), "
           f"cargo-fuzz/libFuzzer, --sanitizer none, debug assertions, one core at nice 19, {day}"
           + (f"; {s['note']}" if s.get("note") else ""))
    met = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    per = {t["target"]: {k: t.get(k, 0) for k in ("execs", "execs_per_s", "cov", "ft", "seconds")}
           | {"crashed": t["crashed"]} for t in targets}
    values = {"fuzz_minutes_per_target": minutes, "fuzz_crashes": crashes,
              "fuzz_targets": len(targets), "fuzz_per_target": per,
              "fuzz_defects_fixed": len(FIXED)}
    rows = [
        R.row("fuzz_targets", len(targets), "every parser and decision input", ", ".join(per)),
        R.row("fuzz_minutes_per_target", minutes, f"≥ 10: {met(minutes >= 10)}", how),
        R.row("fuzz_crashes", crashes, f"0: {met(crashes == 0)} (each crash found is fixed with a unit test)", how),
        R.row("fuzz_defects_fixed", len(FIXED), "each with a unit test", "; ".join(FIXED)),
    ]
    for name, t in per.items():
        rows.append(R.row(f"fuzz_per_target.{name}",
                          f"{t['execs']:,} execs ({t['execs_per_s']:,}/s), {t['cov']:,} edges, "
                          f"{t['ft']:,} features",
                          "no crash", f"{t['seconds']:.0f} s{', CRASHED' if t['crashed'] else ''}"))
    R.update(values, rows)
    print(f"bench/: fuzz_minutes_per_target={minutes} fuzz_crashes={crashes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
