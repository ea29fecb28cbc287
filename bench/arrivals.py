"""When each of the N streams sends: all at once (a burst), or at a steady rate (Poisson arrivals).

The schedule is a list of offsets in seconds from the moment every socket is connected. The
same (n, rate, seed) gives the same schedule, so Chatsite, the bare relay, the floor and a
baseline build all see the same arrivals.
"""

from __future__ import annotations

import random


def schedule(n: int, *, arrival: str = "burst", rate: float = 50.0, seed: int = 1) -> list[float]:
    """Offsets (s) of the N sends. `poisson`: exponential gaps with mean 1/rate, the first at 0."""
    if arrival == "burst":
        return [0.0] * n
    if arrival != "poisson":
        raise ValueError(f"unknown arrival mode {arrival!r}")
    if rate <= 0:
        raise ValueError("the arrival rate must be positive")
    rng = random.Random(seed)
    offsets, t = [], 0.0
    for i in range(n):
        if i:
            t += rng.expovariate(rate)
        offsets.append(t)
    return offsets


def describe(arrival: str, rate: float) -> str:
    return "all at once" if arrival == "burst" else f"Poisson arrivals at {rate:g}/s"
