"""Diagnostic only: daphne with cProfile timing thread CPU (not wall time) in every thread.

    python -m bench.profiled_daphne OUT_PREFIX <daphne args...>

The event-loop thread is profiled between SIGUSR1 and SIGUSR2 (the bench sends them when all
sockets are connected and when all streams ended), then OUT_PREFIX.main.prof is written. Every
other thread (the sync_to_async workers doing ORM work) is profiled from its start, merged into
OUT_PREFIX.threads.prof at exit. `time.thread_time` as the timer leaves out time spent waiting
(GIL, locks, sockets): tottime is CPU burnt in that function.
"""

from __future__ import annotations

import cProfile
import pstats
import signal
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

    main_prof = cProfile.Profile(time.thread_time)

    def start(*_args) -> None:
        main_prof.enable()

    def stop(*_args) -> None:
        main_prof.disable()
        main_prof.dump_stats(prefix + ".main.prof")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    threading.setprofile(_thread_start)
    try:
        CommandLineInterface.entrypoint()
    finally:
        threading.setprofile(None)
        with _lock:
            profiles = list(_profiles)
        if profiles:
            stats = pstats.Stats(profiles[0])
            for prof in profiles[1:]:
                stats.add(prof)
            stats.dump_stats(prefix + ".threads.prof")


if __name__ == "__main__":
    main()
