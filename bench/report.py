"""Figures of one phase (Chatsite, bare relay or floor), the per-N table with targets, and the
comparison of this tree with a baseline build."""

from __future__ import annotations

import collections
import math
import statistics

from .record import Stream

RATIO_LIMIT = 1.3
# N -> (relay p99 ms limit, TTFT p50 ms limit or None); from the issue.
LATENCY_TARGETS = {200: (150.0, 500.0), 500: (250.0, None)}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def summarise(streams: list[Stream], deltas: int, upstream_times: dict[str, float] | None = None) -> dict:
    ok = [s for s in streams if s.ok(deltas)]
    lat = [x for s in streams for x in s.latencies]
    ttft = [s.first_at - s.sent_at for s in streams if s.first_at is not None and s.sent_at]
    ends = [s.end_at for s in streams if s.end_at is not None]
    sends = [s.sent_at for s in streams if s.sent_at]
    up = []
    for s in streams:
        t = (upstream_times or {}).get(f"bench {s.idx}")
        if t is not None and s.sent_at:
            up.append(t - s.sent_at)
    reasons = collections.Counter(
        s.status if s.status != "complete" else f"complete but {s.stamps} stamps/in order {s.in_order}/len {s.length} vs {s.content_length}"
        for s in streams if not s.ok(deltas)
    )
    ms = lambda v: None if v is None else v * 1000  # noqa: E731
    # Longest silence between two frames of one stream (a stalled relay shows here).
    # Last text frame → final frame: the finish (store, render, announce) as the client sees it.
    end_wait = [s.end_at - s.frame_times[-1] for s in streams if s.end_at is not None and s.frame_times]
    longest_gap = [max(b - a for a, b in zip(s.frame_times, s.frame_times[1:])) for s in streams if len(s.frame_times) > 1]
    # Frames received per 100 ms across all streams, from the first send: a stall is a row of zeros.
    t0 = min(sends) if sends else 0.0
    timeline = collections.Counter(int((t - t0) * 10) for s in streams for t in s.frame_times)
    stalls = _stalls(timeline)
    return {
        "n": len(streams),
        "completed": len(ok),
        "failed": len(streams) - len(ok),
        "failures": dict(reasons.most_common(5)),
        "wall_s": (max(ends) - min(sends)) if ends and sends else None,
        "relay_p50_ms": ms(pct(lat, 50)),
        "relay_p99_ms": ms(pct(lat, 99)),
        "relay_max_ms": ms(max(lat)) if lat else None,
        "ttft_p50_ms": ms(pct(ttft, 50)),
        "ttft_p99_ms": ms(pct(ttft, 99)),
        "upstream_p50_ms": ms(pct(up, 50)),
        "upstream_p99_ms": ms(pct(up, 99)),
        "end_wait_p50_ms": ms(pct(end_wait, 50)),
        "end_wait_p99_ms": ms(pct(end_wait, 99)),
        "longest_frame_gap_p50_ms": ms(pct(longest_gap, 50)),
        "longest_frame_gap_max_ms": ms(max(longest_gap)) if longest_gap else None,
        "stalls": stalls,
        "frames_per_100ms": [timeline.get(i, 0) for i in range(max(timeline) + 1)] if timeline else [],
        "frames_per_reply": sum(s.frames for s in streams) / max(1, len(streams)),
        "gaps": sum(s.gaps for s in streams),
        "relayed_deltas": sum(s.stamps for s in streams),
    }


def _stalls(timeline: collections.Counter) -> list[list[float]]:
    """[start s, length s] of every run of ≥ 200 ms with no frame for any stream, between the first and last frame."""
    if not timeline:
        return []
    out, start = [], None
    for i in range(min(timeline), max(timeline) + 1):
        if timeline.get(i, 0) == 0:
            start = i if start is None else start
        elif start is not None:
            if i - start >= 2:
                out.append([start / 10, (i - start) / 10])
            start = None
    return out


