"""`make bench-cost` still runs: the cost benchmark on a short conversation (15 turns).

The bench starts its own fake Anthropic server and a SQLite database in a temporary directory,
so the test database is never touched. 15 turns are too few for the targets (the savings grow
with the conversation), so only the run and the table are checked here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_bench_cost_runs_and_prints_the_table():
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "cost.py"), "--turns", "15"],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert re.search(r"^strategy\s+requests\s+input\s+cache write\s+cache read\s+output\s+billed-eq input\s+cost USD$", proc.stdout, re.M), output[-5000:]
    rows = {name: int(n.replace(",", "")) for name, n in re.findall(r"^(\([abc]\)) [^\n]*?\s{2,}([\d,]+)\s", proc.stdout, re.M)}
    # (a) one request a turn; (b) adds a summary from turn 12 on; (c) adds the title.
    assert rows == {"(a)": 15, "(b)": 19, "(c)": 16}, output[-5000:]
    assert re.search(r"^billed-eq input \(c\)/\(a\)\s+[\d.]+ %\s+target ≤ 10 %\s+(PASS|FAIL)$", proc.stdout, re.M), output[-5000:]
    assert "(c) failed replies: 0" in proc.stdout, output[-5000:]
    assert "RESULT turns=15 " in proc.stdout, output[-5000:]
