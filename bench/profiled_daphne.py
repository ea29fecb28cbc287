"""Diagnostic only: daphne with cProfile on every thread, timing thread CPU, not wall time.

    python -m bench.profiled_daphne OUT_PREFIX <daphne args...>

writes OUT_PREFIX.main.prof (the event loop thread) and OUT_PREFIX.threads.prof (all other
threads merged: the sync_to_async workers doing ORM work). `time.thread_time` as the timer
means time spent waiting (GIL, locks, sockets) is not counted: tottime is CPU burnt there.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _thread_start(*_args) -> None:
    sys.setprofile(None)
    prof = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(prof)
    prof.enable()


def main() -> None:
    prefix, sys.argv = sys.argv[1], ["daphne", *sys.argv[2:]]
    from daphne.cli import CommandLineInterface

    threading.setprofile(_thread_start)
    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
    try:
        CommandLineInterface.entrypoint()
    finally:
        main_prof.disable()
        threading.setprofile(None)
        main_prof.dump_stats(prefix + ".main.prof")
        with _lock:
            profiles = list(_profiles)
        if profiles:
            stats = pstats.Stats(profiles[0])
            for prof in profiles[1:]:
                stats.add(prof)
            stats.dump_stats(prefix + ".threads.prof")


if __name__ == "__main__":
    main()