def _f(v, fmt: str = "{:.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def _pair(a, b, fmt: str = "{:.0f}") -> str:
    return f"{_f(a, fmt)} / {_f(b, fmt)}"


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def targets(n: int, c: dict, b: dict | None) -> list[tuple[str, bool | None]]:
    out: list[tuple[str, bool | None]] = [("0 failed", c["failed"] == 0)]
    if n in LATENCY_TARGETS:
        p99_limit, ttft_limit = LATENCY_TARGETS[n]
        out.append((f"relay p99 ≤ {p99_limit:.0f} ms", c["relay_p99_ms"] is not None and c["relay_p99_ms"] <= p99_limit))
        if ttft_limit is not None:
            out.append((f"TTFT p50 ≤ {ttft_limit:.0f} ms", c["ttft_p50_ms"] is not None and c["ttft_p50_ms"] <= ttft_limit))
    if b is not None:
        # CPU counts the server's helper processes: work moved out of the web process still costs.
        for label, key in (("wall", "wall_s"), ("CPU/delta", "cpu_with_helpers_us_per_delta")):
            r = ratio(c.get(key), b.get(key))
            out.append((f"{label} ≤ {RATIO_LIMIT}× bare", None if r is None else r <= RATIO_LIMIT))
    return out


def block(n: int, deltas: int, interval_ms: float, db: str, c: dict, b: dict | None, fl: dict | None, arrival: str = "all at once") -> str:
    cols = [("Chatsite", c), ("bare relay", b), ("floor", fl)]
    present = [(name, d) for name, d in cols if d is not None]
    rows: list[tuple[str, list[str], str]] = []

    def row(label: str, cell, ratio_key: str | None = None) -> None:
        r = ratio(c.get(ratio_key), b.get(ratio_key)) if (ratio_key and b) else None
        rows.append((label, [cell(d) for _, d in present], "" if r is None else f"{r:.2f}×"))

    row("completed / failed", lambda d: f"{d['completed']} / {d['failed']}")
    row("wall (s)", lambda d: _f(d.get("wall_s"), "{:.2f}"), "wall_s")
    row("relay p50 / p99 (ms)", lambda d: _pair(d.get("relay_p50_ms"), d.get("relay_p99_ms")), "relay_p99_ms")
    row("relay max (ms)", lambda d: _f(d.get("relay_max_ms")))
    row("TTFT p50 / p99 (ms)", lambda d: _pair(d.get("ttft_p50_ms"), d.get("ttft_p99_ms")))
    row("send→upstream p50/p99 (ms)", lambda d: _pair(d.get("upstream_p50_ms"), d.get("upstream_p99_ms")))
    row("last text → end frame p50/p99 (ms)", lambda d: _pair(d.get("end_wait_p50_ms"), d.get("end_wait_p99_ms")))
    row("DB writes / reply", lambda d: _f(d.get("db_writes_per_reply"), "{:.1f}"))
    row("CPU µs / delta, server + helpers", lambda d: _f(d.get("cpu_with_helpers_us_per_delta")), "cpu_with_helpers_us_per_delta")
    row("CPU µs / delta, web process only", lambda d: _f(d.get("cpu_us_per_delta")), "cpu_us_per_delta")
    row("server CPU s: loop / threads", lambda d: _pair(d.get("cpu_loop_s"), d.get("cpu_threads_s"), "{:.2f}"))
    row("CPU s: server's helper processes", lambda d: _f(d.get("helpers_cpu_s"), "{:.2f}"))
    row("CPU s: fake / bench clients", lambda d: _pair(d.get("fake_cpu_s"), d.get("clients_cpu_s"), "{:.2f}"))
    row("machine CPU busy (%)", lambda d: _f(d.get("machine_busy_pct")))
    row("RSS (MB)", lambda d: _f(d.get("rss_mb")))
    row("longest frame gap p50/max (ms)", lambda d: _pair(d.get("longest_frame_gap_p50_ms"), d.get("longest_frame_gap_max_ms")))
    row("frames / reply, gaps", lambda d: f"{d['frames_per_reply']:.1f}, {d['gaps']}")
    row("connect all sockets (s)", lambda d: _f(d.get("connect_s"), "{:.2f}"))

    ideal = deltas * interval_ms / 1000
    head = f"=== N = {n}: {deltas} deltas @ {interval_ms:g} ms (ideal {ideal:.2f} s) · {arrival} · {db} · fresh servers per N ==="
    w0 = max(len(r[0]) for r in rows) + 2
    widths = [max(len(name), *(len(r[1][i]) for r in rows)) + 3 for i, (name, _) in enumerate(present)]
    lines = [head, " " * w0 + "".join(name.ljust(w) for (name, _), w in zip(present, widths)) + ("Chatsite/bare" if b else "")]
    for label, cells, r in rows:
        lines.append(label.ljust(w0) + "".join(cell.ljust(w) for cell, w in zip(cells, widths)) + r)
    for name, d in present:
        if d.get("failures"):
            lines.append(f"{name} failures: {d['failures']}")
    marks = ["PASS" if ok else ("MISS" if ok is False else "n/a") for _, ok in targets(n, c, b)]
    lines.append(("targets: " if arrival == "all at once" else "targets (set for the burst, shown for reference): ") + "; ".join(f"{label} {mark}" for (label, _), mark in zip(targets(n, c, b), marks)))
    return "\n".join(lines)


# (label, key, format) of the figures compared with a baseline build; the first three are the
# ratios the comparison is for.
COMPARED = [
    ("relay p99 (ms)", "relay_p99_ms", "{:.0f}"),
    ("TTFT p50 (ms)", "ttft_p50_ms", "{:.0f}"),
    ("CPU µs / delta, server + helpers", "cpu_with_helpers_us_per_delta", "{:.0f}"),
    ("relay p50 (ms)", "relay_p50_ms", "{:.0f}"),
    ("TTFT p99 (ms)", "ttft_p99_ms", "{:.0f}"),
    ("CPU µs / delta, web process only", "cpu_us_per_delta", "{:.0f}"),
    ("last text → end frame p50 (ms)", "end_wait_p50_ms", "{:.0f}"),
    ("wall (s)", "wall_s", "{:.2f}"),
]
RATIO_NAMES = {"relay_p99_ms": "relay_p99", "ttft_p50_ms": "ttft_p50", "cpu_with_helpers_us_per_delta": "cpu_per_delta"}


def _median(runs: list[dict], key: str) -> float | None:
    values = [d[key] for d in runs if d.get(key) is not None]
    return statistics.median(values) if values else None


def comparison(this: list[dict], base: list[dict]) -> dict[str, float | None]:
    """this / baseline, median over the runs of each, for the three headline figures."""
    return {name: ratio(_median(this, key), _median(base, key)) for key, name in RATIO_NAMES.items()}


def compare(n: int, this: list[dict], base: list[dict], *, this_label: str, base_label: str, arrival: str) -> str:
    """This tree against the baseline build: each run's figure, and the ratio of the medians
    (with each round's own ratio: a run of this and of the baseline, next to each other)."""
    rounds = min(len(this), len(base))
    lines = [f"=== N = {n}: {this_label} vs {base_label} · {arrival} · {rounds} round(s), alternating ==="]
    rows = [("completed / failed", ", ".join(f"{d['completed']}/{d['failed']}" for d in this),
             ", ".join(f"{d['completed']}/{d['failed']}" for d in base), "")]
    for label, key, fmt in COMPARED:
        per_round = [ratio(t.get(key), b.get(key)) for t, b in zip(this, base)]
        r = ratio(_median(this, key), _median(base, key))
        cell = "" if r is None else f"{r:.2f}×" + (f" ({', '.join(_f(x, '{:.2f}') for x in per_round)})" if rounds > 1 else "")
        rows.append((label, ", ".join(_f(d.get(key), fmt) for d in this), ", ".join(_f(d.get(key), fmt) for d in base), cell))
    head = ("", "this, per run", "baseline, per run", "this / baseline")
    widths = [max(len(r[i]) for r in [head, *rows]) + 3 for i in range(3)]
    for r in [head, *rows]:
        lines.append("".join(cell.ljust(w) for cell, w in zip(r[:3], widths)) + r[3])
    for label, d in [*((f"this run {i + 1}", d) for i, d in enumerate(this)), *((f"baseline run {i + 1}", d) for i, d in enumerate(base))]:
        if d.get("failures"):
            lines.append(f"{label} failures: {d['failures']}")
    return "\n".join(lines)
