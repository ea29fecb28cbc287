"""python -m fakeanthropic --host 127.0.0.1 --port 8765 [--tps N] [--quiet]

Prints one line ``FAKE_ANTHROPIC_LISTENING http://<host>:<port>`` to stdout once it
is listening (``--port 0`` picks a free port), then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from .server import build_app


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        print(f"fakeanthropic: ignoring {name}={raw!r} (not a number)", file=sys.stderr)
        return default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fakeanthropic", description="Local fake of the Anthropic Messages API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--tps", type=float, default=_env_float("FAKE_ANTHROPIC_TPS", 40.0),
                   help="default text deltas per second, <= 0 for no pacing "
                        "(default: $FAKE_ANTHROPIC_TPS or 40)")
    p.add_argument("--first-byte-delay-ms", type=float, default=0.0,
                   help="default delay before each response starts")
    p.add_argument("--min-cache-tokens", type=int, default=0,
                   help="smallest prefix that prompt caching applies to (the real API: 1024+)")
    p.add_argument("--quiet", action="store_true", help="no access log, warnings only")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    app = build_app(
        default_tps=args.tps,
        default_first_byte_delay=args.first_byte_delay_ms / 1000.0,
        min_cache_tokens=args.min_cache_tokens,
    )
    runner = web.AppRunner(
        app,
        access_log=None if args.quiet else logging.getLogger("aiohttp.access"),
        handle_signals=False,
        shutdown_timeout=0.25,
    )
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=2048, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    host = args.host if ":" not in args.host else f"[{args.host}]"
    sys.stdout.write(f"FAKE_ANTHROPIC_LISTENING http://{host}:{port}\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="fakeanthropic %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
