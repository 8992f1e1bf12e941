"""`make demo` must keep working: run it in check mode (it curls what it prints and asserts)."""

import subprocess
import sys

from harness import REPO, require_wasm


def test_demo_check_mode_passes():
    require_wasm()
    p = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--check"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "demo check: ok" in p.stdout
