"""Chatsite as in production, in subprocesses, for browser tests.

    stack = LiveStack(anthropic_url=fake.url).start()   # migrate + daphne on a free port
    page.goto(stack.url + "/")
    stack.stored_replies()                               # [(content, status), ...] of replies
    stack.stop()                                         # daphne gone, e2e database dropped

The database is fresh and of the same kind as the test run's: a new PostgreSQL database
(`chatsite_e2e_<pid>_<n>`) on the server of DATABASE_URL when that is PostgreSQL, otherwise a
SQLite file in a temporary directory. Nothing here touches pytest-django's test database: the
app runs in its own processes with its own database, like a deployment.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PATH = "/accounts/login/"
STOP_TIMEOUT = 5.0
# The live server keeps admin-edited rows (models, prices, spend limits) this many seconds.
CATALOG_CACHE_SECONDS = 1.0
LIVENESS_TTL_SECONDS = 2


def catalog_cache_expired() -> None:
    """Wait until an admin edit made from a shell is seen by the live server (as in
    production, edits apply within CHATSITE_CATALOG_CACHE_SECONDS)."""
    time.sleep(CATALOG_CACHE_SECONDS + 0.2)
_numbers = itertools.count(1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_postgres(url: str) -> bool:
    return url.startswith("postgres")


def _libpq_url(url: str, dbname: str | None = None) -> str:
    """The URL in a form psycopg accepts (scheme `postgresql`), optionally for another database."""
    parts = urlsplit(url)
    path = f"/{dbname}" if dbname is not None else parts.path
    return urlunsplit(("postgresql", parts.netloc, path, parts.query, parts.fragment))


class LiveStackError(RuntimeError):
    pass


class LiveStack:
    def __init__(self, *, anthropic_url: str, extra_env: dict[str, str] | None = None, startup_timeout: float = 30.0) -> None:
        self.anthropic_url = anthropic_url
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.tmpdir = Path(tempfile.mkdtemp(prefix="chatsite-e2e-"))
        self.log_path = self.tmpdir / "server.log"
        self.port = 0
        self.url = ""
        self.database_url = ""
        self.pg_admin_url: str | None = None  # set when we created a PostgreSQL database
        self.pg_dbname = ""
        self.sqlite_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file = None

    # ------------------------------------------------------------------ database

    def _create_database(self) -> None:
        source = os.environ.get("DATABASE_URL", "")
        if _is_postgres(source):
            import psycopg

            self.pg_dbname = f"chatsite_e2e_{os.getpid()}_{next(_numbers)}"
            # Connect to the maintenance database: the URL's own database may not exist.
            last_error: Exception | None = None
            for admin_db in ("postgres", None):
                admin_url = _libpq_url(source, admin_db)
                try:
                    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_dbname}" WITH (FORCE)')
                        conn.execute(f'CREATE DATABASE "{self.pg_dbname}"')
                except psycopg.OperationalError as exc:
                    last_error = exc
                    continue
                self.pg_admin_url = admin_url
                break
            else:
                raise LiveStackError(f"could not create the e2e database on {urlsplit(source).hostname}: {last_error}")
            parts = urlsplit(source)
            self.database_url = urlunsplit((parts.scheme, parts.netloc, f"/{self.pg_dbname}", parts.query, parts.fragment))
        else:
            self.sqlite_path = self.tmpdir / "e2e.sqlite3"
            self.database_url = f"sqlite:///{self.sqlite_path}"  # an absolute path: four slashes

    def _drop_database(self) -> None:
        if self.pg_admin_url is None:
            return
        import psycopg

        admin_url, self.pg_admin_url = self.pg_admin_url, None
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_dbname}" WITH (FORCE)')

    def stored_replies(self) -> list[tuple[str, str]]:
        """(content, status) of every assistant message in the e2e database, by id."""
        sql = "SELECT content, status FROM conversations_message WHERE role = 'assistant' ORDER BY id"
        if self.sqlite_path is not None:
            conn = sqlite3.connect(self.sqlite_path, timeout=20)
            try:
                return [(content, status) for content, status in conn.execute(sql)]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(_libpq_url(self.database_url), connect_timeout=10) as conn:
            return [(content, status) for content, status in conn.execute(sql)]

    # ------------------------------------------------------------------ processes

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="chatsite.settings",
            DATABASE_URL=self.database_url,
            SECRET_KEY="chatsite-e2e-not-a-secret",
            # Production-like: no debug pages, static files through whitenoise. Set explicitly
            # (not just unset) so that a developer's .env cannot turn it back on.
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            CHANNEL_LAYER_PREFIX=f"e2e-{os.getpid()}",
            ANTHROPIC_BASE_URL=self.anthropic_url,
            ANTHROPIC_API_KEY="",  # the UI then shows the "Offline demo model" badge
            CHATSITE_CHECKPOINT_SECONDS="0.5",
            # A killed process is known dead to the reaper this long after its last beat.
            CHATSITE_LIVENESS_TTL_SECONDS=str(LIVENESS_TTL_SECONDS),
            # Admin edits (prices, spend limits) apply within this long; tests that make one
            # from a shell wait it out (see catalog_cache_expired).
            CHATSITE_CATALOG_CACHE_SECONDS=str(CATALOG_CACHE_SECONDS),
            PYTHONUNBUFFERED="1",
        )
        for name in ("CHATSITE_OFFLINE_DEMO", "CSRF_TRUSTED_ORIGINS", "SECURE_COOKIES", "BEHIND_PROXY"):
            env.pop(name, None)
        if not env.get("REDIS_URL"):
            env.pop("REDIS_URL", None)  # single process: in-memory channel layer
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.update(self.extra_env)
        return env

    def log_text(self, limit: int = 20_000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def start(self) -> "LiveStack":
        try:
            self._create_database()
            self.manage("migrate", "--noinput")
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self._log_file = open(self.log_path, "wb")
            self.proc = self.spawn_daphne(self.port)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def restart_after_crash(self) -> None:
        """SIGKILL daphne (no cleanup at all), sweep as `make run` does at start-up, start it again
        on the same port."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.manage("recover_generations", "--all")
        self.proc = self.spawn_daphne(self.port)
        self._wait_ready()

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT, env=env or self.child_env(), capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise LiveStackError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def spawn_daphne(self, port: int, log_file=None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
            cwd=REPO_ROOT, env=self.child_env(), stdout=log_file or self._log_file, stderr=subprocess.STDOUT,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        problem = "no answer yet"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise LiveStackError(f"daphne exited with code {self.proc.returncode} during startup:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError as exc:
                problem = f"port {self.port} not accepting connections ({exc})"
                time.sleep(0.1)
                continue
            try:
                with urllib.request.urlopen(self.url + READY_PATH, timeout=5) as resp:
                    if resp.status == 200:
                        return
                    problem = f"GET {READY_PATH} answered {resp.status}"
            except urllib.error.HTTPError as exc:
                problem = f"GET {READY_PATH} answered {exc.code}"
            except OSError as exc:
                problem = f"GET {READY_PATH} failed: {exc}"
            time.sleep(0.1)
        raise LiveStackError(f"daphne not ready after {self.startup_timeout:.0f} s ({problem}):\n{self.log_text()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            try:
                self._drop_database()
            finally:
                shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "LiveStack":
        return self if self.proc else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
