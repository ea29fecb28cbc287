"""A real Celery worker in a subprocess, consuming the test run's queue on the real Redis.

    worker = CeleryWorker(redis_url=..., queue=..., env={"DATABASE_URL": ..., ...})
    worker.purge()          # tasks other tests enqueued and nobody consumed
    worker.start()          # returns once the worker logs "ready"
    worker.wait_for_task(result.id)
    worker.kill()           # SIGKILL: no cleanup at all, as when a machine dies
    worker.stop()

The worker runs `tests.celery_worker_app` (Chatsite's app with this run's own unacked keys)
with the solo pool, so a task and its worker are one process. It gets the database of the
test run: pytest-django's test database, named by `database_url()` from the live connection
settings, so rows a transactional test commits are the rows the worker reads.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = "tests.celery_worker_app"
READY = re.compile(r"\bready\.")
_numbers = itertools.count(1)

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """A worker must not outlive a test process that was itself killed."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class CeleryWorkerError(RuntimeError):
    pass


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the database a Django connection uses (the test database in tests)."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        name = str(settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise CeleryWorkerError("A worker cannot share an in-memory SQLite database; use a file.")
        return f"sqlite:///{Path(name).resolve()}"  # an absolute path: four slashes
    if "postgresql" in engine:
        user = quote(settings_dict.get("USER") or "", safe="")
        password = quote(settings_dict.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
        host = settings_dict.get("HOST") or "localhost"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{credentials}{host}{port}/{quote(str(settings_dict['NAME']), safe='')}"
    raise CeleryWorkerError(f"No DATABASE_URL form known for {engine}")


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; return its value or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class CeleryWorker:
    def __init__(self, *, redis_url: str, queue: str, env: dict[str, str], startup_timeout: float = 30.0) -> None:
        self.redis_url = redis_url
        self.queue = queue
        self.extra_env = dict(env)
        self.startup_timeout = startup_timeout
        self.tmpdir = Path(tempfile.mkdtemp(prefix="chatsite-worker-"))
        self.log_path = self.tmpdir / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._redis = None

    # ------------------------------------------------------------------ broker

    @property
    def redis(self):
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5, socket_timeout=10)
        return self._redis

    @property
    def unacked_keys(self) -> tuple[str, str, str]:
        # The names tests/celery_worker_app.py gives them.
        return f"{self.queue}.unacked", f"{self.queue}.unacked_index", f"{self.queue}.unacked_mutex"

    def queue_keys(self) -> list[str]:
        # kombu keeps one list per priority step: the queue itself, then "<queue>\x06\x16<n>".
        return [self.queue, *(f"{self.queue}\x06\x16{p}" for p in (3, 6, 9))]

    def purge(self) -> int:
        """Drop waiting and unacknowledged tasks of the run's queue; return how many waited."""
        waiting = sum(self.redis.llen(key) for key in self.queue_keys())
        self.redis.delete(*self.queue_keys(), *self.unacked_keys)
        return waiting

    def pending(self) -> tuple[int, int]:
        """(waiting, delivered but not acknowledged) tasks of the run's queue."""
        waiting = sum(self.redis.llen(key) for key in self.queue_keys())
        return waiting, self.redis.hlen(self.unacked_keys[0])

    def wait_drained(self, timeout: float = 20.0) -> None:
        """Until every task of the queue has run to its end (tasks ack late: an unacked task
        is still running, or waiting for redelivery)."""
        wait_for(lambda: self.pending() == (0, 0), timeout=timeout, interval=0.1, what=f"queue {self.queue} to drain {self.pending()}")

    # ------------------------------------------------------------------ process

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="chatsite.settings",
            REDIS_URL=self.redis_url,
            CHATSITE_CELERY_QUEUE=self.queue,
            # One connection per task, closed after it: transactional tests flush the tables
            # between tests, and PostgreSQL drops the test database only when nobody is on it.
            CONN_MAX_AGE="0",
            # Admin edits (a model's window, prices) must reach the worker at once.
            CHATSITE_CATALOG_CACHE_SECONDS="0",
            PYTHONUNBUFFERED="1",
        )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.update(self.extra_env)
        return env

    def start(self) -> "CeleryWorker":
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            offset = log.tell()
            name = f"{self.queue}-{next(_numbers)}@%h"
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", APP, "worker",
                    "--pool=solo", "--concurrency=1", "--without-heartbeat", "--without-gossip", "--without-mingle",
                    "-Q", self.queue, "-n", name, "--loglevel=INFO",
                ],
                cwd=REPO_ROOT, env=self.child_env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self.startup_timeout
        while not READY.search(self.log_text(since=offset)):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise CeleryWorkerError(f"The Celery worker exited with code {code} during start-up:\n{self.log_text(since=offset)}")
            if time.monotonic() > deadline:
                self.stop()
                raise CeleryWorkerError(f"The Celery worker was not ready after {self.startup_timeout:.0f} s:\n{self.log_text(since=offset)}")
            time.sleep(0.05)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL the worker (its whole process group): no ack, no reject, no cleanup."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it lingers."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._redis is not None:
                self._redis.close()
                self._redis = None
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # ------------------------------------------------------------------ log

    def log_text(self, since: int = 0, limit: int | None = None) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                data = f.read()
        except OSError:
            return ""
        text = data.decode(errors="replace")
        return text[-limit:] if limit else text

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def task_outcome(self, task_id: str) -> str | None:
        """"succeeded", "raised", "retry" or "failed" once the worker logged the task's end."""
        found = re.search(rf"\[{re.escape(task_id)}\] (succeeded|raised|retry|failed)", self.log_text())
        return found.group(1) if found else None

    def wait_for_task(self, task_id: str, timeout: float = 15.0) -> str:
        outcome = wait_for(lambda: self.task_outcome(task_id), timeout=timeout, what=f"task {task_id} to finish")
        assert outcome == "succeeded", f"task {task_id} {outcome}:\n{self.log_text(limit=5000)}"
        return outcome

    def finished_tasks(self, name: str) -> int:
        """How many tasks of this name (e.g. "title_conversation") the worker has finished."""
        return len(re.findall(rf"Task conversations\.tasks\.{re.escape(name)}\[[0-9a-f-]+\] (?:succeeded|raised|failed)", self.log_text()))
