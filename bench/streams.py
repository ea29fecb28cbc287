"""`make bench`: Chatsite's streaming relay beside a bare relay and a no-relay floor.

    .venv/bin/python bench/streams.py [--n 100,200,500] [--deltas 100] [--interval-ms 20]
                                      [--db sqlite|postgres] [--skip-bare] [--json out.json]
                                      [--arrival burst|poisson] [--rate R] [--seed S]
                                      [--batch-ms 40] [--bare-batch-ms MS]
                                      [--baseline REV [--rounds 2]]

Per N, in this order and never at the same time: (1) Chatsite — daphne with the real settings
(Redis channel layer, a fresh bench database, login, checkpoints) and N logged-in websocket
clients, one conversation each; (2) the bare relay (bench/bare_relay.py) on its own daphne;
(3) the floor (bench/floor.py): the same N streams read by AsyncAnthropic with no relay.
Every N gets fresh daphne processes, so CPU and RSS are per N; Redis, the fake Anthropic API
and the databases live for the whole run (the fake is reset before every phase).

Arrivals: `burst` (default) sends all N at once; `poisson` sends them at a steady rate, R per
second on average (exponential gaps, seeded: every phase gets the same schedule).

Both relays send a stream's text in frames batched on the same timer (--batch-ms, given to
Chatsite as CHATSITE_DELTA_BATCH_SECONDS); --bare-batch-ms 0 makes the bare relay send one
frame per delta as it used to.

--baseline REV also runs Chatsite as it was at REV (a git worktree in a temporary directory,
this venv, a database of its own migrated by its own code) on the same scenario, alternating
with this tree (this, baseline, baseline, this, … for --rounds rounds) so that both share the
machine's noise, and prints this / baseline ratios. The worktree is removed at the end.

CPU per relayed delta = the server process's user+sys CPU, plus that of its helper processes
(markdown rendering), from the moment every socket is connected (right before the first send)
to the moment every stream has ended, ÷ deltas received. The web process alone is shown too.
Exit code 0 when the benchmark ran (targets may still be MISS), 1 when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

import psutil  # noqa: E402

from bench import arrivals, clients, report  # noqa: E402
from bench.record import Stream  # noqa: E402
from bench.stack import Code, Stack, StackError  # noqa: E402


class Shutdown(BaseException):
    pass


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", default="100,200,500", help="comma-separated stream counts (default 100,200,500)")
    p.add_argument("--deltas", type=int, default=100)
    p.add_argument("--interval-ms", type=float, default=20.0)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--skip-bare", action="store_true", help="no bare relay and no floor")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--timeout", type=float, default=120.0, help="per-stream timeout in seconds")
    p.add_argument("--profile-dir", metavar="DIR", help="diagnostic: run Chatsite's daphne under cProfile (bench/profiled_daphne.py), .prof files per N (inflates its CPU)")
    p.add_argument("--with-streams", action="store_true", help="with --json: every stream's send, first text and end times")
    p.add_argument("--spy", type=int, metavar="SECONDS", help="diagnostic: sample Chatsite's daphne with py-spy (installed separately) for "
                   "SECONDS from the first send, a collapsed-stack file per N in --profile-dir or /tmp")
    p.add_argument("--arrival", choices=("burst", "poisson"), default="burst",
                   help="burst: all N send at once (default); poisson: sends arrive at --rate per second on average")
    p.add_argument("--rate", type=float, default=50.0, help="with --arrival poisson: replies started per second (default 50)")
    p.add_argument("--seed", type=int, default=1, help="with --arrival poisson: the schedule's random seed (default 1)")
    p.add_argument("--batch-ms", type=float, default=40.0, help="delta frames batched every MS for Chatsite and the bare relay (default 40)")
    p.add_argument("--bare-batch-ms", type=float, help="the bare relay's batch (default: --batch-ms; 0 = one frame per delta)")
    p.add_argument("--baseline", metavar="REV", help="also run Chatsite at git revision REV, alternating with this tree, and print this/baseline ratios")
    p.add_argument("--rounds", type=int, default=2, help="with --baseline: runs of each per N, alternating (default 2: this, baseline, baseline, this)")
    a = p.parse_args(argv)
    a.ns = [int(x) for x in a.n.split(",") if x.strip()]
    if a.bare_batch_ms is None:
        a.bare_batch_ms = a.batch_ms
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.arrival == "poisson" and a.rate <= 0:
        p.error("--rate must be positive")
    return a


class ProcMeter:
    """CPU seconds of a process between on_start and on_done, its RSS, and machine CPU busy %.

    With `signals`, the process gets SIGUSR1 at start and SIGUSR2 at done (bench/profiled_daphne.py).
    """

    def __init__(self, pid: int, signals: bool = False, fake_pid: int | None = None) -> None:
        self.signals = signals
        self.proc = psutil.Process(pid)
        self.others = {"fake": psutil.Process(fake_pid) if fake_pid else None, "clients": psutil.Process()}
        self.others0: dict[str, float] = {}
        self.others_s: dict[str, float] = {}
        self.cpu0 = self.cpu1 = 0.0
        self.helpers0 = self.helpers1 = 0.0
        self.busy = None
        self.spy: tuple[Path, float] | None = None

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def _helpers_cpu(self) -> float:
        """The server's child processes (renderpool's markdown helpers)."""
        total = 0.0
        for child in self.proc.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        return total

    def wait_helpers_idle(self, timeout: float = 15.0, still: float = 0.3) -> None:
        """Until the server's helper processes (if any) have used no CPU for `still` seconds."""
        deadline = time.monotonic() + timeout
        last, since = self._helpers_cpu(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self._helpers_cpu()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= still:
                return

    def _main_thread_cpu(self) -> float:
        return sum(t.user_time + t.system_time for t in self.proc.threads() if t.id == self.proc.pid)

    def start(self) -> None:
        psutil.cpu_percent(None)
        self.cpu0 = self._cpu()
        self.main0 = self._main_thread_cpu()
        self.helpers0 = self._helpers_cpu()
        self.others0 = {k: sum(p.cpu_times()[:2]) for k, p in self.others.items() if p is not None}
        if self.signals:
            self.proc.send_signal(signal.SIGUSR1)
        if self.spy is not None:
            out, seconds = self.spy
            say(f"py-spy: {seconds} s of samples into {out}")
            subprocess.Popen(["py-spy", "record", "--pid", str(self.proc.pid), "--duration", str(seconds), "--rate", "1000",
                              *(["--native"] if os.environ.get("BENCH_SPY_NATIVE") else ["--nonblocking"]), "--threads", *(["--idle", "--format", "speedscope"] if os.environ.get("BENCH_SPY_TIMELINE") else ["--format", "raw"]), "--output", str(out)],
                             stdout=subprocess.DEVNULL, stderr=open(str(out) + ".log", "w"))

    def done(self) -> None:
        self.cpu1 = self._cpu()
        self.main1 = self._main_thread_cpu()
        self.helpers1 = self._helpers_cpu()
        self.busy = psutil.cpu_percent(None)
        self.others_s = {k: sum(self.others[k].cpu_times()[:2]) - v for k, v in self.others0.items()}
        if self.signals:
            self.proc.send_signal(signal.SIGUSR2)

    def rss_mb(self) -> float:
        return self.proc.memory_info().rss / 2**20


def upstream_times(stack: Stack) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry in stack.fake_call("GET", "/_fake/requests") or []:
        msgs = (entry.get("body") or {}).get("messages") or []
        user = [m for m in msgs if m.get("role") == "user"]
        if user and isinstance(user[-1].get("content"), str):
            out.setdefault(user[-1]["content"], entry["time"])
    return out


def _finish(summary: dict, meter: ProcMeter, connect_s: float) -> dict:
    cpu = meter.cpu1 - meter.cpu0
    main = meter.main1 - meter.main0
    summary.update(
        cpu_s=cpu,
        cpu_loop_s=main,
        cpu_threads_s=cpu - main,
        cpu_us_per_delta=cpu / summary["relayed_deltas"] * 1e6 if summary["relayed_deltas"] else None,
        helpers_cpu_s=meter.helpers1 - meter.helpers0,
        cpu_with_helpers_us_per_delta=(cpu + meter.helpers1 - meter.helpers0) / summary["relayed_deltas"] * 1e6 if summary["relayed_deltas"] else None,
        rss_mb=meter.rss_mb(),
        machine_busy_pct=meter.busy,
        fake_cpu_s=meter.others_s.get("fake"),
        clients_cpu_s=meter.others_s.get("clients"),
        connect_s=connect_s,
    )
    return summary


def server_errors(child) -> str:
    """The first traceback/error lines of a server log, and where a copy of the log is kept."""
    if child.log_path is None or not child.log_path.exists():
        return ""
    lines = child.log_path.read_text(errors="replace").splitlines()
    hits = [i for i, line in enumerate(lines) if "Traceback" in line or " ERROR " in line or "Exception" in line]
    if not hits:
        return ""
    keep = Path(tempfile.gettempdir()) / f"chatsite-bench-{child.name}-{child.pid}.log"
    keep.write_text("\n".join(lines))
    first = hits[0]
    return f"{len(hits)} error lines; full log kept at {keep}; first:\n" + "\n".join(lines[first:first + 20])


_runs = 0


def run_chatsite(stack: Stack, code: Code, n: int, a: argparse.Namespace, offsets: list[float], *, diagnostics: bool = True) -> dict:
    """One Chatsite phase on `code`'s tree. `diagnostics`: cProfile/py-spy as asked (this tree only)."""
    global _runs
    _runs += 1
    conns = stack.seed(code, clients=(f"{stack.token}-{_runs}-{n}", n))["clients"]
    profile = Path(a.profile_dir).resolve() / f"chatsite-n{n}" if (a.profile_dir and diagnostics) else None
    if profile:
        profile.parent.mkdir(parents=True, exist_ok=True)
    child = stack.start_daphne("chatsite-daphne", "chatsite.asgi:application", stack.chatsite_env(code), profile=profile, cwd=code.root)
    try:
        base = f"http://127.0.0.1:{child.port}"
        ops_url = base + "/chat/ops/streams.json"
        meter = ProcMeter(child.pid, signals=profile is not None, fake_pid=stack.fake_pid)
        targets = [
            clients.Target(f"ws://127.0.0.1:{child.port}/ws/conversations/{cid}/", {"Cookie": f"sessionid={sk}", "Origin": base})
            for sk, cid in conns
        ]
        # The first socket starts the hub: its render helper and SDK client, once per process.
        # Measure from a warm server: wait for that start-up to be over before the window.
        asyncio.run(clients.touch(targets[0]))
        meter.wait_helpers_idle()
        ops0 = asyncio.run(clients.fetch_json(ops_url, code.staff))
        if ops0.get("db_writes") is None and code.root == BASE_DIR:
            raise StackError("the ops page reports no db_writes (CHATSITE_COUNT_DB_WRITES not honoured?)")
        if a.spy and diagnostics:
            meter.spy = (Path(a.profile_dir or "/tmp").resolve() / f"chatsite-n{n}.spy.txt", a.spy)
        stack.script_fake(n, a.deltas, a.interval_ms)
        streams, connect_s = asyncio.run(clients.run(targets, chatsite=True, timeout=a.timeout, on_start=meter.start, on_done=meter.done, offsets=offsets))
        time.sleep(0.2)  # the last end frames' DB writes are done before they are sent; this is slack
        ops1 = asyncio.run(clients.fetch_json(ops_url, code.staff))
        upstream = upstream_times(stack)
        summary = _finish(report.summarise(streams, a.deltas, upstream), meter, connect_s)
        summary["code"] = code.label
        summary["_upstream"] = upstream
        if ops0.get("db_writes") is not None and ops1.get("db_writes") is not None:
            summary["db_writes_per_reply"] = (ops1["db_writes"] - ops0["db_writes"]) / n
        summary["hub_stats"] = ops1.get("stats")
        summary["_streams"] = streams
        if summary["failed"] and child.process.poll() is not None:
            summary["failures"]["daphne died"] = child.log_tail()
        summary["server_errors"] = server_errors(child)
        return summary
    finally:
        stack.stop(child)


def run_bare(stack: Stack, n: int, a: argparse.Namespace, offsets: list[float]) -> dict:
    env = stack.base_env()
    env.update(DJANGO_SETTINGS_MODULE="bench.bare_settings", ANTHROPIC_BASE_URL=stack.fake_url, ANTHROPIC_API_KEY="bench",
               BARE_BATCH_SECONDS=f"{a.bare_batch_ms / 1000:g}")
    child = stack.start_daphne("bare-daphne", "bench.bare_relay:application", env)
    try:
        meter = ProcMeter(child.pid, fake_pid=stack.fake_pid)
        stack.script_fake(n, a.deltas, a.interval_ms)
        base = f"http://127.0.0.1:{child.port}"
        targets = [clients.Target(f"ws://127.0.0.1:{child.port}/ws/bare/", {"Origin": base}) for _ in range(n)]
        streams, connect_s = asyncio.run(clients.run(targets, chatsite=False, timeout=a.timeout, on_start=meter.start, on_done=meter.done, offsets=offsets))
        upstream = upstream_times(stack)
        summary = _finish(report.summarise(streams, a.deltas, upstream), meter, connect_s)
        summary["_upstream"] = upstream
        summary["_streams"] = streams
        summary["server_errors"] = server_errors(child)
        return summary
    finally:
        stack.stop(child)


def run_floor(stack: Stack, n: int, a: argparse.Namespace) -> dict:
    stack.script_fake(n, a.deltas, a.interval_ms)
    argv = [sys.executable, "-m", "bench.floor", "--base-url", stack.fake_url, "--n", str(n), "--timeout", str(a.timeout),
            "--arrival", a.arrival, "--rate", str(a.rate), "--seed", str(a.seed)]
    child = stack.spawn("floor", argv, stack.base_env(), log=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.process.communicate(timeout=a.timeout + 60)
    finally:
        stack.stop(child)
    line = next((x for x in out.splitlines() if x.startswith("FLOOR_RESULT ")), None)
    if line is None:
        raise StackError(f"the floor printed no result (exit {child.process.returncode}):\n{err[-2000:]}")
    data = json.loads(line[len("FLOOR_RESULT "):])
    streams = [Stream.from_dict(d) for d in data["streams"]]
    summary = report.summarise(streams, a.deltas, upstream_times(stack))
    summary.update(
        cpu_s=data["cpu_s"],
        cpu_us_per_delta=data["cpu_s"] / summary["relayed_deltas"] * 1e6 if summary["relayed_deltas"] else None,
        rss_mb=data["rss_mb"],
    )
    summary["_streams"] = streams
    return summary


def git(*args: str, cwd: Path = BASE_DIR) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def this_label() -> str:
    try:
        head = git("rev-parse", "--short=10", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (StackError, OSError):
        return "this tree"
    return f"this tree ({head}{' + changes' if dirty else ''})"


class BaselineTree:
    """Chatsite at REV, checked out with `git worktree add` in a temporary directory (outside
    the repository), removed again on exit. Runs on this venv."""

    def __init__(self, rev: str) -> None:
        self.rev = rev
        self.tmp: Path | None = None
        self.path: Path | None = None

    def __enter__(self) -> Code:
        sha = git("rev-parse", "--verify", f"{self.rev}^{{commit}}")
        self.tmp = Path(tempfile.mkdtemp(prefix="chatsite-bench-baseline-"))
        self.path = self.tmp / "tree"
        git("worktree", "add", "--detach", str(self.path), sha)
        return Code(label=f"baseline {self.rev} ({sha[:10]})", root=self.path)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.path is not None:
            try:
                git("worktree", "remove", "--force", str(self.path))
            except (StackError, OSError) as err:
                print(f"bench: could not remove the baseline worktree {self.path}: {err}", file=sys.stderr)
            self.path = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
            try:  # its entry in the repository's worktree list, if the removal above failed
                git("worktree", "prune")
            except (StackError, OSError):
                pass


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)

    def on_signal(signum, _frame):
        raise Shutdown(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = Stack(a.db)
    stack.batch_seconds = a.batch_ms / 1000
    baseline_tree = BaselineTree(a.baseline) if a.baseline else None
    results = []
    code = 0
    try:
        this = Code(label=this_label(), root=BASE_DIR)
        base = baseline_tree.__enter__() if baseline_tree else None
        stack.start_redis()
        stack.start_fake()
        stack.prepare(this)
        if base is not None:
            stack.prepare(base, suffix="_baseline")
        arrival = arrivals.describe(a.arrival, a.rate)
        say(f"{os.cpu_count()} cores, Python {platform.python_version()}; db {a.db}; {stack.redis_description}; fake at {stack.fake_url}")
        say(f"arrivals: {arrival}; delta frames batched every {a.batch_ms:g} ms (Chatsite), "
            + (f"{a.bare_batch_ms:g} ms (bare relay)" if a.bare_batch_ms else "one per delta (bare relay)"))
        say("per N: Chatsite, then bare relay, then floor, one after another, fresh daphne per phase; "
            "CPU window = all sockets connected → all streams ended; CPU includes the server's helper processes")
        if base is not None:
            say(f"baseline: {base.label} at {base.root}; per N {a.rounds} round(s) of each, alternating with {this.label}")
        if a.profile_dir:
            say(f"PROFILING Chatsite's daphne under cProfile into {a.profile_dir}: its CPU and latency figures are inflated")
        for n in a.ns:
            offsets = arrivals.schedule(n, arrival=a.arrival, rate=a.rate, seed=a.seed)
            runs: dict[str, list[dict]] = {"this": [], "baseline": []}
            for r in range(a.rounds if base is not None else 1):
                order = [("this", this), ("baseline", base)] if r % 2 == 0 else [("baseline", base), ("this", this)]
                for key, tree in order:
                    if tree is None:
                        continue
                    say(f"N = {n}: Chatsite ({tree.label})…")
                    runs[key].append(run_chatsite(stack, tree, n, a, offsets, diagnostics=key == "this" and r == 0))
            c = runs["this"][0]
            b = fl = None
            if not a.skip_bare:
                say(f"N = {n}: bare relay…")
                b = run_bare(stack, n, a, offsets)
                say(f"N = {n}: floor…")
                fl = run_floor(stack, n, a)
            print(report.block(n, a.deltas, a.interval_ms, a.db, c, b, fl, arrival=arrival), flush=True)
            for name, d in (("Chatsite", c), ("bare relay", b), *((f"baseline run {i + 1}", d) for i, d in enumerate(runs["baseline"]))):
                if d is not None and d.get("server_errors"):
                    print(f"{name} server errors: {d['server_errors']}", flush=True)
            comparison = None
            if base is not None:
                print(report.compare(n, runs["this"], runs["baseline"], this_label=this.label, base_label=base.label, arrival=arrival), flush=True)
                comparison = report.comparison(runs["this"], runs["baseline"])
            targets = report.targets(n, c, b)
            results.append({"n": n, "chatsite": c, "bare": b, "floor": fl, "targets": [{"target": t, "pass": ok} for t, ok in targets],
                            "this_runs": runs["this"], "baseline_runs": runs["baseline"], "comparison": comparison})
        print("RESULT " + " ".join(
            f"n={r['n']}:chatsite={r['chatsite']['completed']}/{r['chatsite']['failed']}"
            + (f",bare={r['bare']['completed']}/{r['bare']['failed']}" if r["bare"] else "")
            + (",baseline=" + "+".join(f"{d['completed']}/{d['failed']}" for d in r["baseline_runs"]) if r["baseline_runs"] else "")
            for r in results), flush=True)  # fmt: skip
        for r in results:
            if r["comparison"]:
                print(f"BASELINE n={r['n']}: " + " ".join(f"{k}={v:.2f}x" if v is not None else f"{k}=n/a" for k, v in r["comparison"].items()), flush=True)
        if a.json:
            def clean(d):
                if d is None:
                    return None
                out = {k: v for k, v in d.items() if not k.startswith("_")}
                if a.with_streams and d.get("_streams"):
                    upstream = d.get("_upstream") or {}
                    out["streams"] = [
                        {**{k: v for k, v in s.to_dict().items() if k not in ("latencies", "frame_times")}, "upstream_at": upstream.get(f"bench {s.idx}")}
                        for s in d["_streams"]
                    ]
                return out

            payload = {"args": {k: v for k, v in vars(a).items()}, "results": [
                {**r, "chatsite": clean(r["chatsite"]), "bare": clean(r["bare"]), "floor": clean(r["floor"]),
                 "this_runs": [clean(d) for d in r["this_runs"]], "baseline_runs": [clean(d) for d in r["baseline_runs"]]}
                for r in results
            ]}  # fmt: skip
            Path(a.json).write_text(json.dumps(payload, indent=2))
            say(f"wrote {a.json}")
    except StackError as exc:
        say(f"error: {exc}")
        code = 1
    except Shutdown as exc:
        say(f"{exc} received; stopping")
        code = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stack.close()
        if baseline_tree is not None:
            baseline_tree.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
