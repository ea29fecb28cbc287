"""The floor: N streams read by a bare AsyncAnthropic lean read, no relay (its own process).

    python -m bench.floor --base-url URL --n N [--timeout S] [--arrival burst|poisson --rate R --seed S]
prints one line `FLOOR_RESULT {json}`: the streams (as bench.record.Stream dicts), this
process's CPU seconds for the run and its RSS. The fake must already be scripted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

from . import arrivals, lean
from .record import Stream


async def _one(client, s: Stream, timeout: float, offset: float = 0.0) -> None:
    if offset > 0:
        await asyncio.sleep(offset)

    async def read() -> None:
        async for text in lean.text_deltas(client, f"bench {s.idx}"):
            now = time.time()
            if s.first_at is None:
                s.first_at = now
            s.frames += 1
            s.length += len(text)
            s.take_text(text, now)
        s.end_at = time.time()
        s.status = "complete"

    s.sent_at = time.time()
    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        s.status = "timeout"
    except Exception as exc:  # noqa: BLE001
        s.status = f"{type(exc).__name__}: {exc}"[:200]


async def main_async(base_url: str, n: int, timeout: float, offsets: list[float] | None = None) -> dict:
    client = lean.make_client(base_url)
    streams = [Stream(idx=i) for i in range(n)]
    offsets = offsets or [0.0] * n
    cpu0 = time.process_time()
    await asyncio.gather(*(_one(client, s, timeout, offsets[s.idx]) for s in streams))
    cpu = time.process_time() - cpu0
    await client.close()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"streams": [s.to_dict() for s in streams], "cpu_s": cpu, "rss_mb": rss_kb / 1024}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--arrival", choices=("burst", "poisson"), default="burst")
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    offsets = arrivals.schedule(a.n, arrival=a.arrival, rate=a.rate, seed=a.seed)
    result = asyncio.run(main_async(a.base_url, a.n, a.timeout, offsets))
    print("FLOOR_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
