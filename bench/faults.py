"""`make bench-faults`: break PostgreSQL, Redis and Anthropic on purpose and count what is lost.

    .venv/bin/python bench/faults.py [--replies 20] [--outage 30] [--pause 20] [--trials 10]
                                     [--followers 20] [--only pg,redis-kill,redis-pause,late,429]
                                     [--json out.json]

Each scenario of docs/reliability.md runs on a production-like stack of its own: two daphne
processes on a private PostgreSQL cluster and a private redis-server (tests/faultkit.py, the
servers this bench kills, pauses and restarts: never the machine's), with the fake Anthropic
API. The clients apply frames as docs/protocol.md says (tests/wsclient.ProtocolSocket). The
table: replies, sockets, characters lost (what a socket or the store lacks at the end), ends
per socket (must be 1), ends before their text, sockets closed by the server, and the seconds
from the server being back to the last reply ended on every socket. Exit code 0 when every
scenario lost nothing, 1 otherwise (2 when it could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from tests import faultscenarios  # noqa: E402
from tests.faultkit import FaultStack, PrivatePostgres, PrivateRedis  # noqa: E402
from tests.fakeserver import FakeAnthropicProcess  # noqa: E402

SCENARIOS = ("pg", "redis-kill", "redis-pause", "late", "429")


async def _on_fresh_stack(fake: FakeAnthropicProcess, run, **env: str):
    postgres, redis_server, stack = PrivatePostgres.create(), PrivateRedis().start(), None
    try:
        stack = FaultStack(anthropic_url=fake.url, database_url=postgres.url(), redis_url=redis_server.url(),
                           extra_env={"CHATSITE_DB_POOL_TIMEOUT": "2", **env}).start()
        return await run(stack, postgres, redis_server)
    finally:
        if stack is not None:
            stack.stop()
        redis_server.destroy()
        postgres.destroy()


async def main(args: argparse.Namespace) -> int:
    only = [name for name in args.only.split(",") if name] if args.only else list(SCENARIOS)
    reports = []
    with FakeAnthropicProcess(tps=400) as fake:
        for name in only:
            print(f"running {name} …", file=sys.stderr, flush=True)
            if name == "pg":
                report = await _on_fresh_stack(fake, lambda s, pg, r: faultscenarios.postgres_outage(s, pg, fake, replies=args.replies, outage=args.outage))
            elif name == "redis-kill":
                report = await _on_fresh_stack(fake, lambda s, pg, r: faultscenarios.redis_outage(s, r, fake, mode="kill"))
            elif name == "redis-pause":
                report = await _on_fresh_stack(fake, lambda s, pg, r: faultscenarios.redis_outage(s, r, fake, mode="pause", seconds=args.pause))
            elif name == "late":
                report = await _on_fresh_stack(fake, lambda s, pg, r: faultscenarios.late_follows(s, fake, trials=args.trials, followers=args.followers))
            elif name == "429":
                report = await _on_fresh_stack(fake, lambda s, pg, r: faultscenarios.upstream_retry_after(s, fake, retry_after=40.0))
            else:
                print(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
                return 2
            reports.append(report)
    print(table(reports))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=2, default=str))
    return 0 if all(ok(r) for r in reports) else 1


def ok(report: faultscenarios.Report) -> bool:
    return report.lost_chars == 0 and report.short_ends == 0 and report.closed_sockets == 0 and set(report.ends_per_socket) <= {1}


def table(reports: list[faultscenarios.Report]) -> str:
    head = ("scenario", "replies", "sockets", "lost chars", "ends/socket", "ends before text", "closed", "recover s", "notes")
    rows = [head]
    for r in reports:
        notes = {k: v for k, v in r.notes.items() if k not in ("losses", "refusal")}
        rows.append((r.scenario, str(r.replies), str(r.sockets), str(r.lost_chars), r.ends(), str(r.short_ends), str(r.closed_sockets),
                     "-" if r.recover_seconds is None else f"{r.recover_seconds:.1f}", "; ".join(f"{k}: {v}" for k, v in notes.items())))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=20)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--pause", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--followers", type=int, default=20)
    parser.add_argument("--only", default="")
    parser.add_argument("--json", default="")
    if PrivatePostgres.missing():
        print(f"bench/faults.py: {PrivatePostgres.missing()}", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    sys.exit(asyncio.run(main(parser.parse_args())))
