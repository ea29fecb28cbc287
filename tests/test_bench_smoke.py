"""`make bench` still runs: a tiny benchmark (5 streams × 20 deltas) end to end.

The bench starts its own daphne processes, fake Anthropic server and database (a SQLite file
in a temporary directory), so the test database is never touched.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_runs_and_prints_the_table():
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "streams.py"), "--n", "5", "--deltas", "20"],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "=== N = 5: 20 deltas" in proc.stdout, output[-5000:]
    header = re.search(r"^\s+Chatsite\s+bare relay\s+floor\s+Chatsite/bare$", proc.stdout, re.M)
    assert header, output[-5000:]
    row = re.search(r"^completed / failed\s+(\d+) / (\d+)\s+(\d+) / (\d+)\s+(\d+) / (\d+)", proc.stdout, re.M)
    assert row, output[-5000:]
    assert row.groups() == ("5", "0", "5", "0", "5", "0"), output[-5000:]
    assert "RESULT n=5:chatsite=5/0,bare=5/0" in proc.stdout, output[-5000:]
