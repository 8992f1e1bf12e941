"""The "Reliability" section of bench/RESULTS.md and its keys in bench/results.json.

Several scripts measure reliability figures at different times (bench/soak.py, bench/memory.py,
fuzz/report.py): each one owns its keys in results.json and the table rows whose first cell is
one of those keys, and replaces only them. Both files are re-read right before writing, so a
run never drops another script's figures.

bench/run.py rewrites both files wholesale: `saved()` before it writes and `restore(...)` after
keep this section and these keys across a `make bench`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "RESULTS.md"
SECTION = "## Reliability"
INTRO = ("Figures from `make soak` (bench/soak.py), `make memory` (bench/memory.py) and "
         "`make fuzz` (fuzz/report.py); each row states the conditions it was measured under "
         "and is replaced only by the script that measures it.")
TABLE_HEAD = ["| figure | value | goal | conditions |", "|---|---:|---|---|"]
# Keys of results.json that belong to this section (for restore after bench/run.py).
KEY_PREFIXES = ("soak_", "rss_", "memory_", "fuzz_", "regex_")
_ROW_KEY = re.compile(r"^\| `([^`]+)` \|")


def row(key: str, value: object, goal: str, conditions: str) -> str:
    """A table row owned by `key` (its first cell)."""
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return f"| `{key}` | {cell(value)} | {cell(goal)} | {cell(conditions)} |"


def update(values: dict, rows: list[str]) -> None:
    """Merge `values` into results.json and put `rows` (from `row`) into the table, replacing
    rows with the same keys and keeping every other line as it is."""
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    data.update(values)
    RESULTS_JSON.write_text(json.dumps(data, indent=2) + "\n")

    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    if SECTION not in lines:
        block = ["", SECTION, "", INTRO, "", *TABLE_HEAD]
        at = lines.index("## Commands") - 1 if "## Commands" in lines else len(lines)
        lines[at:at] = block
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    section = lines[start:end]
    new = {_ROW_KEY.match(r).group(1): r for r in rows}
    kept = []
    for line in section:
        m = _ROW_KEY.match(line)
        if m and m.group(1) in new:
            kept.append(new.pop(m.group(1)))
        else:
            kept.append(line)
    if new:  # rows not there yet go after the table's last row
        last = max((i for i, x in enumerate(kept) if x.startswith("|")), default=len(kept) - 1)
        kept[last + 1:last + 1] = list(new.values())
    lines[start:end] = kept
    RESULTS_MD.write_text("\n".join(lines) + "\n")


def saved() -> tuple[dict, list[str]]:
    """This section's keys and rows as they are now (call before rewriting the files)."""
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    lines = RESULTS_MD.read_text().split("\n") if RESULTS_MD.exists() else []
    rows: list[str] = []
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        rows = [x for x in lines[start:end] if _ROW_KEY.match(x)]
    named = {_ROW_KEY.match(r).group(1) for r in rows}
    keys = {k: v for k, v in data.items() if k.startswith(KEY_PREFIXES) or k in named}
    return keys, rows


def restore(state: tuple[dict, list[str]]) -> None:
    keys, rows = state
    if keys or rows:
        update(keys, rows)
