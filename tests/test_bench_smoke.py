"""`make bench` still runs: tiny benchmarks (a few streams × 20 deltas) end to end, in each mode.

The bench starts its own daphne processes, fake Anthropic server and databases (SQLite files
in a temporary directory), so the test database is never touched.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import arrivals

REPO_ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, timeout: float = 240) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "streams.py"), "--deltas", "20", *args],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    return proc.stdout


def test_bench_smoke_runs_and_prints_the_table():
    out = bench("--n", "5")
    assert "=== N = 5: 20 deltas" in out and "· all at once ·" in out, out[-5000:]
    header = re.search(r"^\s+Chatsite\s+bare relay\s+floor\s+Chatsite/bare$", out, re.M)
    assert header, out[-5000:]
    row = re.search(r"^completed / failed\s+(\d+) / (\d+)\s+(\d+) / (\d+)\s+(\d+) / (\d+)", out, re.M)
    assert row, out[-5000:]
    assert row.groups() == ("5", "0", "5", "0", "5", "0"), out[-5000:]
    # The CPU target is taken on the server's CPU with its helper processes.
    assert re.search(r"^CPU µs / delta, server \+ helpers\s+\d+\s+\d+\s+–\s+[\d.]+×$", out, re.M), out[-5000:]
    assert "RESULT n=5:chatsite=5/0,bare=5/0" in out, out[-5000:]


def test_staggered_arrivals_send_on_the_schedule_and_both_relays_batch_frames(tmp_path):
    """Poisson arrivals: the sends spread as the schedule says (not all at once), and the bare
    relay batches its frames on Chatsite's timer (far fewer frames than deltas, as Chatsite)."""
    out_json = tmp_path / "bench.json"
    out = bench("--n", "5", "--arrival", "poisson", "--rate", "20", "--seed", "3", "--json", str(out_json), "--with-streams")
    assert "· Poisson arrivals at 20/s ·" in out, out[-5000:]
    row = re.search(r"^completed / failed\s+(\d+) / (\d+)\s+(\d+) / (\d+)\s+(\d+) / (\d+)", out, re.M)
    assert row and row.groups() == ("5", "0", "5", "0", "5", "0"), out[-5000:]
    result = json.loads(out_json.read_text())["results"][0]
    schedule = arrivals.schedule(5, arrival="poisson", rate=20, seed=3)
    assert schedule[-1] > 0.1, schedule  # (the seed gives a spread worth checking)
    for phase in ("chatsite", "bare"):
        sent = sorted(s["sent_at"] for s in result[phase]["streams"])
        offsets = [t - sent[0] for t in sent]
        assert all(abs(o - want) < 0.05 + 0.2 * want for o, want in zip(offsets, schedule)), (phase, offsets, schedule)
        assert result[phase]["frames_per_reply"] <= 15, (phase, result[phase]["frames_per_reply"])  # 20 deltas in ~10 frames


def _git_ok() -> bool:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _git_ok(), reason="needs a git checkout (--baseline makes a worktree)")
def test_bench_against_a_baseline_prints_ratios_and_removes_its_worktree():
    def worktrees() -> str:
        return subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True).stdout

    before = worktrees()
    out = bench("--n", "4", "--skip-bare", "--baseline", "HEAD", "--rounds", "1")
    path = re.search(r"baseline HEAD \(\w+\) at (\S+);", out)
    assert path, out[-5000:]
    assert re.search(r"^=== N = 4: this tree .* vs baseline HEAD \(\w+\) · all at once · 1 round\(s\), alternating ===$", out, re.M), out[-5000:]
    for label in ("relay p99 \\(ms\\)", "TTFT p50 \\(ms\\)", "CPU µs / delta, server \\+ helpers"):
        assert re.search(rf"^{label}\s+\d+\s+\d+\s+[\d.]+×$", out, re.M), (label, out[-5000:])
    assert "RESULT n=4:chatsite=4/0,baseline=4/0" in out, out[-5000:]
    assert re.search(r"^BASELINE n=4: relay_p99=[\d.]+x ttft_p50=[\d.]+x cpu_per_delta=[\d.]+x$", out, re.M), out[-5000:]
    assert not Path(path.group(1)).exists() and not Path(path.group(1)).parent.exists()
    assert worktrees() == before
